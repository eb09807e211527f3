//! A channel's configuration through its genesis block: the round trip, what the nodes derive
//! from it (MSPs, policies), and every inconsistency refused with the reason.

use mercato_ca::Role;
use mercato_ca::channel::ChannelConfig;
use mercato_proto::config::new_genesis_block;
use mercato_proto::pb::mercato as pb;
use prost::Message;

use crate::fixture::Org;

struct Orgs {
    brand1: Org,
    brand2: Org,
    orderer: Org,
}

fn orgs() -> Orgs {
    Orgs {
        brand1: Org::new("Brand1MSP"),
        brand2: Org::new("Brand2MSP"),
        orderer: Org::new("OrdererMSP"),
    }
}

fn organization(org: &Org, port: u32, orderer: bool) -> pb::Organization {
    let endpoint = pb::Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    pb::Organization {
        msp_id: org.id.clone(),
        root_certs: vec![org.root.certificate_der().to_vec()],
        tls_root_certs: vec![org.root.certificate_der().to_vec()],
        peers: if orderer {
            vec![]
        } else {
            vec![endpoint.clone()]
        },
        orderers: if orderer { vec![endpoint] } else { vec![] },
        ..Default::default()
    }
}

fn config(o: &Orgs) -> pb::ChannelConfig {
    let tls = o.orderer.simple("orderer0", Role::Orderer).cert_der;
    pb::ChannelConfig {
        channel_id: "market".into(),
        application_orgs: vec![
            organization(&o.brand1, 7051, false),
            organization(&o.brand2, 8051, false),
        ],
        orderer_orgs: vec![organization(&o.orderer, 7050, true)],
        consenters: (1..=3)
            .map(|id| pb::Consenter {
                id,
                host: "127.0.0.1".into(),
                port: 7060 + id as u32,
                msp_id: "OrdererMSP".into(),
                server_tls_cert: tls.clone(),
                client_tls_cert: tls.clone(),
            })
            .collect(),
        batch: Some(pb::BatchSettings {
            max_message_count: 500,
            absolute_max_bytes: 10 << 20,
            preferred_max_bytes: 2 << 20,
            batch_timeout_ms: 100,
        }),
        policies: None,
    }
}

#[test]
fn the_genesis_block_carries_the_configuration_the_nodes_build_from() {
    let o = orgs();
    let block = new_genesis_block(&config(&o));
    let c = ChannelConfig::from_genesis(&block).unwrap();
    assert_eq!(c.channel_id, "market");
    assert_eq!(c.application_org_ids(), ["Brand1MSP", "Brand2MSP"]);
    assert_eq!(c.consenters.len(), 3);
    assert_eq!(c.consenters[2].endpoint.to_string(), "127.0.0.1:7063");
    assert_eq!(c.batch.batch_timeout_ms, 100);
    assert_eq!(c.orderer_orgs[0].orderers[0].port, 7050);

    // The MSPs know every organisation's members, and nobody else's.
    let msps = c.msp_manager().unwrap();
    for (org, role) in [
        (&o.brand1, Role::Client),
        (&o.brand2, Role::Peer),
        (&o.orderer, Role::Orderer),
    ] {
        let m = org.simple("someone", role);
        assert!(msps.identity(m.signer.serialized()).is_ok());
    }
    let stranger = Org::new("Brand1MSP").simple("mallory", Role::Client);
    assert!(msps.identity(stranger.signer.serialized()).is_err());

    // Fabric's default policies, over the application organisations.
    let policies = c.org_policies();
    let client = msps
        .identity(o.brand1.simple("alice", Role::Client).signer.serialized())
        .unwrap();
    let auditor = msps
        .identity(o.brand1.simple("eve", Role::Auditor).signer.serialized())
        .unwrap();
    let peer1 = msps
        .identity(o.brand1.simple("p1", Role::Peer).signer.serialized())
        .unwrap();
    let peer2 = msps
        .identity(o.brand2.simple("p2", Role::Peer).signer.serialized())
        .unwrap();
    let orderer = msps
        .identity(o.orderer.simple("o1", Role::Orderer).signer.serialized())
        .unwrap();
    let p = &c.policies;
    assert!(p.writers.evaluate(std::slice::from_ref(&client), &policies));
    assert!(
        !p.writers
            .evaluate(std::slice::from_ref(&auditor), &policies)
    );
    assert!(p.readers.evaluate(&[auditor], &policies));
    assert!(
        !p.lifecycle_endorsement
            .evaluate(std::slice::from_ref(&peer1), &policies)
    );
    assert!(p.lifecycle_endorsement.evaluate(&[peer1, peer2], &policies));
    assert!(p.block_validation.evaluate(&[orderer], &policies));
    assert!(!p.block_validation.evaluate(&[client], &policies));
}

#[test]
fn inconsistent_configurations_are_refused_with_the_reason() {
    let o = orgs();
    type Edit = Box<dyn Fn(&mut pb::ChannelConfig)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|c| c.channel_id = "Market".into()), "channel id"),
        (
            Box::new(|c| c.application_orgs.clear()),
            "at least one application",
        ),
        (
            Box::new(|c| c.orderer_orgs.clear()),
            "at least one application and one orderer",
        ),
        (
            Box::new(|c| c.application_orgs[1].msp_id = "Brand1MSP".into()),
            "appears twice",
        ),
        (
            Box::new(|c| c.application_orgs[0].root_certs.clear()),
            "no root certificate",
        ),
        (
            Box::new(|c| c.application_orgs[0].root_certs = vec![b"not a cert".to_vec()]),
            "Brand1MSP",
        ),
        (
            Box::new(|c| c.application_orgs[0].peers[0].port = 70_000),
            "port 70000",
        ),
        (
            Box::new(|c| c.application_orgs[0].peers[0].host = "a b".into()),
            "host",
        ),
        (Box::new(|c| c.consenters.clear()), "0 consenters"),
        (Box::new(|c| c.consenters[1].id = 1), "distinct"),
        (
            Box::new(|c| c.consenters[1].port = c.consenters[0].port),
            "used twice",
        ),
        (
            Box::new(|c| c.consenters[0].msp_id = "Brand1MSP".into()),
            "not an orderer organisation",
        ),
        (
            Box::new(|c| c.consenters[0].server_tls_cert = vec![1, 2, 3]),
            "server TLS certificate",
        ),
        (Box::new(|c| c.batch = None), "batch settings"),
        (
            Box::new(|c| c.application_orgs[1].msp_id = "brand".into()),
            "MSP id \"brand\"",
        ),
        (
            Box::new(|c| c.application_orgs[1].msp_id = "Org:2".into()),
            "MSP id \"Org:2\"",
        ),
        (
            Box::new(|c| c.batch.as_mut().unwrap().max_message_count = 20_000),
            "batch settings",
        ),
        (
            Box::new(|c| {
                c.policies = Some(pb::ChannelPolicies {
                    lifecycle_endorsement: "ALL Endorsement".into(),
                    ..Default::default()
                })
            }),
            "only MAJORITY Endorsement",
        ),
        (
            Box::new(|c| c.batch.as_mut().unwrap().preferred_max_bytes = 20 << 20),
            "batch settings",
        ),
        (
            Box::new(|c| c.batch.as_mut().unwrap().batch_timeout_ms = 0),
            "batch settings",
        ),
        (
            Box::new(|c| {
                c.policies = Some(pb::ChannelPolicies {
                    writers: "SOME Writers".into(),
                    ..Default::default()
                })
            }),
            "policy writers",
        ),
    ];
    for (edit, says) in cases {
        let mut c = config(&o);
        edit(&mut c);
        let e = ChannelConfig::from_genesis(&new_genesis_block(&c))
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{e:?} should say {says:?}");
    }
}

#[test]
fn a_block_that_is_not_a_genesis_block_is_refused() {
    let o = orgs();
    let good = new_genesis_block(&config(&o));

    let mut later = good.clone();
    later.header.as_mut().unwrap().number = 4;
    let e = ChannelConfig::from_genesis(&later).unwrap_err().to_string();
    assert!(e.contains("block 0"), "{e}");

    let mut tampered = good.clone();
    tampered.data.as_mut().unwrap().data[0].push(0);
    let e = ChannelConfig::from_genesis(&tampered)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hash"), "{e}");

    let two = mercato_proto::block::new_block(0, Vec::new(), vec![vec![1], vec![2]]);
    let e = ChannelConfig::from_genesis(&two).unwrap_err().to_string();
    assert!(e.contains("one envelope"), "{e}");

    let garbage = mercato_proto::block::new_block(0, Vec::new(), vec![b"\xff\xffgarbage".to_vec()]);
    assert!(ChannelConfig::from_genesis(&garbage).is_err());

    // The header and the configuration must name the same channel.
    let env =
        mercato_proto::pb::common::Envelope::decode(good.data.as_ref().unwrap().data[0].as_slice())
            .unwrap();
    let mut payload = mercato_proto::pb::common::Payload::decode(env.payload.as_slice()).unwrap();
    let mut c = pb::ChannelConfig::decode(payload.data.as_slice()).unwrap();
    c.channel_id = "other".into();
    payload.data = c.encode_to_vec();
    let env = mercato_proto::pb::common::Envelope {
        payload: payload.encode_to_vec(),
        signature: Vec::new(),
    };
    let mixed = mercato_proto::block::new_block(0, Vec::new(), vec![env.encode_to_vec()]);
    let e = ChannelConfig::from_genesis(&mixed).unwrap_err().to_string();
    assert!(e.contains("names channel"), "{e}");
}
