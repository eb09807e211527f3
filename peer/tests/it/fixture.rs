//! A channel with real organisations, for the committer's tests: two brands whose peers endorse,
//! a sellers' org whose clients submit, and an orderer org that signs blocks.

use std::collections::BTreeMap;
use std::sync::Arc;

use mercato_ca::msp::MspMaterial;
use mercato_ca::policy::Policy;
use mercato_ca::testing::TestOrg;
use mercato_ca::{KeyAlgorithm, Msp, MspManager, Role, SigningIdentity};
use mercato_peer::rwset::TxRwSet;
use mercato_peer::validator::{OrgPolicies, StaticChaincodes, ValidationContext};
use mercato_proto::Signer;
use mercato_proto::block::{new_block, sign_block};
use mercato_proto::pb::Timestamp;
use mercato_proto::pb::common::{Block, ChannelHeader, Envelope, Header, Payload};
use mercato_proto::pb::protos::{ChaincodeAction, ChaincodeEvent, ChaincodeId, Proposal, Response};
use mercato_proto::proposal::{ProposalInput, new_proposal, parse_signed_proposal, sign_proposal};
use mercato_proto::response::new_proposal_response;
use mercato_proto::transaction::{new_transaction, sign_envelope};
use mercato_proto::{Limits, hash::block_header_hash};
use prost::Message;

pub const CHANNEL: &str = "commerce";
pub const CHAINCODE: &str = "market";

/// A change made to a transaction's chaincode action after endorsement.
pub type EditAction<'a> = Box<dyn Fn(&mut ChaincodeAction) + 'a>;

/// What a test transaction looks like.
pub struct TxSpec<'a> {
    pub client: &'a SigningIdentity,
    pub channel: &'a str,
    pub chaincode: &'a str,
    pub rwset: TxRwSet,
    pub endorsers: Vec<&'a SigningIdentity>,
    pub event: Option<&'a str>,
    pub edit_action: Option<EditAction<'a>>,
    pub edit_txid: Option<&'a str>,
}

pub struct Net {
    /// The organisations' CAs (empty in a network loaded from disk, which cannot issue).
    pub orgs: Vec<TestOrg>,
    /// Each org's MSP id and root certificate.
    roots: Vec<(String, Vec<u8>)>,
    pub client: SigningIdentity,
    pub peer1: SigningIdentity,
    pub peer2: SigningIdentity,
    pub orderer: SigningIdentity,
    /// The members' private keys, PKCS#8, for [`Net::save`].
    keys: Vec<Vec<u8>>,
    nonce: std::cell::Cell<u64>,
}

impl Net {
    pub fn new(algorithm: KeyAlgorithm) -> Net {
        let orgs: Vec<TestOrg> = ["Brand1MSP", "Brand2MSP", "SellersMSP", "OrdererMSP"]
            .into_iter()
            .map(TestOrg::new)
            .collect();
        let (peer1, k1) = orgs[0].member_with_key("peer0.brand1", Role::Peer, algorithm);
        let (peer2, k2) = orgs[1].member_with_key("peer0.brand2", Role::Peer, algorithm);
        let (client, k3) = orgs[2].member_with_key("alice", Role::Client, algorithm);
        let (orderer, k4) =
            orgs[3].member_with_key("orderer0", Role::Orderer, KeyAlgorithm::EcdsaP256);
        Net {
            roots: orgs
                .iter()
                .map(|o| (o.id.clone(), o.ca.certificate_der().to_vec()))
                .collect(),
            orgs,
            peer1,
            peer2,
            client,
            orderer,
            keys: vec![k1, k2, k3, k4],
            nonce: std::cell::Cell::new(1),
        }
    }

    /// Writes the roots and the members' certificates and keys, for a child process.
    pub fn save(&self, dir: &std::path::Path) {
        let members = [&self.peer1, &self.peer2, &self.client, &self.orderer];
        let mut text = String::new();
        for (id, der) in &self.roots {
            text.push_str(&format!("root {id} {}\n", hex::encode(der)));
        }
        for (m, key) in members.iter().zip(&self.keys) {
            text.push_str(&format!(
                "member {} {} {}\n",
                m.msp_id(),
                hex::encode(m.certificate_pem()),
                hex::encode(key)
            ));
        }
        std::fs::write(dir.join("net.txt"), text).unwrap();
    }

    /// Loads what [`Net::save`] wrote; `nonce_base` keeps nonces unique across processes.
    pub fn load(dir: &std::path::Path, nonce_base: u64) -> Net {
        let text = std::fs::read_to_string(dir.join("net.txt")).unwrap();
        let mut roots = Vec::new();
        let mut members = Vec::new();
        let mut keys = Vec::new();
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["root", id, der] => roots.push((id.to_string(), hex::decode(der).unwrap())),
                ["member", id, pem, key] => {
                    let key_der = hex::decode(key).unwrap();
                    let signing = mercato_ca::SigningKey::from_pkcs8(&key_der).unwrap();
                    members.push(
                        SigningIdentity::new(id, &hex::decode(pem).unwrap(), signing).unwrap(),
                    );
                    keys.push(key_der);
                }
                _ => panic!("bad line in net.txt: {line}"),
            }
        }
        let mut members = members.into_iter();
        let mut next = || members.next().unwrap();
        Net {
            orgs: Vec::new(),
            roots,
            peer1: next(),
            peer2: next(),
            client: next(),
            orderer: next(),
            keys,
            nonce: std::cell::Cell::new(nonce_base),
        }
    }

    /// The channel's validation context: `market` needs both brands' peers.
    pub fn context(&self) -> ValidationContext {
        self.context_with(1)
    }

    pub fn context_with(&self, threads: usize) -> ValidationContext {
        let policy: Policy = "AND('Brand1MSP.peer', 'Brand2MSP.peer')".parse().unwrap();
        let open: Policy = "OR('Brand1MSP.peer', 'Brand2MSP.peer')".parse().unwrap();
        ValidationContext {
            channel_id: CHANNEL.into(),
            msps: Arc::new(MspManager::new(self.roots.iter().map(|(id, der)| {
                let material = MspMaterial {
                    root_certs: vec![der.clone()],
                    ..MspMaterial::default()
                };
                Msp::new(id, material).unwrap()
            }))),
            org_policies: OrgPolicies::defaults(&[
                "Brand1MSP",
                "Brand2MSP",
                "SellersMSP",
                "OrdererMSP",
            ]),
            block_validation: "OR('OrdererMSP.orderer')".parse().unwrap(),
            chaincodes: Arc::new(StaticChaincodes(BTreeMap::from([
                (CHAINCODE.to_string(), Arc::new(policy)),
                ("notes".to_string(), Arc::new(open)),
            ]))),
            application_orgs: vec!["Brand1MSP".into(), "Brand2MSP".into(), "SellersMSP".into()],
            own_endorsements: None,
            limits: Limits::default(),
            threads,
        }
    }

    pub fn next_nonce(&self) -> Vec<u8> {
        let n = self.nonce.get();
        self.nonce.set(n + 1);
        let mut nonce = vec![0u8; 24];
        nonce[..8].copy_from_slice(&n.to_be_bytes());
        nonce
    }

    /// A transaction as `spec` describes it, signed and endorsed for real.
    pub fn tx_spec(&self, spec: TxSpec<'_>) -> (Envelope, String) {
        let input = ProposalInput {
            channel_id: spec.channel.into(),
            chaincode: spec.chaincode.into(),
            args: vec![b"invoke".to_vec()],
            transient: BTreeMap::new(),
            nonce: self.next_nonce(),
            timestamp: Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            },
        };
        let mut unsigned = new_proposal(&input, spec.client.creator()).unwrap();
        if let Some(edit) = &spec.edit_txid {
            let mut proposal = Proposal::decode(unsigned.proposal_bytes.as_slice()).unwrap();
            let mut header = Header::decode(proposal.header.as_slice()).unwrap();
            let mut ch = ChannelHeader::decode(header.channel_header.as_slice()).unwrap();
            ch.tx_id = edit.to_string();
            header.channel_header = ch.encode_to_vec();
            proposal.header = header.encode_to_vec();
            unsigned.proposal_bytes = proposal.encode_to_vec();
            unsigned.txid = edit.to_string();
        }
        let signed = sign_proposal(unsigned.proposal_bytes, spec.client).unwrap();
        let proposal = parse_signed_proposal(&signed, &Limits::default()).unwrap();
        let mut action = ChaincodeAction {
            results: spec.rwset.encode(),
            events: spec
                .event
                .map(|name| {
                    ChaincodeEvent {
                        chaincode_id: spec.chaincode.into(),
                        tx_id: unsigned.txid.clone(),
                        event_name: name.into(),
                        payload: b"payload".to_vec(),
                    }
                    .encode_to_vec()
                })
                .unwrap_or_default(),
            response: Some(Response {
                status: 200,
                message: String::new(),
                payload: b"ok".to_vec(),
            }),
            chaincode_id: Some(ChaincodeId {
                name: spec.chaincode.into(),
                ..Default::default()
            }),
        };
        if let Some(edit) = &spec.edit_action {
            edit(&mut action);
        }
        let responses: Vec<_> = spec
            .endorsers
            .iter()
            .map(|e| {
                let mut r = new_proposal_response(&proposal.proposal_hash, &action, *e).unwrap();
                // The outer status is not signed: a dishonest gateway could show 200 whatever the
                // endorsed action says, which is what edited actions test.
                if let Some(outer) = r.response.as_mut() {
                    outer.status = 200;
                }
                r
            })
            .collect();
        let mut env = new_transaction(&proposal, &responses, &Limits::default()).unwrap();
        sign_envelope(&mut env, spec.client).unwrap();
        (env, unsigned.txid)
    }

    /// A transaction of `chaincode` by `client`, endorsed by `endorsers`.
    pub fn tx_by(
        &self,
        client: &SigningIdentity,
        chaincode: &str,
        rwset: &TxRwSet,
        endorsers: &[&SigningIdentity],
        event: Option<&str>,
    ) -> (Envelope, String) {
        self.tx_spec(TxSpec {
            client,
            chaincode,
            rwset: rwset.clone(),
            endorsers: endorsers.to_vec(),
            event,
            ..self.spec(rwset.clone())
        })
    }

    /// The default spec: `alice` invokes `market` on the channel, both brands endorse.
    pub fn spec(&self, rwset: TxRwSet) -> TxSpec<'_> {
        TxSpec {
            client: &self.client,
            channel: CHANNEL,
            chaincode: CHAINCODE,
            rwset,
            endorsers: vec![&self.peer1, &self.peer2],
            event: None,
            edit_action: None,
            edit_txid: None,
        }
    }

    /// Edits a signed envelope's payload and signs it again as `signer`.
    pub fn resign(
        &self,
        env: &Envelope,
        signer: &SigningIdentity,
        edit: impl Fn(&mut Payload),
    ) -> Envelope {
        let mut payload = Payload::decode(env.payload.as_slice()).unwrap();
        edit(&mut payload);
        let mut env = Envelope {
            payload: payload.encode_to_vec(),
            signature: Vec::new(),
        };
        sign_envelope(&mut env, signer).unwrap();
        env
    }

    /// A valid transaction of `market` with `rwset`, endorsed by both brands.
    pub fn tx(&self, rwset: &TxRwSet) -> (Envelope, String) {
        self.tx_by(
            &self.client,
            CHAINCODE,
            rwset,
            &[&self.peer1, &self.peer2],
            None,
        )
    }

    pub fn genesis(&self) -> Block {
        new_block(0, Vec::new(), vec![b"genesis configuration".to_vec()])
    }

    /// Block `number` after `previous`, signed by the orderer.
    pub fn block(&self, number: u64, previous: &Block, txs: Vec<Vec<u8>>) -> Block {
        let mut block = new_block(
            number,
            block_header_hash(previous.header.as_ref().unwrap()).to_vec(),
            txs,
        );
        sign_block(&mut block, Vec::new(), &self.orderer, self.next_nonce()).unwrap();
        block
    }
}

/// Builders of read/write sets.
pub mod rw {
    use mercato_peer::ledger::Version;
    use mercato_peer::rwset::{KeyDelta, KeyRead, KeyWrite, NsRwSet, RangeRead, TxRwSet};

    pub fn ns(namespace: &str) -> NsRwSet {
        NsRwSet {
            namespace: namespace.into(),
            ..Default::default()
        }
    }

    pub fn one(ns: NsRwSet) -> TxRwSet {
        TxRwSet {
            namespaces: vec![ns],
        }
    }

    pub fn put(mut ns: NsRwSet, key: &str, value: &str) -> NsRwSet {
        ns.writes.push(KeyWrite {
            key: key.into(),
            value: Some(value.as_bytes().to_vec()),
        });
        ns
    }

    pub fn del(mut ns: NsRwSet, key: &str) -> NsRwSet {
        ns.writes.push(KeyWrite {
            key: key.into(),
            value: None,
        });
        ns
    }

    pub fn read(mut ns: NsRwSet, key: &str, version: Option<(u64, u64)>) -> NsRwSet {
        ns.reads.push(KeyRead {
            key: key.into(),
            version: version.map(|(block, tx)| Version { block, tx }),
        });
        ns
    }

    pub fn add(mut ns: NsRwSet, key: &str, amount: i64, lower_bound: Option<i64>) -> NsRwSet {
        ns.deltas.push(KeyDelta {
            key: key.into(),
            amount,
            lower_bound,
        });
        ns
    }

    pub fn range(
        mut ns: NsRwSet,
        start: &str,
        end: &str,
        exhausted: bool,
        seen: &[(&str, (u64, u64))],
    ) -> NsRwSet {
        ns.range_reads.push(RangeRead {
            start: start.into(),
            end: end.into(),
            exhausted,
            reads: seen
                .iter()
                .map(|(k, (block, tx))| KeyRead {
                    key: k.to_string(),
                    version: Some(Version {
                        block: *block,
                        tx: *tx,
                    }),
                })
                .collect(),
        });
        ns
    }
}
