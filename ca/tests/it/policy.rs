//! Policies evaluated over identities validated by the MSPs: the way endorsement and channel
//! policies will be checked by peers and orderers.

use std::collections::BTreeMap;
use std::sync::Arc;

use mercato_ca::policy::{Policy, PolicyResolver, SignaturePolicy};
use mercato_ca::{Identity, MspManager, Role};
use mercato_proto::Signer;

use crate::fixture::Org;

/// A channel's organisations with Fabric's default org policies, Writers excluding auditors.
struct Channel {
    orgs: Vec<String>,
    policies: BTreeMap<(String, String), SignaturePolicy>,
}

impl Channel {
    fn new(orgs: &[&str]) -> Channel {
        let mut policies = BTreeMap::new();
        for org in orgs {
            for (name, text) in [
                ("Readers", format!("OR('{org}.member')")),
                ("Writers", format!("OR('{org}.admin', '{org}.client')")),
                ("Endorsement", format!("OR('{org}.peer')")),
            ] {
                policies.insert((org.to_string(), name.to_string()), text.parse().unwrap());
            }
        }
        Channel {
            orgs: orgs.iter().map(|o| o.to_string()).collect(),
            policies,
        }
    }
}

impl PolicyResolver for Channel {
    fn org_ids(&self) -> Vec<&str> {
        self.orgs.iter().map(String::as_str).collect()
    }
    fn org_policy(&self, msp_id: &str, name: &str) -> Option<&SignaturePolicy> {
        self.policies.get(&(msp_id.to_string(), name.to_string()))
    }
}

fn setup() -> (Vec<Org>, MspManager) {
    let orgs = vec![
        Org::new("Brand1MSP"),
        Org::new("Brand2MSP"),
        Org::new("PlatformMSP"),
    ];
    let mgr = MspManager::new(orgs.iter().map(Org::msp));
    (orgs, mgr)
}

fn id(mgr: &MspManager, org: &Org, name: &str, role: Role) -> Arc<Identity> {
    mgr.identity(org.simple(name, role).signer.creator())
        .unwrap()
}

#[test]
fn two_of_two_endorsement_needs_a_peer_of_each_brand() {
    let (orgs, mgr) = setup();
    let policy: Policy = "AND('Brand1MSP.peer', 'Brand2MSP.peer')".parse().unwrap();
    let channel = Channel::new(&["Brand1MSP", "Brand2MSP", "PlatformMSP"]);
    let p1 = id(&mgr, &orgs[0], "peer0", Role::Peer);
    let p2 = id(&mgr, &orgs[1], "peer0", Role::Peer);
    let c2 = id(&mgr, &orgs[1], "client", Role::Client);
    assert!(policy.evaluate(&[p1.clone(), p2.clone()], &channel));
    assert!(!policy.evaluate(std::slice::from_ref(&p1), &channel));
    // The same endorser twice counts once.
    assert!(!policy.evaluate(&[p1.clone(), p1.clone()], &channel));
    // A client of the other brand is not a peer.
    assert!(!policy.evaluate(&[p1, c2], &channel));
}

#[test]
fn majority_endorsement_over_three_orgs() {
    let (orgs, mgr) = setup();
    let policy: Policy = "MAJORITY Endorsement".parse().unwrap();
    let channel = Channel::new(&["Brand1MSP", "Brand2MSP", "PlatformMSP"]);
    let peers: Vec<_> = orgs
        .iter()
        .map(|o| id(&mgr, o, "peer0", Role::Peer))
        .collect();
    assert!(policy.evaluate(&peers[..2], &channel));
    assert!(!policy.evaluate(&peers[..1], &channel));
    assert!(policy.evaluate(&peers, &channel));
}

#[test]
fn auditors_are_readers_but_not_writers() {
    let (orgs, mgr) = setup();
    let channel = Channel::new(&["Brand1MSP", "Brand2MSP", "PlatformMSP"]);
    let writers: Policy = "ANY Writers".parse().unwrap();
    let readers: Policy = "ANY Readers".parse().unwrap();
    let auditor = id(&mgr, &orgs[2], "auditor", Role::Auditor);
    let seller = id(&mgr, &orgs[0], "seller", Role::Client);
    assert!(readers.evaluate(std::slice::from_ref(&auditor), &channel));
    assert!(!writers.evaluate(&[auditor], &channel));
    assert!(writers.evaluate(&[seller], &channel));
}

#[test]
fn policy_over_verified_signatures() {
    // What a validator does: verify each endorsement, then evaluate the policy over the signers.
    let (orgs, mgr) = setup();
    let policy: Policy = "OutOf(2, 'Brand1MSP.peer', 'Brand2MSP.peer', 'PlatformMSP.peer')"
        .parse()
        .unwrap();
    let channel = Channel::new(&["Brand1MSP", "Brand2MSP", "PlatformMSP"]);
    let message = b"proposal response payload";
    let endorsers: Vec<_> = orgs.iter().map(|o| o.simple("peer0", Role::Peer)).collect();
    let mut signers = Vec::new();
    for (i, e) in endorsers.iter().enumerate() {
        let mut sig = e.signer.sign(message).unwrap();
        if i == 1 {
            sig[10] ^= 1; // a tampered endorsement does not count
        }
        if let Ok(identity) = mgr.verify(e.signer.creator(), message, &sig) {
            signers.push(identity);
        }
    }
    assert_eq!(signers.len(), 2);
    assert!(policy.evaluate(&signers, &channel));
    signers.pop();
    assert!(!policy.evaluate(&signers, &channel));
}
