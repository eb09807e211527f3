//! A peer's validation context built from its channel's genesis block, committing real blocks.

use std::collections::BTreeMap;
use std::sync::Arc;

use mercato_ca::KeyAlgorithm;
use mercato_ca::channel::ChannelConfig;
use mercato_ca::testing::TestOrg;
use mercato_peer::committer::Committer;
use mercato_peer::ledger::{LedgerStore, MemLedgerStore};
use mercato_peer::validator::{StaticChaincodes, ValidationContext};
use mercato_proto::config::new_genesis_block;
use mercato_proto::pb::mercato as pb;
use mercato_proto::{TxValidationCode, ValidationCode};
use prost::Message;

use crate::fixture::{CHAINCODE, CHANNEL, Net, rw};

fn organization(o: &TestOrg) -> pb::Organization {
    pb::Organization {
        msp_id: o.id.clone(),
        root_certs: vec![o.ca.certificate_der().to_vec()],
        ..Default::default()
    }
}

#[test]
fn a_peer_validates_against_the_configuration_of_its_genesis_block() {
    let net = Net::new(KeyAlgorithm::Ed25519);
    let tls = mercato_ca::crypto::pem_blocks(net.orderer.certificate_pem(), "CERTIFICATE")
        .unwrap()
        .remove(0);
    let config = pb::ChannelConfig {
        channel_id: CHANNEL.into(),
        application_orgs: net.orgs[..3].iter().map(organization).collect(),
        orderer_orgs: vec![organization(&net.orgs[3])],
        consenters: vec![pb::Consenter {
            id: 1,
            host: "127.0.0.1".into(),
            port: 7050,
            msp_id: "OrdererMSP".into(),
            server_tls_cert: tls.clone(),
            client_tls_cert: tls,
        }],
        batch: Some(pb::BatchSettings {
            max_message_count: 500,
            absolute_max_bytes: 1 << 20,
            preferred_max_bytes: 1 << 19,
            batch_timeout_ms: 100,
        }),
        policies: None,
    };
    let genesis = new_genesis_block(&config);
    let channel = ChannelConfig::from_genesis(&genesis).unwrap();
    let policy = Arc::new("AND('Brand1MSP.peer', 'Brand2MSP.peer')".parse().unwrap());
    let chaincodes = Arc::new(StaticChaincodes(BTreeMap::from([(
        CHAINCODE.to_string(),
        policy,
    )])));
    let ctx = ValidationContext::from_channel(&channel, chaincodes, None, 2).unwrap();
    assert_eq!(
        ctx.application_orgs,
        ["Brand1MSP", "Brand2MSP", "SellersMSP"]
    );
    let store: Arc<dyn LedgerStore> = Arc::new(MemLedgerStore::new());
    let committer = Committer::new(Arc::clone(&store), Arc::new(ctx)).unwrap();
    committer.commit_genesis(genesis.clone()).unwrap();

    let (valid, _) = net.tx(&rw::one(rw::put(rw::ns(CHAINCODE), "k", "v")));
    let (one_endorser, _) = net.tx_by(
        &net.client,
        CHAINCODE,
        &rw::one(rw::put(rw::ns(CHAINCODE), "k2", "v")),
        &[&net.peer1],
        None,
    );
    let block = net.block(
        1,
        &genesis,
        vec![valid.encode_to_vec(), one_endorser.encode_to_vec()],
    );
    let event = committer.commit_block(block).unwrap();
    let codes: Vec<ValidationCode> = event.txs.iter().map(|t| t.code).collect();
    assert_eq!(
        codes,
        [
            ValidationCode::VALID,
            TxValidationCode::EndorsementPolicyFailure.into()
        ]
    );
    assert!(store.state(CHAINCODE, "k").unwrap().is_some());
}
