//! The hashes that tie Fabric's messages together, computed exactly as Fabric does.

use sha2::{Digest, Sha256};

use crate::pb::common::BlockHeader;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The transaction id: lowercase hex of SHA-256(nonce ‖ creator), where `creator` is the serialized
/// `msp.SerializedIdentity`.
pub fn txid(nonce: &[u8], creator: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(nonce);
    h.update(creator);
    hex::encode(h.finalize())
}

/// The proposal hash an endorsement binds to: SHA-256(channel header bytes ‖ signature header bytes
/// ‖ the encoded `ChaincodeProposalPayload` with its TransientMap removed).
pub fn proposal_hash(
    channel_header: &[u8],
    signature_header: &[u8],
    payload_without_transient: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(channel_header);
    h.update(signature_header);
    h.update(payload_without_transient);
    h.finalize().into()
}

/// The data hash of a block: SHA-256 of the plain concatenation of its envelopes (not a Merkle
/// tree), as Fabric computes it.
pub fn data_hash<'a>(envelopes: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    for e in envelopes {
        h.update(e);
    }
    h.finalize().into()
}

/// The bytes of a block header that are hashed and signed: the DER encoding of
/// `SEQUENCE { INTEGER number, OCTET STRING previous_hash, OCTET STRING data_hash }`.
pub fn block_header_bytes(header: &BlockHeader) -> Vec<u8> {
    let mut body = Vec::with_capacity(80);
    der_unsigned_integer(&mut body, header.number);
    der_tlv(&mut body, 0x04, &header.previous_hash);
    der_tlv(&mut body, 0x04, &header.data_hash);
    let mut out = Vec::with_capacity(body.len() + 4);
    der_tlv(&mut out, 0x30, &body);
    out
}

/// The hash that the next block's `previous_hash` carries: SHA-256 of [`block_header_bytes`].
pub fn block_header_hash(header: &BlockHeader) -> [u8; 32] {
    sha256(&block_header_bytes(header))
}

/// Appends a DER INTEGER holding `n`, minimally encoded as a non-negative two's-complement number.
fn der_unsigned_integer(out: &mut Vec<u8>, n: u64) {
    let bytes = n.to_be_bytes();
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut content = Vec::with_capacity(9);
    // A leading 1 bit would make the number negative, so such a number gets a zero byte first.
    if bytes[first] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(&bytes[first..]);
    der_tlv(out, 0x02, &content);
}

/// Appends a DER tag-length-value with a definite length (short or long form).
fn der_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let len_bytes = (len as u64).to_be_bytes();
        let first = len_bytes.iter().position(|&b| b != 0).unwrap_or(7);
        out.push(0x80 | (8 - first) as u8);
        out.extend_from_slice(&len_bytes[first..]);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    //! Golden vectors, computed independently (Python's hashlib over hand-assembled DER).
    use super::*;

    fn header(number: u64, previous_hash: Vec<u8>, data_hash: Vec<u8>) -> BlockHeader {
        BlockHeader {
            number,
            previous_hash,
            data_hash,
        }
    }

    #[test]
    fn txid_golden() {
        // SHA-256 of the bytes 01 01, the case of Fabric's own TestComputeProposalTxID.
        assert_eq!(
            txid(&[1], &[1]),
            "9dcf97a184f32623d11a73124ceb99a5709b083721e878a16d78f596718ba7b2"
        );
        assert_eq!(
            txid(b"nonce-0123456789abcdef01", b"creator"),
            "d1b1cd8890b3396d60addf73e8816ca739ec1fb04286c1ea4531deeddd4533ca"
        );
    }

    #[test]
    fn proposal_hash_golden() {
        assert_eq!(
            hex::encode(proposal_hash(b"chdr", b"shdr", b"payload")),
            "8010a77a8348ec83f759a9993d225cc44d16aad0148dd6189d798e92d3f416c4"
        );
    }

    #[test]
    fn data_hash_is_plain_concatenation() {
        let txs: [&[u8]; 4] = [b"tx-one", b"tx-two", b"", b"tx-three"];
        assert_eq!(
            hex::encode(data_hash(txs)),
            "19e60cc559f64561cb52871a5e43457379ca483f59fe0e81ab6498c8e7bf4fd3"
        );
        assert_eq!(
            hex::encode(data_hash(std::iter::empty())),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn block_header_der_golden() {
        // (number, previous hash, data hash, DER bytes, SHA-256 of the DER bytes)
        let cases = [
            (
                header(0, vec![], (0u8..32).collect()),
                "302702010004000420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                "afa2567803f7f3a839cf9d720474897a79c83a1da631906695fc89b4cd223517",
            ),
            (
                header(1, vec![1; 32], vec![2; 32]),
                "30470201010420010101010101010101010101010101010101010101010101010101010101010104200202020202020202020202020202020202020202020202020202020202020202",
                "8958d309221dff9175606e70d8b0f60d44326787f5375730953d3e4c7277894b",
            ),
            (
                // 128 needs a leading zero byte to stay a positive INTEGER.
                header(128, vec![0xaa; 32], vec![0xbb; 32]),
                "3048020200800420aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0420bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                "8dd91edc5cdfe1adc03a42381b5bc8690d451d734f3d405187bbce766bc88bd9",
            ),
            (
                header(u64::MAX, vec![0xff; 32], vec![0; 32]),
                "304f020900ffffffffffffffff0420ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff04200000000000000000000000000000000000000000000000000000000000000000",
                "8048942f74b1ad18c5c087d3a354d3980e71a4b1bf51ca488589ef5022054cc8",
            ),
        ];
        for (h, der, hash) in cases {
            assert_eq!(
                hex::encode(block_header_bytes(&h)),
                der,
                "block {}",
                h.number
            );
            assert_eq!(
                hex::encode(block_header_hash(&h)),
                hash,
                "block {}",
                h.number
            );
        }
    }

    #[test]
    fn der_long_form_length() {
        // A previous hash of 200 bytes needs the long length form (81 c8).
        let bytes = block_header_bytes(&header(5, vec![7; 200], vec![]));
        assert_eq!(&bytes[..3], &[0x30, 0x81, 0xd0]);
        assert_eq!(&bytes[3..6], &[0x02, 0x01, 0x05]);
        assert_eq!(&bytes[6..9], &[0x04, 0x81, 0xc8]);
    }
}
