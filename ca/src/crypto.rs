//! Signatures: ECDSA P-256/SHA-256 with low-S (Fabric's default) and Ed25519 (Fabric 3), and
//! P-384 verification for clients that sign with it.
//!
//! ECDSA signatures are DER-encoded `(r, s)`. Signers normalise `s` to the lower half of the group
//! order and verifiers reject the upper half, so a signature cannot be re-encoded into a second
//! valid one (Fabric's malleability rule). ECDSA signs SHA-256 of the message; Ed25519 signs the
//! message itself, as Fabric's clients do.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{self as ringsig, KeyPair};

use crate::error::{Error, Result};

mod ed25519;

/// The signature algorithm of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256: Fabric's default and the compatible choice.
    #[serde(rename = "p256")]
    EcdsaP256,
    /// Ed25519: about twice as fast to verify, four times batched.
    Ed25519,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "p256",
            KeyAlgorithm::Ed25519 => "ed25519",
        })
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "ecdsa" | "ecdsa-p256" => Ok(KeyAlgorithm::EcdsaP256),
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            other => Err(Error::UnsupportedKey(format!(
                "unknown key algorithm {other:?} (expected p256 or ed25519)"
            ))),
        }
    }
}

/// The order of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] =
    hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
/// Half the order of the P-256 group: the largest low `s`.
const P256_HALF_ORDER: [u8; 32] =
    hex32("7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8");
/// Half the order of the P-384 group.
const P384_HALF_ORDER: [u8; 48] = hex48(
    "7fffffffffffffffffffffffffffffffffffffffffffffffe3b1a6c0fa1b96efac0d06d9245853bd76760cb5666294b9",
);

/// A public key that Mercato verifies signatures with.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// An uncompressed P-256 point (65 bytes).
    EcdsaP256(Vec<u8>),
    /// An uncompressed P-384 point (97 bytes); accepted from clients, never issued by Mercato.
    EcdsaP384(Vec<u8>),
    /// An Ed25519 key, decompressed once when the identity is validated.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicKey::EcdsaP256(p) => write!(f, "EcdsaP256({})", hex::encode(p)),
            PublicKey::EcdsaP384(p) => write!(f, "EcdsaP384({})", hex::encode(p)),
            PublicKey::Ed25519(k) => write!(f, "Ed25519({})", hex::encode(k.as_bytes())),
        }
    }
}

/// OIDs of the key types, in dotted form.
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";

impl PublicKey {
    /// Reads the key of a certificate's SubjectPublicKeyInfo. RSA, other curves and weak Ed25519
    /// keys (of small order) are refused.
    pub fn from_spki(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<Self> {
        let alg = spki.algorithm.algorithm.to_id_string();
        let key = spki.subject_public_key.data.as_ref();
        match alg.as_str() {
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                match (curve.as_str(), key.len()) {
                    (OID_P256, 65) => Ok(PublicKey::EcdsaP256(key.to_vec())),
                    (OID_P384, 97) => Ok(PublicKey::EcdsaP384(key.to_vec())),
                    (OID_P256 | OID_P384, n) => Err(Error::UnsupportedKey(format!(
                        "EC point of {n} bytes is not an uncompressed point"
                    ))),
                    (other, _) => Err(Error::UnsupportedKey(format!(
                        "unsupported elliptic curve {other} (P-256 and P-384 are supported)"
                    ))),
                }
            }
            OID_ED25519 => {
                let bytes: [u8; 32] = key.try_into().map_err(|_| {
                    Error::UnsupportedKey(format!("Ed25519 key of {} bytes", key.len()))
                })?;
                let vk = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| {
                    Error::UnsupportedKey("Ed25519 key is not a valid point".into())
                })?;
                if vk.is_weak() {
                    return Err(Error::UnsupportedKey("Ed25519 key has small order".into()));
                }
                Ok(PublicKey::Ed25519(vk))
            }
            other => Err(Error::UnsupportedKey(format!(
                "unsupported public key algorithm {other}"
            ))),
        }
    }

    /// The key's algorithm name, for messages.
    pub fn algorithm_name(&self) -> &'static str {
        match self {
            PublicKey::EcdsaP256(_) => "ECDSA P-256",
            PublicKey::EcdsaP384(_) => "ECDSA P-384",
            PublicKey::Ed25519(_) => "Ed25519",
        }
    }

    /// Verifies `signature` over `message`. ECDSA signatures must be strict DER with a low `s`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        match self {
            PublicKey::EcdsaP256(point) => {
                check_low_s(signature, &P256_HALF_ORDER)?;
                ringsig::UnparsedPublicKey::new(&ringsig::ECDSA_P256_SHA256_ASN1, point)
                    .verify(message, signature)
                    .map_err(|_| {
                        Error::BadSignature("ECDSA P-256 signature does not verify".into())
                    })
            }
            PublicKey::EcdsaP384(point) => {
                check_low_s(signature, &P384_HALF_ORDER)?;
                // Fabric hashes with SHA-256 whatever the curve.
                ringsig::UnparsedPublicKey::new(&ringsig::ECDSA_P384_SHA256_ASN1, point)
                    .verify(message, signature)
                    .map_err(|_| {
                        Error::BadSignature("ECDSA P-384 signature does not verify".into())
                    })
            }
            PublicKey::Ed25519(vk) => {
                if ed25519::holds(&ed25519::prepare(vk, message, signature)?) {
                    Ok(())
                } else {
                    Err(Error::BadSignature(
                        "Ed25519 signature does not verify".into(),
                    ))
                }
            }
        }
    }
}

/// One Ed25519 signature to verify in a batch.
pub struct Ed25519Item<'a> {
    /// The signer's key.
    pub key: &'a ed25519_dalek::VerifyingKey,
    /// The signed message.
    pub message: &'a [u8],
    /// The signature bytes.
    pub signature: &'a [u8],
}

/// Verifies many Ed25519 signatures at once, about twice as fast as one by one. Returns one result
/// per item, each the verdict [`PublicKey::verify`] gives that item alone: the rule is the
/// cofactored equation for both (see the `ed25519` module), so no verdict depends on which other
/// signatures share the batch. When the batch as a whole fails, the items are checked one by one
/// to learn which are bad.
pub fn verify_ed25519_batch(items: &[Ed25519Item<'_>]) -> Vec<Result<()>> {
    // A batch holds few keys (a channel's endorsers, its active clients): each is checked once.
    let mut weak: std::collections::BTreeMap<&[u8; 32], bool> = std::collections::BTreeMap::new();
    let prepared: Vec<Result<ed25519::Prepared>> = items
        .iter()
        .map(|i| {
            if *weak
                .entry(i.key.as_bytes())
                .or_insert_with(|| ed25519::weak_key(i.key))
            {
                return Err(ed25519::weak_key_error());
            }
            ed25519::prepare_under_sound_key(i.key, i.message, i.signature)
        })
        .collect();
    let well_formed: Vec<&ed25519::Prepared> = prepared.iter().flatten().collect();
    let all_hold = ed25519::all_hold(&well_formed);
    prepared
        .into_iter()
        .map(|p| {
            let p = p?;
            if all_hold || ed25519::holds(&p) {
                Ok(())
            } else {
                Err(Error::BadSignature(
                    "Ed25519 signature does not verify".into(),
                ))
            }
        })
        .collect()
}

/// One signature to verify, by a key of any algorithm.
pub struct SignedItem<'a> {
    /// The signer's key.
    pub key: &'a PublicKey,
    /// The signed message.
    pub message: &'a [u8],
    /// The signature bytes.
    pub signature: &'a [u8],
}

/// Verifies many signatures: the Ed25519 ones in one batch ([`verify_ed25519_batch`]), the
/// others one by one. Returns one result per item, each the verdict [`PublicKey::verify`] gives
/// that item alone.
pub fn verify_many(items: &[SignedItem<'_>]) -> Vec<Result<()>> {
    let mut verdicts: Vec<Option<Result<()>>> = Vec::with_capacity(items.len());
    let mut batch = Vec::new();
    for item in items {
        verdicts.push(match item.key {
            PublicKey::Ed25519(key) => {
                batch.push(Ed25519Item {
                    key,
                    message: item.message,
                    signature: item.signature,
                });
                None
            }
            key => Some(key.verify(item.message, item.signature)),
        });
    }
    let mut batched = verify_ed25519_batch(&batch).into_iter();
    verdicts
        .into_iter()
        .map(|v| {
            // One batch verdict per `None`, in order; fail closed all the same.
            v.or_else(|| batched.next())
                .unwrap_or_else(|| Err(Error::BadSignature("not verified".into())))
        })
        .collect()
}

/// A private key that signs as an identity.
pub enum SigningKey {
    /// An ECDSA P-256 key.
    EcdsaP256(ringsig::EcdsaKeyPair),
    /// An Ed25519 key (signing with curve25519-dalek's precomputed tables, about a quarter
    /// faster here than ring's; the signatures are the same, Ed25519 being deterministic).
    Ed25519(ed25519_dalek::SigningKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(f, "SigningKey({})", self.algorithm())
    }
}

impl SigningKey {
    /// Generates a new key; returns it with its PKCS#8 DER encoding (to be written to a keystore).
    pub fn generate(algorithm: KeyAlgorithm) -> Result<(SigningKey, Vec<u8>)> {
        let rng = SystemRandom::new();
        let pkcs8 = match algorithm {
            KeyAlgorithm::EcdsaP256 => ringsig::EcdsaKeyPair::generate_pkcs8(
                &ringsig::ECDSA_P256_SHA256_ASN1_SIGNING,
                &rng,
            ),
            KeyAlgorithm::Ed25519 => ringsig::Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| Error::Key("the system random generator failed".into()))?;
        let der = pkcs8.as_ref().to_vec();
        Ok((SigningKey::from_pkcs8(&der)?, der))
    }

    /// Loads a PKCS#8 DER private key: P-256 or Ed25519 (v1 or v2, as Go and ring write them).
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey> {
        let rng = SystemRandom::new();
        if let Ok(k) =
            ringsig::EcdsaKeyPair::from_pkcs8(&ringsig::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
        {
            return Ok(SigningKey::EcdsaP256(k));
        }
        if let Ok(k) = ringsig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return ed25519_signing_key(der, k.public_key().as_ref()).map(SigningKey::Ed25519);
        }
        Err(Error::Key(
            "not a PKCS#8 P-256 or Ed25519 private key".into(),
        ))
    }

    /// Loads a PEM `PRIVATE KEY` (PKCS#8).
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey> {
        let der = pem_blocks(pem, "PRIVATE KEY")?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Key("no PRIVATE KEY block in the PEM".into()))?;
        SigningKey::from_pkcs8(&der)
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            SigningKey::EcdsaP256(_) => KeyAlgorithm::EcdsaP256,
            SigningKey::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> Result<PublicKey> {
        match self {
            SigningKey::EcdsaP256(k) => Ok(PublicKey::EcdsaP256(k.public_key().as_ref().to_vec())),
            SigningKey::Ed25519(k) => Ok(PublicKey::Ed25519(k.verifying_key())),
        }
    }

    /// The raw public key bytes (an uncompressed point, or 32 Ed25519 bytes).
    pub fn public_key_bytes(&self) -> &[u8] {
        match self {
            SigningKey::EcdsaP256(k) => k.public_key().as_ref(),
            SigningKey::Ed25519(k) => AsRef::<ed25519_dalek::VerifyingKey>::as_ref(k).as_bytes(),
        }
    }

    /// Signs as Fabric does: ECDSA over SHA-256(message) as low-S DER; Ed25519 over the message.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        match self {
            SigningKey::EcdsaP256(k) => {
                let sig = k
                    .sign(&SystemRandom::new(), message)
                    .map_err(|_| Error::Key("ECDSA signing failed".into()))?;
                normalize_low_s_p256(sig.as_ref())
            }
            SigningKey::Ed25519(k) => {
                Ok(ed25519_dalek::Signer::sign(k, message).to_bytes().to_vec())
            }
        }
    }
}

/// The Ed25519 key of a PKCS#8 document that ring has parsed (v1 or v2, RFC 8410): its 32-byte
/// seed follows the fixed version and algorithm fields, in an OCTET STRING inside the
/// privateKey OCTET STRING. The key it gives must have ring's public key.
fn ed25519_signing_key(der: &[u8], public: &[u8]) -> Result<ed25519_dalek::SigningKey> {
    const SEED_AT: usize = 16;
    let seed: [u8; 32] = der
        .get(SEED_AT - 4..SEED_AT + 32)
        .filter(|b| b[..4] == [0x04, 0x22, 0x04, 0x20])
        .and_then(|b| b[4..].try_into().ok())
        .ok_or_else(|| Error::Key("Ed25519 PKCS#8 key without its 32-byte seed".into()))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    if key.verifying_key().as_bytes().as_slice() != public {
        return Err(Error::Key(
            "Ed25519 PKCS#8 key whose public key is not its seed's".into(),
        ));
    }
    Ok(key)
}

/// Splits a DER ECDSA signature into its `r` and `s` integer contents, strictly: one SEQUENCE of
/// two minimal positive INTEGERs and nothing after it.
fn der_signature_parts(sig: &[u8]) -> Result<(&[u8], &[u8])> {
    let bad = |why: &str| Error::BadSignature(format!("signature is not strict DER: {why}"));
    let (tag, body, rest) = der_read(sig).ok_or_else(|| bad("truncated"))?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(bad("expected one SEQUENCE"));
    }
    let (tag_r, r, rest) = der_read(body).ok_or_else(|| bad("truncated r"))?;
    let (tag_s, s, rest) = der_read(rest).ok_or_else(|| bad("truncated s"))?;
    if tag_r != 0x02 || tag_s != 0x02 || !rest.is_empty() {
        return Err(bad("expected two INTEGERs"));
    }
    for int in [r, s] {
        match int {
            [] => return Err(bad("empty INTEGER")),
            [first, ..] if first & 0x80 != 0 => return Err(bad("negative INTEGER")),
            [0, second, ..] if second & 0x80 == 0 => return Err(bad("non-minimal INTEGER")),
            _ => {}
        }
    }
    Ok((r, s))
}

/// Reads one short-form or one-byte long-form DER TLV (ECDSA signatures never need more).
fn der_read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let (len, rest) = match len {
        l if l < 0x80 => (l as usize, rest),
        0x81 => {
            let (&l, rest) = rest.split_first()?;
            if l < 0x80 {
                return None;
            }
            (l as usize, rest)
        }
        _ => return None,
    };
    if rest.len() < len {
        return None;
    }
    let (body, rest) = rest.split_at(len);
    Some((tag, body, rest))
}

/// Compares a big-endian unsigned integer (leading zeros allowed) with a fixed-width one.
fn greater_than<const N: usize>(value: &[u8], bound: &[u8; N]) -> bool {
    let first = value.iter().position(|&b| b != 0).unwrap_or(value.len());
    let value = &value[first..];
    if value.len() != N {
        return value.len() > N;
    }
    value > bound.as_slice()
}

/// Refuses an ECDSA signature whose `s` is in the upper half of the group order.
fn check_low_s<const N: usize>(sig: &[u8], half_order: &[u8; N]) -> Result<()> {
    let (_, s) = der_signature_parts(sig)?;
    if greater_than(s, half_order) {
        return Err(Error::BadSignature(
            "ECDSA signature has a high S value (s > n/2)".into(),
        ));
    }
    Ok(())
}

/// Rewrites a P-256 signature with `s` replaced by `n - s` when `s` is high.
fn normalize_low_s_p256(sig: &[u8]) -> Result<Vec<u8>> {
    let (_, s) = der_signature_parts(sig)?;
    if greater_than(s, &P256_HALF_ORDER) {
        flip_s(sig)
    } else {
        Ok(sig.to_vec())
    }
}

/// The other valid encoding of a P-256 signature: `(r, n - s)`. Verifiers refuse the high-S one
/// of the pair; this exists so tests and tools can produce it.
pub fn flip_s(sig: &[u8]) -> Result<Vec<u8>> {
    let (r, s) = der_signature_parts(sig)?;
    let first = s.iter().position(|&b| b != 0).unwrap_or(s.len());
    let s = &s[first..];
    if s.len() > 32 {
        return Err(Error::BadSignature("s is longer than 32 bytes".into()));
    }
    let mut s_fixed = [0u8; 32];
    s_fixed[32 - s.len()..].copy_from_slice(s);
    Ok(der_ecdsa_signature(r, &sub_be(&P256_ORDER, &s_fixed)))
}

/// `a - b` for big-endian 256-bit numbers with `a >= b`.
fn sub_be(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = if d < 0 {
            d += 256;
            1
        } else {
            0
        };
        out[i] = d as u8;
    }
    out
}

/// Encodes `(r, s)` as a DER ECDSA signature with minimal INTEGERs.
pub(crate) fn der_ecdsa_signature(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn int(out: &mut Vec<u8>, v: &[u8]) {
        let first = v
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(v.len().saturating_sub(1));
        let v = &v[first..];
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        out.push((v.len() + pad as usize) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(72);
    int(&mut body, r);
    int(&mut body, s);
    let mut out = Vec::with_capacity(body.len() + 3);
    out.push(0x30);
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend_from_slice(&body);
    out
}

/// The DER contents of every PEM block labelled `label` in `pem`.
pub fn pem_blocks(pem: &[u8], label: &str) -> Result<Vec<Vec<u8>>> {
    let blocks = pem::parse_many(pem).map_err(|e| Error::Certificate(format!("bad PEM: {e}")))?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == label)
        .map(pem::Pem::into_contents)
        .collect())
}

/// A fresh 24-byte nonce from the system's secure generator (Fabric's nonce size), for the
/// headers of proposals and signed requests.
pub fn random_nonce() -> Result<Vec<u8>> {
    use ring::rand::SecureRandom;
    let mut nonce = vec![0u8; 24];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::Key("the system random generator failed".into()))?;
    Ok(nonce)
}

/// Encodes DER as one PEM block.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

const fn hex_nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("bad hex constant"),
    }
}

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = hex_nibble(b[2 * i]) << 4 | hex_nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn hex48(s: &str) -> [u8; 48] {
    let b = s.as_bytes();
    let mut out = [0u8; 48];
    let mut i = 0;
    while i < 48 {
        out[i] = hex_nibble(b[2 * i]) << 4 | hex_nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mixed algorithms in one call: every verdict is the one the key gives alone.
    #[test]
    fn many_signatures_of_mixed_algorithms_get_their_own_verdicts() {
        let (ed, _) = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let (p256, _) = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let (ed_key, p256_key) = (ed.public_key().unwrap(), p256.public_key().unwrap());
        let cases: Vec<(&PublicKey, Vec<u8>, Vec<u8>)> = (0..8u8)
            .map(|i| {
                let (signer, key) = if i % 3 == 0 {
                    (&p256, &p256_key)
                } else {
                    (&ed, &ed_key)
                };
                let signature = signer.sign(&[i]).unwrap();
                // Items 2 (Ed25519) and 6 (P-256) are checked over another message.
                let message = if i == 2 || i == 6 {
                    vec![0xff]
                } else {
                    vec![i]
                };
                (key, message, signature)
            })
            .collect();
        let items: Vec<SignedItem<'_>> = cases
            .iter()
            .map(|(key, message, signature)| SignedItem {
                key,
                message,
                signature,
            })
            .collect();
        let verdicts: Vec<bool> = verify_many(&items).iter().map(Result::is_ok).collect();
        let alone: Vec<bool> = cases
            .iter()
            .map(|(key, message, signature)| key.verify(message, signature).is_ok())
            .collect();
        assert_eq!(verdicts, alone);
        assert_eq!(verdicts, [true, true, false, true, true, true, false, true]);
    }

    /// Ed25519 keys load from ring's v2 documents and from v1 ones (as Go writes them), and
    /// sign exactly as ring does with the same key.
    #[test]
    fn ed25519_keys_load_from_both_pkcs8_versions_and_sign_as_ring_does() {
        let (key, v2) = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let ring_key = ringsig::Ed25519KeyPair::from_pkcs8(&v2).unwrap();
        let message = b"a proposal to endorse";
        assert_eq!(key.sign(message).unwrap(), ring_key.sign(message).as_ref());
        assert_eq!(key.public_key_bytes(), ring_key.public_key().as_ref());
        key.public_key()
            .unwrap()
            .verify(message, &key.sign(message).unwrap())
            .unwrap();

        let mut v1 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        v1.extend_from_slice(&v2[16..48]);
        let from_v1 = SigningKey::from_pkcs8(&v1).unwrap();
        assert_eq!(from_v1.sign(message).unwrap(), key.sign(message).unwrap());

        // A v2 document whose public key is another key's is refused.
        let (other, _) = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let mut mixed = v2.clone();
        let n = mixed.len();
        mixed[n - 32..].copy_from_slice(other.public_key_bytes());
        assert!(SigningKey::from_pkcs8(&mixed).is_err());
    }

    #[test]
    fn p256_signatures_are_low_s_and_verify() {
        let (key, _) = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let public = key.public_key().unwrap();
        // Random k makes s high about half the time; many signatures cover both branches.
        for i in 0..64u32 {
            let msg = i.to_be_bytes();
            let sig = key.sign(&msg).unwrap();
            let (_, s) = der_signature_parts(&sig).unwrap();
            assert!(!greater_than(s, &P256_HALF_ORDER));
            public.verify(&msg, &sig).unwrap();
            assert!(public.verify(b"other", &sig).is_err());
        }
    }

    #[test]
    fn high_s_is_rejected() {
        let (key, _) = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let public = key.public_key().unwrap();
        let sig = key.sign(b"m").unwrap();
        let high = flip_s(&sig).unwrap();
        // The high-S twin is mathematically valid, and must still be refused.
        ringsig::UnparsedPublicKey::new(&ringsig::ECDSA_P256_SHA256_ASN1, public_bytes(&public))
            .verify(b"m", &high)
            .unwrap();
        let err = public.verify(b"m", &high).unwrap_err();
        assert!(err.to_string().contains("high S"), "{err}");
    }

    fn public_bytes(p: &PublicKey) -> &[u8] {
        match p {
            PublicKey::EcdsaP256(b) => b,
            _ => unreachable!(),
        }
    }

    #[test]
    fn ed25519_signs_and_verifies_single_and_batched() {
        let keys: Vec<SigningKey> = (0..8)
            .map(|_| SigningKey::generate(KeyAlgorithm::Ed25519).unwrap().0)
            .collect();
        let publics: Vec<ed25519_dalek::VerifyingKey> = keys
            .iter()
            .map(|k| match k.public_key().unwrap() {
                PublicKey::Ed25519(vk) => vk,
                _ => unreachable!(),
            })
            .collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let mut sigs: Vec<Vec<u8>> = keys
            .iter()
            .zip(&msgs)
            .map(|(k, m)| k.sign(m).unwrap())
            .collect();
        let items = |sigs: &[Vec<u8>]| -> Vec<Result<()>> {
            let items: Vec<Ed25519Item<'_>> = (0..8)
                .map(|i| Ed25519Item {
                    key: &publics[i],
                    message: &msgs[i],
                    signature: &sigs[i],
                })
                .collect();
            verify_ed25519_batch(&items)
        };
        assert!(items(&sigs).iter().all(Result::is_ok));
        sigs[3][0] ^= 1;
        sigs[5].truncate(10);
        let results = items(&sigs);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i == 3 || i == 5, "item {i}");
        }
    }

    #[test]
    fn garbage_signatures_are_errors_not_panics() {
        let (p256, _) = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let (ed, _) = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        for key in [p256.public_key().unwrap(), ed.public_key().unwrap()] {
            for sig in [
                &[][..],
                &[0x30],
                &[0x30, 0x81],
                &[0x30, 0x02, 0x02, 0x00],
                &[0xff; 80],
            ] {
                assert!(key.verify(b"m", sig).is_err());
            }
        }
    }

    #[test]
    fn pkcs8_round_trip_and_pem() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let (key, der) = SigningKey::generate(alg).unwrap();
            let pem = to_pem("PRIVATE KEY", &der);
            let loaded = SigningKey::from_pem(pem.as_bytes()).unwrap();
            assert_eq!(loaded.algorithm(), alg);
            assert_eq!(loaded.public_key_bytes(), key.public_key_bytes());
            let sig = loaded.sign(b"x").unwrap();
            key.public_key().unwrap().verify(b"x", &sig).unwrap();
        }
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
    }
}
