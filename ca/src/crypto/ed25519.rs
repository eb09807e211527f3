//! Ed25519 verification with one rule for single and batched checks.
//!
//! Two correct Ed25519 verifiers can disagree about a signature whose `R` carries a small-order
//! component: the cofactorless equation `[s]B = R + [k]A` (RFC 8032's "may", ed25519-dalek's
//! `verify_strict`) rejects it, while a batch with random coefficients accepts it or not
//! depending on the coefficients, and so on which other signatures share the batch. A committer
//! whose batches depend on its core count or on which endorsements it recognises as its own
//! would then judge the same transaction differently from its neighbours, and the ledgers fork.
//!
//! Mercato therefore checks the cofactored equation `[8]([s]B - R - [k]A) = 0`, one by one and in
//! batches alike. Cofactored batch verification agrees with cofactored single verification
//! except with probability about 2^-128 (Chalkias, Garillot, Nikolaenko: "Taming the many
//! EdDSAs", 2020), so a signature's verdict depends on the signature, its key and its message
//! alone. On top of the equation, every check refuses a non-canonical `s` or `R` encoding and a
//! small-order `R` or key, as `verify_strict` does. An honest signer's signature passes both
//! rules; only a crafted one can tell them apart.

use std::collections::BTreeMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

use crate::error::{Error, Result};

/// A signature decoded and hashed, ready for the equation.
pub(super) struct Prepared {
    s: Scalar,
    r: EdwardsPoint,
    k: Scalar,
    a: EdwardsPoint,
    /// The key's encoding, which names `a` (one encoding decodes to one point).
    key: [u8; 32],
}

fn bad(why: &str) -> Error {
    Error::BadSignature(format!("Ed25519 signature {why}"))
}

/// Whether 32 bytes are the canonical encoding of a field element's `y`: below 2^255 - 19 once
/// the sign bit is cleared.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f;
    !(top == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed)
}

/// The `y` encodings (sign bit cleared) of the eight points of small order: `1` (the identity),
/// `-1` (order 2), `0` (the two of order 4) and `±y₈` (the four of order 8). A canonical `y`
/// among them decodes, with either sign bit, to a point of small order (the torsion points come
/// in pairs `(±x, y)`, and for `x = 0` both sign bits name the same point), and no other `y`
/// does. Comparing 32 bytes is cheaper than the three doublings of `is_small_order`.
fn small_order_ys() -> &'static [[u8; 32]] {
    static YS: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    YS.get_or_init(|| {
        let mut ys: Vec<[u8; 32]> = curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .map(|t| {
                let mut y = t.compress().to_bytes();
                y[31] &= 0x7f;
                y
            })
            .collect();
        ys.sort_unstable();
        ys.dedup();
        ys
    })
}

/// Whether a point encoding with a canonical `y` decodes to a point of small order.
fn small_order_encoding(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    small_order_ys().contains(&y)
}

/// Whether an Ed25519 key is of small order, which no honest signer's is: a signature under it
/// would say nothing about who signed. (By the point: a key's encoding may have a non-canonical
/// `y`.)
pub(super) fn weak_key(key: &ed25519_dalek::VerifyingKey) -> bool {
    key.is_weak()
}

/// The error for a signature under a key of small order.
pub(super) fn weak_key_error() -> Error {
    Error::BadSignature("Ed25519 key of small order".into())
}

/// Decodes a signature and computes `k = SHA-512(R ‖ A ‖ M) mod ℓ`, refusing what no honest
/// signer produces.
pub(super) fn prepare(
    key: &ed25519_dalek::VerifyingKey,
    message: &[u8],
    signature: &[u8],
) -> Result<Prepared> {
    if weak_key(key) {
        return Err(weak_key_error());
    }
    prepare_under_sound_key(key, message, signature)
}

/// [`prepare`] for a key the caller has found not [`weak_key`] (a batch checks each of its keys
/// once).
pub(super) fn prepare_under_sound_key(
    key: &ed25519_dalek::VerifyingKey,
    message: &[u8],
    signature: &[u8],
) -> Result<Prepared> {
    let sig: &[u8; 64] = signature.try_into().map_err(|_| {
        Error::BadSignature(format!(
            "Ed25519 signature of {} bytes (expected 64)",
            signature.len()
        ))
    })?;
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&sig[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&sig[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
        .ok_or_else(|| bad("has an s not below the group order"))?;
    if !canonical_y(&r_bytes) {
        return Err(bad("has a non-canonical R"));
    }
    if small_order_encoding(&r_bytes) {
        return Err(bad("has an R of small order"));
    }
    let r = CompressedEdwardsY(r_bytes)
        .decompress()
        .ok_or_else(|| bad("has an R that is not a curve point"))?;
    let a = key.to_edwards();
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.as_bytes());
    h.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    Ok(Prepared {
        s,
        r,
        k,
        a,
        key: *key.as_bytes(),
    })
}

/// The cofactored equation for one signature.
pub(super) fn holds(p: &Prepared) -> bool {
    // [k](-A) + [s]B - R
    let d = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-p.a, &p.s) - p.r;
    d.mul_by_cofactor().is_identity()
}

/// The cofactored equation for all of `items` at once, with 128-bit coefficients drawn from a
/// SHA-512 transcript of the batch: whether every item's own equation holds, but for a chance
/// of about 2^-128.
pub(super) fn all_hold(items: &[&Prepared]) -> bool {
    match items.len() {
        0 => return true,
        1 => return holds(items[0]),
        _ => {}
    }
    let mut t = Sha512::new();
    t.update(b"mercato ed25519 batch v1");
    t.update((items.len() as u64).to_le_bytes());
    // `k` hashes R, the key and the message; with `s` it pins down the whole batch.
    for p in items {
        t.update(p.k.as_bytes());
        t.update(p.s.as_bytes());
    }
    let seed = t.finalize();
    let mut zs = Vec::with_capacity(items.len());
    for block in 0..items.len().div_ceil(4) as u64 {
        let mut h = Sha512::new();
        h.update(seed);
        h.update(block.to_le_bytes());
        let out = h.finalize();
        for z in out.chunks_exact(16) {
            if zs.len() == items.len() {
                break;
            }
            let mut wide = [0u8; 32];
            wide[..16].copy_from_slice(z);
            zs.push(Scalar::from_bytes_mod_order(wide));
        }
    }
    let b_coefficient: Scalar = items.iter().zip(&zs).map(|(p, z)| z * p.s).sum();
    // The signatures of one key share its term: the z·k·A of each is summed as (Σ z·k)·A. That
    // is the same sum, regrouped. A batch holds few keys (a channel's endorsers, its active
    // clients) and a key's coefficient is full-size where an R's is 128 bits, so this takes
    // most of the equation's cost away. The map is only summed into: its order is no input.
    let mut keys: BTreeMap<[u8; 32], (Scalar, EdwardsPoint)> = BTreeMap::new();
    for (p, z) in items.iter().zip(&zs) {
        keys.entry(p.key).or_insert((Scalar::ZERO, p.a)).0 += z * p.k;
    }
    let scalars = std::iter::once(-b_coefficient)
        .chain(zs.iter().copied())
        .chain(keys.values().map(|(c, _)| *c));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(items.iter().map(|p| p.r))
        .chain(keys.values().map(|(_, a)| *a));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;

    /// A key from a known scalar, so that tests can sign what no honest signer would.
    fn key(seed: u8) -> (Scalar, ed25519_dalek::VerifyingKey) {
        let a = Scalar::from_bytes_mod_order([seed; 32]);
        let point = &a * ED25519_BASEPOINT_TABLE;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(point.compress().as_bytes()).unwrap();
        (a, vk)
    }

    /// A signature whose nonce point carries `torsion`: `R = [r]B + T`, `s = r + k·a`.
    fn sign_with_torsion(
        a: &Scalar,
        vk: &ed25519_dalek::VerifyingKey,
        msg: &[u8],
        torsion: EdwardsPoint,
    ) -> Vec<u8> {
        let r = Scalar::from_bytes_mod_order([0x5a; 32]);
        let big_r = (&r * ED25519_BASEPOINT_TABLE + torsion).compress();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(vk.as_bytes());
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * a;
        [big_r.to_bytes(), s.to_bytes()].concat()
    }

    fn refs(batch: &[Prepared]) -> Vec<&Prepared> {
        batch.iter().collect()
    }

    /// Each signature's verdict from one `verify_ed25519_batch` call: (key, message, signature).
    fn batch_verdicts(cases: &[(&ed25519_dalek::VerifyingKey, &[u8], &[u8])]) -> Vec<bool> {
        use crate::crypto::{Ed25519Item, verify_ed25519_batch};
        let items: Vec<Ed25519Item<'_>> = cases
            .iter()
            .map(|&(key, message, signature)| Ed25519Item {
                key,
                message,
                signature,
            })
            .collect();
        verify_ed25519_batch(&items)
            .iter()
            .map(Result::is_ok)
            .collect()
    }

    /// The point (0, -1), of order 2.
    fn order_two() -> EdwardsPoint {
        let mut y = [0xffu8; 32];
        y[0] = 0xec;
        y[31] = 0x7f;
        let t = CompressedEdwardsY(y).decompress().unwrap();
        assert!(t.is_small_order() && !t.is_identity());
        t
    }

    #[test]
    fn an_honest_signature_holds_and_a_changed_message_does_not() {
        let (a, vk) = key(7);
        let sig = sign_with_torsion(&a, &vk, b"order 1", EdwardsPoint::default());
        assert!(holds(&prepare(&vk, b"order 1", &sig).unwrap()));
        assert!(!holds(&prepare(&vk, b"order 2", &sig).unwrap()));
        // It is a standard signature too.
        let dalek = ed25519_dalek::Signature::from_slice(&sig).unwrap();
        assert!(vk.verify_strict(b"order 1", &dalek).is_ok());
    }

    #[test]
    fn a_torsioned_r_gets_the_same_verdict_alone_and_in_any_batch() {
        let (a, vk) = key(9);
        let crafted = sign_with_torsion(&a, &vk, b"m", order_two());
        // The cofactorless rule refuses it; ours accepts it, whatever its company.
        let dalek = ed25519_dalek::Signature::from_slice(&crafted).unwrap();
        assert!(vk.verify_strict(b"m", &dalek).is_err());
        assert!(holds(&prepare(&vk, b"m", &crafted).unwrap()));
        let honest: Vec<Vec<u8>> = (0..6u8)
            .map(|i| sign_with_torsion(&a, &vk, &[i], EdwardsPoint::default()))
            .collect();
        for n in 0..honest.len() {
            let mut batch = vec![prepare(&vk, b"m", &crafted).unwrap()];
            for (i, sig) in honest.iter().enumerate().take(n) {
                batch.push(prepare(&vk, &[i as u8], sig).unwrap());
            }
            assert!(all_hold(&refs(&batch)), "batch of {}", batch.len());
        }
    }

    #[test]
    fn a_batch_with_a_bad_signature_keeps_every_other_verdict() {
        use crate::crypto::PublicKey;
        let (a, vk) = key(11);
        let crafted = sign_with_torsion(&a, &vk, b"c", order_two());
        let honest = sign_with_torsion(&a, &vk, b"h", EdwardsPoint::default());
        let verdicts = batch_verdicts(&[
            (&vk, b"c", &crafted),
            (&vk, b"wrong", &honest),
            (&vk, b"h", &honest),
        ]);
        assert_eq!(verdicts, [true, false, true]);
        assert!(PublicKey::Ed25519(vk).verify(b"c", &crafted).is_ok());
    }

    #[test]
    fn one_bad_signature_fails_its_batch() {
        let (a, vk) = key(3);
        let mut batch: Vec<Prepared> = (0..5u8)
            .map(|i| {
                let sig = sign_with_torsion(&a, &vk, &[i], EdwardsPoint::default());
                prepare(&vk, &[i], &sig).unwrap()
            })
            .collect();
        assert!(all_hold(&refs(&batch)));
        let sig = sign_with_torsion(&a, &vk, b"x", EdwardsPoint::default());
        batch.push(prepare(&vk, b"y", &sig).unwrap());
        assert!(!all_hold(&refs(&batch)));
    }

    /// Batches of several keys, each signing several messages, in any order: a signature
    /// checked under another key, or over another message, fails alone and fails its batch,
    /// and every other verdict stays.
    #[test]
    fn signatures_of_many_keys_sharing_a_batch_keep_their_own_verdicts() {
        let keys: Vec<_> = (20..24u8).map(key).collect();
        let mut cases: Vec<(usize, Vec<u8>, Vec<u8>, bool)> = Vec::new();
        for i in 0..24u8 {
            let signer = (i as usize * 7) % keys.len();
            let (a, vk) = &keys[signer];
            let msg = vec![i; 3];
            let sig = sign_with_torsion(a, vk, &msg, EdwardsPoint::default());
            let (listed, message, good) = match i {
                // Listed under the next key.
                5 => ((signer + 1) % keys.len(), msg, false),
                // Over another message.
                17 => (signer, vec![0xff], false),
                _ => (signer, msg, true),
            };
            cases.push((listed, message, sig, good));
        }
        let as_listed: Vec<(&ed25519_dalek::VerifyingKey, &[u8], &[u8])> = cases
            .iter()
            .map(|(k, m, s, _)| (&keys[*k].1, m.as_slice(), s.as_slice()))
            .collect();
        let expected: Vec<bool> = cases.iter().map(|c| c.3).collect();
        assert_eq!(batch_verdicts(&as_listed), expected);
        let prepared = |i: usize| prepare(as_listed[i].0, as_listed[i].1, as_listed[i].2).unwrap();
        let good = || (0..cases.len()).filter(|&i| cases[i].3).map(prepared);
        assert!(all_hold(&refs(&good().collect::<Vec<_>>())));
        for bad in (0..cases.len()).filter(|&i| !cases[i].3) {
            let mut batch: Vec<Prepared> = good().collect();
            batch.insert(3, prepared(bad));
            assert!(!all_hold(&refs(&batch)));
            assert!(!holds(&prepared(bad)));
        }
    }

    /// The encodings found of small order by their bytes are exactly those that decode to a
    /// point of small order: every torsion point under both sign bits, and many points that are
    /// not, some of them a torsion point away from one.
    #[test]
    fn small_order_is_told_by_the_encoding_as_by_the_point() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let mut encodings: Vec<[u8; 32]> = Vec::new();
        for t in EIGHT_TORSION {
            let bytes = t.compress().to_bytes();
            encodings.push(bytes);
            let mut flipped = bytes;
            flipped[31] ^= 0x80;
            encodings.push(flipped);
        }
        for i in 1..200u8 {
            let p = &Scalar::from_bytes_mod_order([i; 32]) * ED25519_BASEPOINT_TABLE;
            encodings.push(p.compress().to_bytes());
            encodings.push((p + EIGHT_TORSION[i as usize % 8]).compress().to_bytes());
        }
        let mut small = 0;
        for bytes in &encodings {
            assert!(canonical_y(bytes));
            let by_point = CompressedEdwardsY(*bytes)
                .decompress()
                .is_some_and(|p| p.is_small_order());
            assert_eq!(
                small_order_encoding(bytes),
                by_point,
                "{}",
                hex::encode(bytes)
            );
            small += usize::from(by_point);
        }
        assert_eq!(small, 16, "the 8 torsion points, each under both sign bits");
        // A key of small order is refused with any signature.
        let weak =
            ed25519_dalek::VerifyingKey::from_bytes(&order_two().compress().to_bytes()).unwrap();
        let (a, vk) = key(13);
        let sig = sign_with_torsion(&a, &vk, b"m", EdwardsPoint::default());
        let err = prepare(&weak, b"m", &sig).err().unwrap().to_string();
        assert!(err.contains("key of small order"), "{err}");
        // Also under a non-canonical encoding: y = p + 1, which decodes as the identity.
        let mut p_plus_one = [0xffu8; 32];
        p_plus_one[0] = 0xee;
        p_plus_one[31] = 0x7f;
        let weak = ed25519_dalek::VerifyingKey::from_bytes(&p_plus_one).unwrap();
        assert!(weak_key(&weak));
        assert!(batch_verdicts(&[(&weak, b"m", &sig), (&vk, b"m", &sig)]) == [false, true]);
    }

    #[test]
    fn encodings_no_honest_signer_makes_are_refused() {
        let (a, vk) = key(5);
        let sig = sign_with_torsion(&a, &vk, b"m", EdwardsPoint::default());
        // s + ℓ: the same equation, a second encoding.
        let mut high_s = sig.clone();
        let s = Scalar::from_canonical_bytes(high_s[32..].try_into().unwrap()).unwrap();
        let ell_minus_one = -Scalar::ONE;
        let mut wide = [0u8; 33];
        let mut carry = 1u16; // s + (ℓ - 1) + 1 as integers
        for ((w, a), b) in wide
            .iter_mut()
            .zip(s.as_bytes())
            .zip(ell_minus_one.as_bytes())
        {
            let v = *a as u16 + *b as u16 + carry;
            *w = v as u8;
            carry = v >> 8;
        }
        high_s[32..].copy_from_slice(&wide[..32]);
        let err = prepare(&vk, b"m", &high_s).err().unwrap().to_string();
        assert!(err.contains("s not below the group order"), "{err}");
        // An R of small order.
        let mut small_r = sig.clone();
        small_r[..32].copy_from_slice(order_two().compress().as_bytes());
        let err = prepare(&vk, b"m", &small_r).err().unwrap().to_string();
        assert!(err.contains("R of small order"), "{err}");
        // A non-canonical R: y = p, which would decode as y = 0.
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        let mut odd_r = sig.clone();
        odd_r[..32].copy_from_slice(&p);
        let err = prepare(&vk, b"m", &odd_r).err().unwrap().to_string();
        assert!(err.contains("non-canonical R"), "{err}");
        // Wrong lengths.
        assert!(prepare(&vk, b"m", &sig[..63]).is_err());
    }
}
