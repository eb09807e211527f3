//! The commerce chaincode in real peers: the very scenario files of its native tests
//! (`chaincode/commerce/tests/it`), run against the compiled wasm module. Every call is a signed
//! proposal, evaluated on a peer; a call that writes is endorsed by two peers of two
//! organisations (whose read/write sets must agree byte for byte), put into an orderer-signed
//! block and committed by both peers' committers. Plus the concurrency test: 200 orders through
//! one shop in one block all commit.

#[path = "../../../../chaincode/commerce/tests/it/common.rs"]
mod common;
#[path = "../../../../chaincode/commerce/tests/it/flow.rs"]
mod flow;
#[path = "../../../../chaincode/commerce/tests/it/rules.rs"]
mod rules;

pub use common::*;

use std::collections::BTreeMap;
use std::sync::Arc;

use mercato_ca::policy::Policy;
use mercato_ca::testing::TestOrg;
use mercato_ca::{KeyAlgorithm, MspManager, Role, SigningIdentity};
use mercato_chaincode::abi::InvokeResult;
use mercato_peer::chaincode::{ChaincodeRuntime, Executor, RuntimeLimits, StaticResolver};
use mercato_peer::committer::Committer;
use mercato_peer::endorser::{Endorser, Purpose};
use mercato_peer::ledger::{LedgerStore, MemLedgerStore};
use mercato_peer::rwset::TxRwSet;
use mercato_peer::validator::{OrgPolicies, StaticChaincodes, ValidationContext};
use mercato_proto::block::{new_block, sign_block};
use mercato_proto::hash::block_header_hash;
use mercato_proto::pb::Timestamp;
use mercato_proto::pb::common::{Block, Envelope};
use mercato_proto::pb::protos::{
    ChaincodeAction, ProposalResponse, ProposalResponsePayload, SignedProposal,
};
use mercato_proto::proposal::{ProposalInput, new_proposal, sign_proposal};
use mercato_proto::transaction::{new_transaction, sign_envelope};
use mercato_proto::{Limits, Signer, ValidationCode};
use prost::Message;

use crate::wasm;

const CHANNEL: &str = "market";
const CC: &str = "commerce";
const ORGS: [&str; 6] = [
    "PlatformMSP",
    "Brand1MSP",
    "Brand2MSP",
    "SellersMSP",
    "AuditMSP",
    "OrdererMSP",
];

fn module() -> &'static [u8] {
    static WASM: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    WASM.get_or_init(|| wasm::build("mercato-commerce"))
}

struct Peer {
    store: Arc<dyn LedgerStore>,
    committer: Committer,
    endorser: Endorser,
}

/// Two peers (Brand1MSP's and Brand2MSP's) on one channel, an orderer, and members issued on
/// demand.
pub struct Market {
    orgs: Vec<TestOrg>,
    orderer: SigningIdentity,
    peers: Vec<Peer>,
    members: BTreeMap<String, Arc<SigningIdentity>>,
    nonce: u64,
    timestamp: i64,
    last_event: String,
    last_block: Block,
}

fn context(orgs: &[TestOrg]) -> ValidationContext {
    let policy: Policy = "AND('Brand1MSP.peer', 'Brand2MSP.peer')".parse().unwrap();
    ValidationContext {
        channel_id: CHANNEL.into(),
        msps: Arc::new(MspManager::new(orgs.iter().map(TestOrg::msp))),
        org_policies: OrgPolicies::defaults(&ORGS),
        block_validation: "OR('OrdererMSP.orderer')".parse().unwrap(),
        chaincodes: Arc::new(StaticChaincodes(BTreeMap::from([(
            CC.to_string(),
            Arc::new(policy),
        )]))),
        application_orgs: ORGS[..5].iter().map(|o| o.to_string()).collect(),
        own_endorsements: None,
        limits: Limits::default(),
        threads: 2,
    }
}

/// The chaincode action a proposal response carries.
fn action(r: &ProposalResponse) -> ChaincodeAction {
    let payload = ProposalResponsePayload::decode(r.payload.as_slice()).unwrap();
    ChaincodeAction::decode(payload.extension.as_slice()).unwrap()
}

fn refusal(r: &ProposalResponse) -> InvokeResult {
    let r = r.response.clone().unwrap_or_default();
    InvokeResult {
        status: r.status,
        message: r.message,
        payload: r.payload,
    }
}

impl Market {
    /// An empty channel.
    pub fn empty() -> Self {
        let orgs: Vec<TestOrg> = ORGS.iter().map(|id| TestOrg::new(id)).collect();
        let orderer = orgs[5].member("orderer0", Role::Orderer, KeyAlgorithm::EcdsaP256);
        let genesis = new_block(0, Vec::new(), vec![b"genesis configuration".to_vec()]);
        let peers = [(1, "peer0.brand1"), (2, "peer0.brand2")]
            .into_iter()
            .map(|(org, name)| {
                let ctx = Arc::new(context(&orgs));
                let store: Arc<dyn LedgerStore> = Arc::new(MemLedgerStore::new());
                let committer = Committer::new(Arc::clone(&store), Arc::clone(&ctx)).unwrap();
                committer.commit_genesis(genesis.clone()).unwrap();
                let runtime =
                    Arc::new(ChaincodeRuntime::new(RuntimeLimits::default(), None).unwrap());
                let resolver = StaticResolver::new().with(CC, module().to_vec());
                let executor = Executor::new(runtime, Arc::new(resolver));
                let signer = orgs[org].member(name, Role::Peer, KeyAlgorithm::Ed25519);
                let endorser = Endorser::new(
                    CHANNEL,
                    Arc::clone(&ctx.msps),
                    Arc::clone(&store),
                    executor,
                    Arc::new(signer) as Arc<dyn Signer>,
                    None,
                    Limits::default(),
                );
                Peer {
                    store,
                    committer,
                    endorser,
                }
            })
            .collect();
        Market {
            orgs,
            orderer,
            peers,
            members: BTreeMap::new(),
            nonce: 0,
            timestamp: 1_800_000_000,
            last_event: String::new(),
            last_block: genesis,
        }
    }

    /// The signing identity of an actor, issued by its organisation's CA the first time.
    fn member(&mut self, who: Actor) -> Arc<SigningIdentity> {
        let key = format!("{who:?}");
        if let Some(m) = self.members.get(&key) {
            return Arc::clone(m);
        }
        let org = self
            .orgs
            .iter()
            .find(|o| o.id == who.0)
            .unwrap_or_else(|| panic!("no org {}", who.0));
        let role: Role = who.2.parse().unwrap();
        let (id, _) = org.member_with_attributes(who.1, role, who.3, KeyAlgorithm::EcdsaP256);
        let id = Arc::new(id);
        self.members.insert(key, Arc::clone(&id));
        id
    }

    fn proposal(&mut self, signer: &SigningIdentity, args: &[&str]) -> SignedProposal {
        self.nonce += 1;
        let input = ProposalInput {
            channel_id: CHANNEL.into(),
            chaincode: CC.into(),
            args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            transient: BTreeMap::new(),
            nonce: self.nonce.to_be_bytes().repeat(3),
            timestamp: Timestamp {
                seconds: self.timestamp,
                nanos: 0,
            },
        };
        let unsigned = new_proposal(&input, signer.creator()).unwrap();
        sign_proposal(unsigned.proposal_bytes, signer).unwrap()
    }

    /// Endorses a proposal on both peers and assembles the signed transaction.
    fn endorse(
        &self,
        signed: &SignedProposal,
        signer: &SigningIdentity,
    ) -> Result<(Envelope, Vec<u8>), InvokeResult> {
        let mut responses = Vec::new();
        let mut parsed = None;
        for p in &self.peers {
            let e = p
                .endorser
                .endorse(signed, Purpose::Endorse)
                .map_err(|r| refusal(&r))?;
            responses.push(e.response);
            parsed = Some(e.proposal);
        }
        let payload = action(&responses[0])
            .response
            .map(|r| r.payload)
            .unwrap_or_default();
        // Fails unless both peers produced byte-identical read/write sets and results.
        let mut env = new_transaction(&parsed.unwrap(), &responses, &Limits::default())
            .unwrap_or_else(|e| panic!("the peers disagree: {e}"));
        sign_envelope(&mut env, signer).unwrap();
        Ok((env, payload))
    }

    /// Orders transactions into one block, commits it on both peers (which must agree) and
    /// returns the codes.
    fn commit(&mut self, txs: Vec<Envelope>) -> Vec<ValidationCode> {
        let number = self.peers[0].committer.height();
        let mut block = new_block(
            number,
            block_header_hash(self.last_block.header.as_ref().unwrap()).to_vec(),
            txs.iter().map(|t| t.encode_to_vec()).collect(),
        );
        sign_block(
            &mut block,
            Vec::new(),
            &self.orderer,
            number.to_be_bytes().to_vec(),
        )
        .unwrap();
        let mut codes: Option<Vec<ValidationCode>> = None;
        for p in &self.peers {
            let event = p.committer.commit_block(block.clone()).unwrap();
            let these: Vec<ValidationCode> = event.txs.iter().map(|t| t.code).collect();
            if let Some(c) = &codes {
                assert_eq!(c, &these, "the peers disagree on block {number}");
            }
            if let Some(e) = event.txs.iter().rev().find_map(|t| t.event.as_ref()) {
                self.last_event = e.event_name.clone();
            }
            codes = Some(these);
        }
        self.last_block = block;
        codes.unwrap()
    }

    /// Calls the chaincode as `who`: evaluated on one peer, and, if it writes, endorsed by both
    /// and committed in a block of its own. A transaction invalidated at commit is reported as
    /// the client would learn it from its commit status.
    pub fn call(&mut self, who: Actor, args: &[&str]) -> InvokeResult {
        let signer = self.member(who);
        let signed = self.proposal(&signer, args);
        let evaluated = match self.peers[0].endorser.endorse(&signed, Purpose::Evaluate) {
            Ok(e) => e,
            Err(r) => return refusal(&r),
        };
        let rwset = TxRwSet::decode(&action(&evaluated.response).results).unwrap();
        let writes = rwset
            .namespaces
            .iter()
            .any(|ns| !ns.writes.is_empty() || !ns.deltas.is_empty());
        if !writes {
            return refusal(&evaluated.response);
        }
        let (env, payload) = match self.endorse(&signed, &signer) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let code = self.commit(vec![env])[0];
        let invalid = |what: &str| InvokeResult {
            status: 409,
            message: format!(
                "the transaction was invalidated at commit with code {}: {what}",
                code.0
            ),
            payload: Vec::new(),
        };
        match code {
            ValidationCode::VALID => InvokeResult {
                status: 200,
                message: String::new(),
                payload,
            },
            ValidationCode::DELTA_BOUND_VIOLATION => {
                invalid("a balance or stock would go below its bound")
            }
            ValidationCode::DELTA_INVALID_VALUE => invalid("a number would overflow"),
            other => panic!("{args:?} by {}: committed with code {}", who.1, other.0),
        }
    }

    /// Endorses every call, then commits them all in one block.
    pub fn batch(&mut self, calls: &[(Actor, Vec<String>)]) -> Vec<ValidationCode> {
        let mut txs = Vec::new();
        for (who, args) in calls {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let signer = self.member(*who);
            let signed = self.proposal(&signer, &args);
            let (env, _) = self
                .endorse(&signed, &signer)
                .unwrap_or_else(|r| panic!("{args:?}: {} {}", r.status, r.message));
            txs.push(env);
        }
        self.commit(txs)
    }

    /// The chaincode's whole state on the first peer, with versions.
    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        self.peers[0]
            .store
            .state_range(CC, "", "", 1_000_000)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.value))
            .collect()
    }

    /// The name of the last committed event.
    pub fn last_event(&self) -> String {
        self.last_event.clone()
    }

    /// Moves the proposals' clock on by a day.
    pub fn next_day(&mut self) {
        self.timestamp += 86_400;
    }
}

#[test]
fn two_hundred_orders_through_one_shop_commit_in_one_block_and_the_totals_add_up() {
    let mut m = Market::new();
    m.ok(ACME, &["restock", "acme", "shoe", "150"]);
    m.ok(PLATFORM, &["mint", "SellersMSP:bob", "9000"]);
    m.ok(PLATFORM, &["mint", "SellersMSP:cat", "9000"]);
    let orders: Vec<String> = (0..200).map(|i| format!("o{i:03}")).collect();
    let buyer = |i: usize| if i.is_multiple_of(2) { BUYER } else { BUYER2 };
    let all_valid = vec![ValidationCode::VALID; 200];

    // Placing: stock, the buyers' balances and nothing else shared; no conflict.
    let place: Vec<(Actor, Vec<String>)> = orders
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let args = ["place_order", o, "sams", "acme", "shoe", "1"];
            (buyer(i), args.iter().map(|s| s.to_string()).collect())
        })
        .collect();
    assert_eq!(m.batch(&place), all_valid);
    assert_eq!(m.number(AUDITOR, &["stock", "acme", "shoe"]), 0);
    assert_eq!(m.balance("SellersMSP:bob"), 0);

    let ship: Vec<(Actor, Vec<String>)> = orders
        .iter()
        .map(|o| (ACME, vec!["ship_order".into(), o.clone(), format!("T-{o}")]))
        .collect();
    assert_eq!(m.batch(&ship), all_valid);

    // Settling: the fee, the brand's revenue, the shop's commission and the sales totals are
    // hot keys of every transaction; additions keep them from conflicting.
    let confirm: Vec<(Actor, Vec<String>)> = orders
        .iter()
        .enumerate()
        .map(|(i, o)| (buyer(i), vec!["confirm_delivery".into(), o.clone()]))
        .collect();
    assert_eq!(m.batch(&confirm), all_valid);

    // 200 orders of 100 coins: a 2 % fee, a 10 % commission, the rest to the brand.
    assert_eq!(m.balance("platform:fees"), 200 * 2);
    assert_eq!(m.balance("SellersMSP:sam"), 200 * 10);
    assert_eq!(m.balance("brand:acme"), 200 * 88);
    for (kind, name) in [("brand", "acme"), ("shop", "sams")] {
        let page = m.json(AUDITOR, &["sales", kind, name, "1000", ""]);
        assert_eq!(page["total"], 200 * 100);
        assert_eq!(page["count"], 200);
        assert_eq!(page["sales"].as_array().unwrap().len(), 200);
    }
    // No coin was made or lost.
    assert_eq!(m.number(AUDITOR, &["supply"]), 2000 + 18_000);
    let held: i64 = [
        "SellersMSP:bob",
        "SellersMSP:cat",
        "SellersMSP:sam",
        "brand:acme",
        "platform:fees",
    ]
    .iter()
    .map(|a| m.balance(a))
    .sum();
    assert_eq!(held, 20_000);
}
