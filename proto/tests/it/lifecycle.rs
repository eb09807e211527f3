//! One transaction from proposal to block, through every builder and parser.

use mercato_proto::block::{
    block_signature_message, block_signatures, metadata_entry, new_block, parse_block,
    set_transactions_filter, sign_block,
};
use mercato_proto::hash::{block_header_hash, sha256, txid};
use mercato_proto::pb::common::{BlockMetadataIndex, Envelope};
use mercato_proto::pb::protos::{ChaincodeAction, ChaincodeId, ProposalResponse, Response};
use mercato_proto::proposal::{new_proposal, parse_signed_proposal, sign_proposal};
use mercato_proto::response::{
    endorsement_message, error_response, new_proposal_response, parse_proposal_response,
};
use mercato_proto::transaction::{new_transaction, parse_transaction, sign_envelope};
use mercato_proto::{Limits, ParseError, Signer, TxValidationCode};
use prost::Message;

use crate::{HashSigner, input};

fn action(payload: &[u8]) -> ChaincodeAction {
    ChaincodeAction {
        results: b"rwset".to_vec(),
        events: Vec::new(),
        response: Some(Response {
            status: 200,
            message: String::new(),
            payload: payload.to_vec(),
        }),
        chaincode_id: Some(ChaincodeId {
            name: "market".into(),
            ..Default::default()
        }),
    }
}

/// Builds a signed, endorsed transaction envelope and returns it with its txid.
fn endorsed_envelope() -> (Envelope, String) {
    let client = HashSigner::new("SellersMSP", "alice");
    let limits = Limits::default();
    let unsigned = new_proposal(&input(), client.creator()).unwrap();
    let signed = sign_proposal(unsigned.proposal_bytes, &client).unwrap();
    let proposal = parse_signed_proposal(&signed, &limits).unwrap();
    let responses: Vec<ProposalResponse> = ["Brand1MSP", "Brand2MSP"]
        .iter()
        .map(|msp| {
            let peer = HashSigner::new(msp, "peer0");
            new_proposal_response(&proposal.proposal_hash, &action(b"ok"), &peer).unwrap()
        })
        .collect();
    let mut envelope = new_transaction(&proposal, &responses, &limits).unwrap();
    sign_envelope(&mut envelope, &client).unwrap();
    (envelope, unsigned.txid)
}

#[test]
fn proposal_round_trip_keeps_the_call_and_checks_txid() {
    let client = HashSigner::new("SellersMSP", "alice");
    let unsigned = new_proposal(&input(), client.creator()).unwrap();
    assert_eq!(unsigned.txid, txid(&[7; 24], client.creator()));
    let signed = sign_proposal(unsigned.proposal_bytes.clone(), &client).unwrap();
    assert_eq!(signed.signature, sha256(&unsigned.proposal_bytes).to_vec());

    let parsed = parse_signed_proposal(&signed, &Limits::default()).unwrap();
    assert_eq!(parsed.chaincode, "market");
    assert_eq!(parsed.function(), "placeOrder");
    assert_eq!(parsed.args, input().args);
    assert_eq!(parsed.transient, input().transient);
    assert_eq!(parsed.header.channel_header.channel_id, "commerce");
    assert_eq!(parsed.header.creator, client.creator);
    parsed.header.check_txid().unwrap();
    // The payload the transaction will carry has no transient data in it.
    assert!(
        !parsed
            .payload_without_transient
            .windows(3)
            .any(|w| w == b"shh")
    );
}

#[test]
fn tampered_txid_is_a_bad_proposal_txid() {
    let client = HashSigner::new("SellersMSP", "alice");
    let unsigned = new_proposal(&input(), client.creator()).unwrap();
    let signed = sign_proposal(unsigned.proposal_bytes, &client).unwrap();
    let mut parsed = parse_signed_proposal(&signed, &Limits::default()).unwrap();
    parsed.header.nonce = vec![8; 24];
    let err = parsed.header.check_txid().unwrap_err();
    assert_eq!(err.validation_code(), TxValidationCode::BadProposalTxid);
}

#[test]
fn endorsement_signs_payload_and_endorser_identity() {
    let peer = HashSigner::new("Brand1MSP", "peer0");
    let response = new_proposal_response(&[1; 32], &action(b"ok"), &peer).unwrap();
    let parsed = parse_proposal_response(&response, &Limits::default()).unwrap();
    assert_eq!(parsed.proposal_hash, vec![1; 32]);
    assert_eq!(parsed.endorsement.endorser, peer.creator);
    let expected = sha256(&endorsement_message(&response.payload, &peer.creator));
    assert_eq!(parsed.endorsement.signature, expected.to_vec());
    assert_eq!(parsed.action, action(b"ok"));
}

#[test]
fn error_response_is_reported_with_status_and_message() {
    let err = parse_proposal_response(
        &error_response(500, "no such chaincode"),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("status 500: no such chaincode"),
        "{err}"
    );
}

#[test]
fn transaction_round_trip() {
    let (envelope, id) = endorsed_envelope();
    let bytes = envelope.encode_to_vec();
    let tx = parse_transaction(&bytes, &Limits::default()).unwrap();
    assert_eq!(tx.header.channel_header.tx_id, id);
    tx.header.check_txid().unwrap();
    assert_eq!(tx.endorsements.len(), 2);
    assert_eq!(tx.action, action(b"ok"));
    assert_eq!(tx.signature, sha256(&tx.payload_bytes).to_vec());
    for e in &tx.endorsements {
        assert_eq!(
            e.signature,
            sha256(&endorsement_message(
                &tx.proposal_response_payload,
                &e.endorser
            ))
            .to_vec()
        );
    }
}

#[test]
fn disagreeing_endorsements_are_refused() {
    let client = HashSigner::new("SellersMSP", "alice");
    let limits = Limits::default();
    let unsigned = new_proposal(&input(), client.creator()).unwrap();
    let signed = sign_proposal(unsigned.proposal_bytes, &client).unwrap();
    let proposal = parse_signed_proposal(&signed, &limits).unwrap();
    let a = new_proposal_response(
        &proposal.proposal_hash,
        &action(b"ok"),
        &HashSigner::new("Brand1MSP", "peer0"),
    )
    .unwrap();
    let b = new_proposal_response(
        &proposal.proposal_hash,
        &action(b"different"),
        &HashSigner::new("Brand2MSP", "peer0"),
    )
    .unwrap();
    let err = new_transaction(&proposal, &[a.clone(), b], &limits).unwrap_err();
    assert!(err.to_string().contains("disagrees"), "{err}");
    let other = new_proposal_response(
        &[9; 32],
        &action(b"ok"),
        &HashSigner::new("Brand2MSP", "peer0"),
    )
    .unwrap();
    let err = new_transaction(&proposal, &[other], &limits).unwrap_err();
    assert!(err.to_string().contains("different proposal"), "{err}");
}

#[test]
fn block_round_trip_with_signature_and_filter() {
    let (envelope, _) = endorsed_envelope();
    let envelopes = vec![envelope.encode_to_vec(), b"second".to_vec()];
    let genesis = new_block(0, Vec::new(), Vec::new());
    let mut block = new_block(
        1,
        block_header_hash(genesis.header.as_ref().unwrap()).to_vec(),
        envelopes,
    );
    let orderer = HashSigner::new("OrdererMSP", "orderer0");
    sign_block(&mut block, b"meta".to_vec(), &orderer, vec![1, 2, 3]).unwrap();
    set_transactions_filter(
        &mut block,
        &[
            TxValidationCode::Valid.into(),
            TxValidationCode::MvccReadConflict.into(),
        ],
    );

    let parsed = parse_block(&block.encode_to_vec(), &Limits::default()).unwrap();
    assert_eq!(parsed, block);
    let sigs = block_signatures(&parsed, &Limits::default()).unwrap();
    assert_eq!(sigs.value, b"meta");
    let sig = &sigs.signatures[0];
    let msg = block_signature_message(
        &sigs.value,
        &sig.signature_header,
        parsed.header.as_ref().unwrap(),
    );
    assert_eq!(sig.signature, sha256(&msg).to_vec());
    assert_eq!(
        metadata_entry(&parsed, BlockMetadataIndex::TransactionsFilter),
        Some(&[0u8, 11][..])
    );
}

#[test]
fn block_with_wrong_data_hash_is_refused() {
    let mut block = new_block(3, vec![1; 32], vec![b"a".to_vec(), b"b".to_vec()]);
    block.data.as_mut().unwrap().data[1] = b"c".to_vec();
    let err = parse_block(&block.encode_to_vec(), &Limits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            ParseError::Invalid {
                layer: "BlockHeader.data_hash",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn block_over_the_transaction_limit_is_refused() {
    let block = new_block(3, vec![1; 32], vec![b"a".to_vec(); 11]);
    let limits = Limits {
        max_block_transactions: 10,
        ..Limits::default()
    };
    let err = parse_block(&block.encode_to_vec(), &limits).unwrap_err();
    assert!(
        matches!(
            err,
            ParseError::TooLarge {
                size: 11,
                limit: 10,
                ..
            }
        ),
        "{err}"
    );
}

/// Each malformed layer of an endorsed transaction gives the code Fabric's validator records.
#[test]
fn malformed_layers_map_to_validation_codes() {
    use mercato_proto::pb::common::{ChannelHeader, Header, Payload};
    use mercato_proto::pb::protos::Transaction;
    let (good, _) = endorsed_envelope();
    let payload = Payload::decode(good.payload.as_slice()).unwrap();
    let header = payload.header.clone().unwrap();

    let with_payload = |p: Payload| Envelope {
        payload: p.encode_to_vec(),
        signature: vec![1],
    };
    let with_header = |h: Header| {
        with_payload(Payload {
            header: Some(h),
            data: payload.data.clone(),
        })
    };
    let with_channel_header = |f: &dyn Fn(&mut ChannelHeader)| {
        let mut ch = ChannelHeader::decode(header.channel_header.as_slice()).unwrap();
        f(&mut ch);
        with_header(Header {
            channel_header: ch.encode_to_vec(),
            signature_header: header.signature_header.clone(),
        })
    };
    let with_data = |data: Vec<u8>| {
        with_payload(Payload {
            header: Some(header.clone()),
            data,
        })
    };
    let mut two_actions = Transaction::decode(payload.data.as_slice()).unwrap();
    two_actions.actions.push(two_actions.actions[0].clone());
    let mut other_action_header = Transaction::decode(payload.data.as_slice()).unwrap();
    other_action_header.actions[0].header = b"someone else".to_vec();

    let cases: Vec<(&str, Vec<u8>, TxValidationCode)> = vec![
        ("empty bytes", Vec::new(), TxValidationCode::NilEnvelope),
        (
            "not protobuf",
            vec![0xff; 10],
            TxValidationCode::NilEnvelope,
        ),
        (
            "no payload",
            Envelope {
                payload: vec![],
                signature: vec![1],
            }
            .encode_to_vec(),
            TxValidationCode::BadPayload,
        ),
        (
            "no signature",
            Envelope {
                payload: good.payload.clone(),
                signature: vec![],
            }
            .encode_to_vec(),
            TxValidationCode::BadCreatorSignature,
        ),
        (
            "garbage payload",
            Envelope {
                payload: vec![0xff; 3],
                signature: vec![1],
            }
            .encode_to_vec(),
            TxValidationCode::BadPayload,
        ),
        (
            "no header",
            with_payload(Payload {
                header: None,
                data: payload.data.clone(),
            })
            .encode_to_vec(),
            TxValidationCode::BadCommonHeader,
        ),
        (
            "no signature header",
            with_header(Header {
                channel_header: header.channel_header.clone(),
                signature_header: vec![],
            })
            .encode_to_vec(),
            TxValidationCode::BadCommonHeader,
        ),
        (
            "no channel",
            with_channel_header(&|ch| ch.channel_id.clear()).encode_to_vec(),
            TxValidationCode::BadChannelHeader,
        ),
        (
            "no timestamp",
            with_channel_header(&|ch| ch.timestamp = None).encode_to_vec(),
            TxValidationCode::BadChannelHeader,
        ),
        (
            "no chaincode extension",
            with_channel_header(&|ch| ch.extension.clear()).encode_to_vec(),
            TxValidationCode::BadHeaderExtension,
        ),
        (
            "config type",
            with_channel_header(&|ch| ch.r#type = 1).encode_to_vec(),
            TxValidationCode::UnknownTxType,
        ),
        (
            "garbage transaction",
            with_data(vec![0xff; 4]).encode_to_vec(),
            TxValidationCode::BadPayload,
        ),
        (
            "no actions",
            with_data(Vec::new()).encode_to_vec(),
            TxValidationCode::NilTxaction,
        ),
        (
            "two actions",
            with_data(two_actions.encode_to_vec()).encode_to_vec(),
            TxValidationCode::NilTxaction,
        ),
        (
            "action header differs",
            with_data(other_action_header.encode_to_vec()).encode_to_vec(),
            TxValidationCode::InvalidEndorserTransaction,
        ),
    ];
    for (name, bytes, code) in cases {
        let err = parse_transaction(&bytes, &Limits::default()).expect_err(name);
        assert_eq!(err.validation_code(), code, "{name}: {err}");
    }
}

#[test]
fn oversized_envelope_is_refused_before_decoding() {
    let limits = Limits {
        max_message_bytes: 100,
        ..Limits::default()
    };
    let err = parse_transaction(&[0u8; 101], &limits).unwrap_err();
    assert!(
        matches!(
            err,
            ParseError::TooLarge {
                size: 101,
                limit: 100,
                ..
            }
        ),
        "{err}"
    );
}
