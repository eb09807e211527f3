//! PKCS#10 certificate signing requests: the client makes one with the key it generated locally;
//! the CA checks that the request is signed by that key (proof of possession) and that the key
//! is one Mercato issues for, and takes nothing else from it. The subject, extensions and
//! attributes a CSR asks for are ignored: the CA decides them from the registration.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::authority::SubjectKey;
use crate::crypto::{KeyAlgorithm, PublicKey, SigningKey};
use crate::error::{CaError, Error};

/// The largest CSR accepted, bytes (a P-256 or Ed25519 CSR is a few hundred).
pub const MAX_CSR_BYTES: usize = 8 * 1024;

/// Parses a DER CSR, verifies its signature and returns its key. A P-384 key (which Mercato
/// verifies but never issues for), any other curve or algorithm, a malformed request, trailing
/// bytes or a signature that does not verify are refused.
pub fn verify_csr(der: &[u8]) -> Result<SubjectKey, CaError> {
    if der.is_empty() {
        return Err(CaError::BadCsr("the CSR is empty".into()));
    }
    if der.len() > MAX_CSR_BYTES {
        return Err(CaError::BadCsr(format!(
            "the CSR has {} bytes, over the limit of {MAX_CSR_BYTES}",
            der.len()
        )));
    }
    let csr = match X509CertificationRequest::from_der(der) {
        Ok(([], csr)) => csr,
        Ok((rest, _)) => {
            return Err(CaError::BadCsr(format!(
                "{} trailing bytes after the CSR",
                rest.len()
            )));
        }
        Err(e) => return Err(CaError::BadCsr(format!("not a DER PKCS#10 request: {e}"))),
    };
    let key = PublicKey::from_spki(&csr.certification_request_info.subject_pki).map_err(|e| {
        CaError::BadCsr(match e {
            Error::UnsupportedKey(why) => format!("unsupported key: {why}"),
            other => other.to_string(),
        })
    })?;
    // The signature is checked before the key type is judged, so that a forged request is
    // reported as forged whatever key it names.
    csr.verify_signature().map_err(|e| {
        CaError::BadCsr(format!(
            "the CSR's signature does not verify with its own {} key: {e}",
            key.algorithm_name()
        ))
    })?;
    match key {
        PublicKey::EcdsaP256(point) => Ok(SubjectKey {
            algorithm: KeyAlgorithm::EcdsaP256,
            bytes: point,
        }),
        PublicKey::Ed25519(vk) => Ok(SubjectKey {
            algorithm: KeyAlgorithm::Ed25519,
            bytes: vk.as_bytes().to_vec(),
        }),
        PublicKey::EcdsaP384(_) => Err(CaError::BadCsr(
            "wrong curve: the key is ECDSA P-384; Mercato issues for ECDSA P-256 and Ed25519 keys"
                .into(),
        )),
    }
}

/// Makes a DER CSR for `key` (PKCS#8 DER of a P-256 or Ed25519 key) with `common_name` as its
/// subject: what a client sends to enroll.
pub fn make_csr(key_pkcs8_der: &[u8], common_name: &str) -> Result<Vec<u8>, Error> {
    // Checking the key through our own type first gives the same error as everywhere else for
    // an unusable key.
    SigningKey::from_pkcs8(key_pkcs8_der)?;
    let key_pair = rcgen::KeyPair::try_from(key_pkcs8_der)
        .map_err(|e| Error::Key(format!("cannot use the key for a CSR: {e}")))?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key_pair)
        .map_err(|e| Error::Issue(format!("cannot make the CSR: {e}")))?;
    Ok(csr.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_for(alg: KeyAlgorithm) -> (Vec<u8>, SigningKey) {
        let (key, der) = SigningKey::generate(alg).unwrap();
        (make_csr(&der, "alice").unwrap(), key)
    }

    #[test]
    fn p256_and_ed25519_csrs_give_their_key() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let (csr, key) = csr_for(alg);
            let subject = verify_csr(&csr).unwrap();
            assert_eq!(subject.algorithm, alg);
            assert_eq!(subject.bytes, key.public_key_bytes());
        }
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let (csr, _) = csr_for(KeyAlgorithm::EcdsaP256);
        // Change the subject after signing: the structure still parses, the signature no longer
        // matches.
        let mut bad = csr.clone();
        let at = bad.windows(5).position(|w| w == b"alice").unwrap();
        bad[at + 4] = b'f';
        assert!(matches!(verify_csr(&bad), Err(CaError::BadCsr(m)) if m.contains("signature")));
        let mut trailing = csr.clone();
        trailing.push(0);
        assert!(matches!(verify_csr(&trailing), Err(CaError::BadCsr(m)) if m.contains("trailing")));
    }

    #[test]
    fn p384_is_the_wrong_curve() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&kp)
            .unwrap();
        let err = verify_csr(csr.der()).unwrap_err();
        assert!(err.to_string().contains("wrong curve"), "{err}");
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        for input in [&[][..], &[0x30], &[0x30, 0x82, 0xff, 0xff], &[0u8; 100]] {
            assert!(matches!(verify_csr(input), Err(CaError::BadCsr(_))));
        }
        assert!(verify_csr(&vec![0x30; MAX_CSR_BYTES + 1]).is_err());
    }
}
