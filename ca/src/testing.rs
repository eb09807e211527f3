//! Organisations with real CAs for other crates' tests and benchmarks (feature `testing`). Every
//! caller makes its own keys; nothing here is used by a node.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::authority::{Authority, MemberRequest, SubjectKey, TlsRequest, Validity};
use crate::crypto::to_pem;
use crate::msp::MspMaterial;
use crate::{KeyAlgorithm, Msp, Role, SigningIdentity, SigningKey};

/// The fixed "now" of test certificates, unix seconds (2027-01-15).
pub const NOW: i64 = 1_800_000_000;

static SERIAL: AtomicU64 = AtomicU64::new(0x0100_0000);

/// An organisation with a root CA that issues its members directly.
pub struct TestOrg {
    /// The MSP id.
    pub id: String,
    /// The root CA.
    pub ca: Authority,
}

impl TestOrg {
    /// A new organisation with a fresh root CA valid around [`NOW`] (and for a century after).
    pub fn new(id: &str) -> TestOrg {
        // From years before NOW, so that the members are valid on the real clock as well
        // (request paths check it).
        let validity = Validity::days_from(NOW - 4 * 365 * 86_400, 36_500);
        TestOrg {
            id: id.to_owned(),
            ca: Authority::new_root(&format!("ca.{id}"), id, validity)
                .unwrap_or_else(|e| panic!("test CA for {id}: {e}")),
        }
    }

    /// The organisation's MSP material.
    pub fn material(&self) -> MspMaterial {
        MspMaterial {
            root_certs: vec![self.ca.certificate_der().to_vec()],
            ..MspMaterial::default()
        }
    }

    /// The organisation's MSP.
    pub fn msp(&self) -> Msp {
        Msp::new(&self.id, self.material()).unwrap_or_else(|e| panic!("test MSP {}: {e}", self.id))
    }

    /// Issues a member and returns its signing identity and its private key as PKCS#8 DER.
    pub fn member_with_key(
        &self,
        name: &str,
        role: Role,
        algorithm: KeyAlgorithm,
    ) -> (SigningIdentity, Vec<u8>) {
        self.member_with_attributes(name, role, &[], algorithm)
    }

    /// Issues a member whose certificate carries `attributes` (Fabric CA's extension, e.g.
    /// `role=brand`), with its private key as PKCS#8 DER.
    pub fn member_with_attributes(
        &self,
        name: &str,
        role: Role,
        attributes: &[(&str, &str)],
        algorithm: KeyAlgorithm,
    ) -> (SigningIdentity, Vec<u8>) {
        self.member_valid(
            name,
            role,
            attributes,
            algorithm,
            Validity::days_from(NOW - 3 * 365 * 86_400, 36_500),
        )
    }

    /// Issues a member valid for `validity` only (an expired one, say), with its private key.
    pub fn member_valid(
        &self,
        name: &str,
        role: Role,
        attributes: &[(&str, &str)],
        algorithm: KeyAlgorithm,
        validity: Validity,
    ) -> (SigningIdentity, Vec<u8>) {
        let (key, pkcs8) = SigningKey::generate(algorithm).unwrap_or_else(|e| panic!("key: {e}"));
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let first = serial.iter().position(|&b| b != 0).unwrap_or(7);
        let der = self
            .ca
            .issue(&MemberRequest {
                common_name: name.to_owned(),
                role,
                attributes: attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                key: SubjectKey {
                    algorithm,
                    bytes: key.public_key_bytes().to_vec(),
                },
                validity,
                serial: serial[first..].to_vec(),
                hosts: Vec::new(),
            })
            .unwrap_or_else(|e| panic!("issue {name}: {e}"));
        let pem = to_pem("CERTIFICATE", &der);
        let id = SigningIdentity::new(&self.id, pem.as_bytes(), key)
            .unwrap_or_else(|e| panic!("signing identity {name}: {e}"));
        (id, pkcs8)
    }

    /// Issues a member.
    pub fn member(&self, name: &str, role: Role, algorithm: KeyAlgorithm) -> SigningIdentity {
        self.member_with_key(name, role, algorithm).0
    }
}

/// A TLS CA valid around the real clock (TLS checks the wall clock, unlike the MSP tests above,
/// which pass their own time) and the certificates it issues.
pub struct TestTls {
    /// The TLS root.
    pub root: Authority,
}

impl TestTls {
    /// A TLS root valid from a day ago for 30 days.
    pub fn new(name: &str) -> TestTls {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(NOW);
        TestTls {
            root: Authority::new_root(name, name, Validity::days_from(now - 86_400, 30))
                .unwrap_or_else(|e| panic!("test TLS CA {name}: {e}")),
        }
    }

    /// The root as PEM.
    pub fn root_pem(&self) -> String {
        to_pem("CERTIFICATE", self.root.certificate_der())
    }

    /// A P-256 certificate for `common_name` with `hosts` as its subject alternative names, valid
    /// from an hour ago for a week: (certificate DER, private key PKCS#8 DER).
    pub fn issue(&self, common_name: &str, role: Role, hosts: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let (key, pkcs8) =
            SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap_or_else(|e| panic!("key: {e}"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(NOW);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let first = serial.iter().position(|&b| b != 0).unwrap_or(7);
        let der = self
            .root
            .issue_tls(&TlsRequest {
                common_name: common_name.to_owned(),
                role: Some(role),
                key: SubjectKey {
                    algorithm: KeyAlgorithm::EcdsaP256,
                    bytes: key.public_key_bytes().to_vec(),
                },
                validity: Validity::days_from(now - 3_600, 7),
                serial: serial[first..].to_vec(),
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
            })
            .unwrap_or_else(|e| panic!("TLS certificate for {common_name}: {e}"));
        (der, pkcs8)
    }
}
