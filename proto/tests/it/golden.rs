//! Golden encodings: the field numbers and types of Fabric's wire format, checked against bytes
//! assembled by hand from FABRIC-WIRE.md (a different implementation than prost's).

use mercato_proto::Limits;
use mercato_proto::identity::{parse_serialized_identity, serialize_identity};
use mercato_proto::pb::Timestamp;
use mercato_proto::pb::common::ChannelHeader;
use mercato_proto::pb::kvrwset::{KvRead, KvWrite, KvrwSet, Version};
use mercato_proto::pb::protos::{ChaincodeHeaderExtension, ChaincodeId};
use prost::Message;

#[test]
fn channel_header_encoding() {
    let header = ChannelHeader {
        r#type: 3,
        version: 0,
        timestamp: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }),
        channel_id: "commerce".into(),
        tx_id: "ab12".into(),
        epoch: 0,
        extension: ChaincodeHeaderExtension {
            chaincode_id: Some(ChaincodeId {
                name: "market".into(),
                ..Default::default()
            }),
        }
        .encode_to_vec(),
        tls_cert_hash: Vec::new(),
    };
    let golden = "08031a080880e2cfaa0610052208636f6d6d657263652a04616231323a0a120812066d61726b6574";
    assert_eq!(hex::encode(header.encode_to_vec()), golden);
    assert_eq!(
        ChannelHeader::decode(hex::decode(golden).unwrap().as_slice()).unwrap(),
        header
    );
}

#[test]
fn serialized_identity_encoding() {
    let bytes = serialize_identity("Org1MSP", b"-----BEGIN CERTIFICATE-----");
    assert_eq!(
        hex::encode(&bytes),
        "0a074f7267314d5350121b2d2d2d2d2d424547494e2043455254494649434154452d2d2d2d2d"
    );
    let id = parse_serialized_identity(&bytes, &Limits::default()).unwrap();
    assert_eq!(id.mspid, "Org1MSP");
}

#[test]
fn kv_rwset_encoding() {
    let set = KvrwSet {
        reads: vec![KvRead {
            key: "k1".into(),
            version: Some(Version {
                block_num: 4,
                tx_num: 2,
            }),
        }],
        range_queries_info: Vec::new(),
        writes: vec![KvWrite {
            key: "k2".into(),
            is_delete: true,
            value: Vec::new(),
        }],
        metadata_writes: Vec::new(),
        // Mercato's extension (field 100): absent, so Fabric's bytes are unchanged.
        deltas: Vec::new(),
    };
    assert_eq!(
        hex::encode(set.encode_to_vec()),
        "0a0a0a026b311204080410021a060a026b321001"
    );
}

#[test]
fn serialized_identity_without_msp_or_certificate_is_refused() {
    let limits = Limits::default();
    for bytes in [
        serialize_identity("", b"cert"),
        serialize_identity("Org1MSP", b""),
        Vec::new(),
        vec![0xff, 0xff],
    ] {
        assert!(
            parse_serialized_identity(&bytes, &limits).is_err(),
            "{bytes:?}"
        );
    }
}
