//! Organisations with real CAs, for tests. Every test makes its own keys.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use mercato_ca::authority::{Authority, MemberRequest, Revocation, SubjectKey, Validity};
use mercato_ca::crypto::to_pem;
use mercato_ca::msp::MspMaterial;
use mercato_ca::{KeyAlgorithm, Msp, Role, SigningIdentity, SigningKey};

/// The "current time" of the tests, unix seconds (2027-01-15).
pub const NOW: i64 = 1_800_000_000;
pub const DAY: i64 = 86_400;

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// A fresh serial number, minimally encoded as DER stores it (no leading zero bytes, positive).
pub fn next_serial() -> Vec<u8> {
    let n = SERIAL.fetch_add(1, Ordering::Relaxed) | 0x0100_0000;
    let bytes = n.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(7);
    bytes[first..].to_vec()
}

/// An organisation: its root CA and, optionally, an intermediate CA that issues its members.
pub struct Org {
    pub id: String,
    pub root: Authority,
    pub intermediate: Option<Authority>,
}

/// A member issued by an organisation.
pub struct Member {
    pub signer: SigningIdentity,
    pub cert_der: Vec<u8>,
    pub serial: Vec<u8>,
    pub key_pkcs8: Vec<u8>,
}

pub struct MemberSpec<'a> {
    pub name: &'a str,
    pub role: Role,
    pub algorithm: KeyAlgorithm,
    pub attributes: &'a [(&'a str, &'a str)],
    pub validity: Validity,
}

impl MemberSpec<'_> {
    pub fn new(name: &str, role: Role) -> MemberSpec<'_> {
        MemberSpec {
            name,
            role,
            algorithm: KeyAlgorithm::EcdsaP256,
            attributes: &[],
            validity: Validity::days_from(NOW - DAY, 365),
        }
    }
}

impl Org {
    pub fn new(id: &str) -> Org {
        Org {
            id: id.into(),
            root: Authority::new_root(
                &format!("ca.{id}"),
                id,
                Validity::days_from(NOW - 10 * DAY, 3650),
            )
            .unwrap(),
            intermediate: None,
        }
    }

    pub fn with_intermediate(id: &str) -> Org {
        let mut org = Org::new(id);
        org.intermediate = Some(
            org.root
                .new_intermediate(
                    &format!("ica.{id}"),
                    Validity::days_from(NOW - 10 * DAY, 3650),
                )
                .unwrap(),
        );
        org
    }

    fn issuer(&self) -> &Authority {
        self.intermediate.as_ref().unwrap_or(&self.root)
    }

    pub fn member(&self, spec: MemberSpec<'_>) -> Member {
        let (key, key_pkcs8) = SigningKey::generate(spec.algorithm).unwrap();
        let serial = next_serial();
        let attributes: BTreeMap<String, String> = spec
            .attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cert_der = self
            .issuer()
            .issue(&MemberRequest {
                common_name: spec.name.into(),
                role: spec.role,
                attributes,
                key: SubjectKey {
                    algorithm: spec.algorithm,
                    bytes: key.public_key_bytes().to_vec(),
                },
                validity: spec.validity,
                serial: serial.clone(),
                hosts: Vec::new(),
            })
            .unwrap();
        let pem = to_pem("CERTIFICATE", &cert_der);
        Member {
            signer: SigningIdentity::new(&self.id, pem.as_bytes(), key).unwrap(),
            cert_der,
            serial,
            key_pkcs8,
        }
    }

    pub fn simple(&self, name: &str, role: Role) -> Member {
        self.member(MemberSpec::new(name, role))
    }

    pub fn material(&self) -> MspMaterial {
        MspMaterial {
            root_certs: vec![self.root.certificate_der().to_vec()],
            intermediate_certs: self
                .intermediate
                .iter()
                .map(|i| i.certificate_der().to_vec())
                .collect(),
            ..MspMaterial::default()
        }
    }

    pub fn msp(&self) -> Msp {
        Msp::new(&self.id, self.material()).unwrap()
    }

    /// A CRL from the member-issuing CA revoking `serials`.
    pub fn crl(&self, serials: &[&[u8]]) -> Vec<u8> {
        let revoked: Vec<Revocation> = serials
            .iter()
            .map(|s| Revocation {
                serial: s.to_vec(),
                revoked_at: NOW - 60,
            })
            .collect();
        self.issuer()
            .crl(&revoked, 1, NOW - 60, NOW + 7 * DAY)
            .unwrap()
    }

    /// Writes the MSP folder in Fabric's layout.
    pub fn write_msp_folder(&self, dir: &Path, crls: &[Vec<u8>], admins: &[&[u8]]) {
        let put = |sub: &str, name: &str, label: &str, der: &[u8]| {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            std::fs::write(dir.join(sub).join(name), to_pem(label, der)).unwrap();
        };
        put(
            "cacerts",
            "ca.pem",
            "CERTIFICATE",
            self.root.certificate_der(),
        );
        if let Some(i) = &self.intermediate {
            put(
                "intermediatecerts",
                "ica.pem",
                "CERTIFICATE",
                i.certificate_der(),
            );
        }
        for (n, crl) in crls.iter().enumerate() {
            put("crls", &format!("crl{n}.pem"), "X509 CRL", crl);
        }
        for (n, admin) in admins.iter().enumerate() {
            put("admincerts", &format!("admin{n}.pem"), "CERTIFICATE", admin);
        }
    }
}
