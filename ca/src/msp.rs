//! A Membership Service Provider: one organisation's trust anchors (root and intermediate CAs),
//! role mapping (NodeOUs), admins and revocation lists, and the validation of its members'
//! certificates.
//!
//! An MSP folder has Fabric's layout: `cacerts/`, `intermediatecerts/`, `admincerts/`, `crls/`,
//! `tlscacerts/`, `tlsintermediatecerts/` (PEM files), and an optional `config.toml` that renames
//! the role OUs (Fabric writes this mapping as `config.yaml`; Mercato keeps all its configuration
//! in TOML).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::crypto::{PublicKey, pem_blocks};
use crate::error::{Error, Result};
use crate::identity::{ATTRIBUTES_OID, Identity, Role, decode_attributes};
use mercato_proto::hash::sha256;

/// The largest file an MSP folder may hold (certificates and CRLs are a few KiB).
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// The longest certificate chain followed, root included.
const MAX_CHAIN: usize = 8;
/// The largest certificate accepted.
const MAX_CERT_BYTES: usize = 64 * 1024;

/// How certificate OUs map to roles (Fabric's NodeOUs), from the MSP's `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeOus {
    /// The OU that makes a client.
    pub client: String,
    /// The OU that makes a peer.
    pub peer: String,
    /// The OU that makes an orderer.
    pub orderer: String,
    /// The OU that makes an admin.
    pub admin: String,
    /// The OU that makes an auditor.
    pub auditor: String,
}

impl Default for NodeOus {
    fn default() -> Self {
        NodeOus {
            client: "client".into(),
            peer: "peer".into(),
            orderer: "orderer".into(),
            admin: "admin".into(),
            auditor: "auditor".into(),
        }
    }
}

impl NodeOus {
    fn role_of(&self, ou: &str) -> Option<Role> {
        [
            (&self.client, Role::Client),
            (&self.peer, Role::Peer),
            (&self.orderer, Role::Orderer),
            (&self.admin, Role::Admin),
            (&self.auditor, Role::Auditor),
        ]
        .into_iter()
        .find(|(name, _)| name.as_str() == ou)
        .map(|(_, role)| role)
    }
}

/// The MSP's `config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MspConfig {
    /// The role OUs.
    pub node_ous: NodeOus,
}

/// The material an MSP is made of, DER-encoded.
#[derive(Debug, Clone, Default)]
pub struct MspMaterial {
    /// Self-signed root CA certificates.
    pub root_certs: Vec<Vec<u8>>,
    /// Intermediate CA certificates, each chaining to a root.
    pub intermediate_certs: Vec<Vec<u8>>,
    /// Certificates of identities that are admins whatever their OU.
    pub admin_certs: Vec<Vec<u8>>,
    /// CRLs issued by the root or intermediate CAs.
    pub crls: Vec<Vec<u8>>,
    /// TLS root CA certificates (for the organisation's TLS endpoints).
    pub tls_root_certs: Vec<Vec<u8>>,
    /// TLS intermediate CA certificates.
    pub tls_intermediate_certs: Vec<Vec<u8>>,
    /// The role mapping.
    pub config: MspConfig,
}

/// A CA certificate of the MSP, with what chain building compares.
#[derive(Debug, Clone)]
struct CaCert {
    der: Vec<u8>,
    subject: Vec<u8>,
    is_root: bool,
}

/// One organisation's MSP. Cheap to share behind an `Arc`; immutable once built.
#[derive(Debug, Clone)]
pub struct Msp {
    id: String,
    cas: Vec<CaCert>,
    admin_cert_hashes: BTreeSet<[u8; 32]>,
    /// (issuer subject DER, serial bytes) of every revoked certificate.
    revoked: BTreeSet<(Vec<u8>, Vec<u8>)>,
    tls_root_certs: Vec<Vec<u8>>,
    tls_intermediate_certs: Vec<Vec<u8>>,
    node_ous: NodeOus,
}

impl Msp {
    /// Builds an MSP from its material, checking that every root is a self-signed CA, every
    /// intermediate chains to a root and every CRL is signed by one of the MSP's CAs.
    pub fn new(id: &str, material: MspMaterial) -> Result<Msp> {
        let here = Path::new(id);
        if id.is_empty() || id.len() > 256 {
            return Err(Error::config(
                here,
                "an MSP id must have 1 to 256 characters",
            ));
        }
        if material.root_certs.is_empty() {
            return Err(Error::config(
                here,
                "an MSP needs at least one root CA certificate",
            ));
        }
        let mut cas = Vec::new();
        for der in &material.root_certs {
            let cert = parse_cert(der)?;
            if !cert.is_ca() {
                return Err(Error::config(
                    here,
                    format!("root certificate {:?} is not a CA", subject_cn(&cert)),
                ));
            }
            if cert.subject().as_raw() != cert.issuer().as_raw()
                || cert.verify_signature(None).is_err()
            {
                return Err(Error::config(
                    here,
                    format!(
                        "root certificate {:?} is not self-signed",
                        subject_cn(&cert)
                    ),
                ));
            }
            cas.push(CaCert {
                der: der.clone(),
                subject: cert.subject().as_raw().to_vec(),
                is_root: true,
            });
        }
        let mut msp = Msp {
            id: id.to_owned(),
            cas,
            admin_cert_hashes: BTreeSet::new(),
            revoked: BTreeSet::new(),
            tls_root_certs: material.tls_root_certs,
            tls_intermediate_certs: material.tls_intermediate_certs,
            node_ous: material.config.node_ous,
        };
        // Intermediates may arrive in any order: add those whose issuer is known until no more can be.
        let mut pending: Vec<Vec<u8>> = material.intermediate_certs;
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for der in pending {
                let cert = parse_cert(&der)?;
                if !cert.is_ca() {
                    return Err(Error::config(
                        here,
                        format!(
                            "intermediate certificate {:?} is not a CA",
                            subject_cn(&cert)
                        ),
                    ));
                }
                if msp.chain(&cert).is_ok() {
                    msp.cas.push(CaCert {
                        subject: cert.subject().as_raw().to_vec(),
                        der,
                        is_root: false,
                    });
                } else {
                    rest.push(der);
                }
            }
            if rest.len() == before {
                let cert = parse_cert(&rest[0])?;
                return Err(Error::config(
                    here,
                    format!(
                        "intermediate certificate {:?} does not chain to a root of the MSP",
                        subject_cn(&cert)
                    ),
                ));
            }
            pending = rest;
        }
        for der in &material.crls {
            msp.add_crl(der)?;
        }
        for der in &material.admin_certs {
            msp.admin_cert_hashes.insert(sha256(der));
        }
        Ok(msp)
    }

    /// Loads an MSP from a folder in Fabric's layout (see the module docs).
    pub fn load(id: &str, dir: &Path) -> Result<Msp> {
        let certs =
            |sub: &str| -> Result<Vec<Vec<u8>>> { pem_files(&dir.join(sub), "CERTIFICATE") };
        let config_path = dir.join("config.toml");
        let config = if config_path.exists() {
            let text = String::from_utf8(read_limited(&config_path)?)
                .map_err(|_| Error::config(&config_path, "not UTF-8"))?;
            toml::from_str(&text).map_err(|e| Error::config(&config_path, e.to_string()))?
        } else {
            MspConfig::default()
        };
        let material = MspMaterial {
            root_certs: certs("cacerts")?,
            intermediate_certs: certs("intermediatecerts")?,
            admin_certs: certs("admincerts")?,
            crls: pem_files(&dir.join("crls"), "X509 CRL")?,
            tls_root_certs: certs("tlscacerts")?,
            tls_intermediate_certs: certs("tlsintermediatecerts")?,
            config,
        };
        Msp::new(id, material).map_err(|e| match e {
            Error::Config { reason, .. } => Error::config(dir, reason),
            other => other,
        })
    }

    /// The MSP id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The root CA certificates, DER.
    pub fn root_certs(&self) -> impl Iterator<Item = &[u8]> {
        self.cas
            .iter()
            .filter(|c| c.is_root)
            .map(|c| c.der.as_slice())
    }

    /// The TLS root CA certificates, DER.
    pub fn tls_root_certs(&self) -> &[Vec<u8>] {
        &self.tls_root_certs
    }

    /// The TLS intermediate CA certificates, DER.
    pub fn tls_intermediate_certs(&self) -> &[Vec<u8>] {
        &self.tls_intermediate_certs
    }

    /// Adds a CRL after checking that one of the MSP's CAs signed it.
    fn add_crl(&mut self, der: &[u8]) -> Result<()> {
        let here = Path::new(&self.id).to_path_buf();
        let (_, crl) = CertificateRevocationList::from_der(der)
            .map_err(|e| Error::config(&here, format!("cannot parse CRL: {e}")))?;
        let issuer = crl.issuer().as_raw();
        let signed = self.cas.iter().filter(|ca| ca.subject == issuer).any(|ca| {
            parse_cert(&ca.der)
                .map(|c| crl.verify_signature(c.public_key()).is_ok())
                .unwrap_or(false)
        });
        if !signed {
            return Err(Error::config(
                &here,
                "a CRL is not signed by any CA of the MSP",
            ));
        }
        for revoked in crl.iter_revoked_certificates() {
            self.revoked
                .insert((issuer.to_vec(), revoked.raw_serial().to_vec()));
        }
        Ok(())
    }

    /// Validates a member's certificate (DER) and returns the identity: it must chain to a root
    /// of this MSP through its intermediates, neither it nor a CA above it may be revoked, it must
    /// not be a CA itself, its key must be P-256, P-384 or Ed25519, and its OUs must give exactly
    /// one role. The validity period is not checked here (see [`Identity::check_valid_at`]).
    pub fn validate(&self, certificate_pem: &[u8], serialized: &[u8]) -> Result<Identity> {
        let der = pem_blocks(certificate_pem, "CERTIFICATE")?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Certificate("no CERTIFICATE block in the identity".into()))?;
        let cert = parse_cert(&der)?;
        let subject = subject_cn(&cert);
        if cert.is_ca() {
            return Err(Error::Untrusted {
                msp: self.id.clone(),
                subject,
                reason: "a CA certificate cannot be used as a member identity".into(),
            });
        }
        let chain = self.chain(&cert)?;
        // The member and every intermediate above it are checked against the CRLs.
        let mut issuer = cert.issuer().as_raw().to_vec();
        let mut serial = cert.raw_serial().to_vec();
        for ca in &chain {
            if self.revoked.contains(&(issuer.clone(), serial.clone())) {
                return Err(Error::Revoked {
                    msp: self.id.clone(),
                    subject,
                    serial: hex::encode(&serial),
                });
            }
            let ca_cert = parse_cert(&ca.der)?;
            issuer = ca_cert.issuer().as_raw().to_vec();
            serial = ca_cert.raw_serial().to_vec();
        }
        let public_key = PublicKey::from_spki(cert.public_key())?;
        let role = self.role(&cert, &subject)?;
        let cert_hash = sha256(&der);
        let mut attributes = BTreeMap::new();
        for ext in cert.extensions() {
            if ext.oid.to_id_string() == ATTRIBUTES_OID {
                attributes = decode_attributes(ext.value)?;
            }
        }
        Ok(Identity {
            msp_id: self.id.clone(),
            serialized: serialized.to_vec(),
            admin: role == Role::Admin || self.admin_cert_hashes.contains(&cert_hash),
            cert_hash,
            common_name: subject,
            serial: hex::encode(cert.raw_serial()),
            role,
            attributes,
            public_key,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            certificate: der,
        })
    }

    /// The CAs from the certificate's issuer up to a root, each verified to have signed the one
    /// below it.
    fn chain(&self, leaf: &X509Certificate<'_>) -> Result<Vec<&CaCert>> {
        let mut chain: Vec<&CaCert> = Vec::new();
        let mut parent_cert: Option<X509Certificate<'_>> = None;
        loop {
            let child = parent_cert.as_ref().unwrap_or(leaf);
            if chain.len() >= MAX_CHAIN {
                return Err(self.untrusted(leaf, format!("chain longer than {MAX_CHAIN}")));
            }
            let mut found = None;
            for ca in &self.cas {
                if ca.subject != child.issuer().as_raw()
                    || chain.iter().any(|c| std::ptr::eq(*c, ca))
                {
                    continue;
                }
                let ca_cert = parse_cert(&ca.der)?;
                if child.verify_signature(Some(ca_cert.public_key())).is_ok() {
                    found = Some((ca, ca_cert));
                    break;
                }
            }
            let Some((ca, ca_cert)) = found else {
                let reason = if chain.is_empty() {
                    "no CA of the MSP signed it"
                } else {
                    "the chain does not reach a root"
                };
                return Err(self.untrusted(leaf, reason.into()));
            };
            chain.push(ca);
            if ca.is_root {
                return Ok(chain);
            }
            parent_cert = Some(ca_cert);
        }
    }

    fn untrusted(&self, cert: &X509Certificate<'_>, reason: String) -> Error {
        Error::Untrusted {
            msp: self.id.clone(),
            subject: subject_cn(cert),
            reason,
        }
    }

    /// The role given by the certificate's OUs: exactly one must name a role.
    fn role(&self, cert: &X509Certificate<'_>, subject: &str) -> Result<Role> {
        let mut roles = BTreeSet::new();
        for ou in cert.subject().iter_organizational_unit() {
            if let Ok(ou) = ou.as_str()
                && let Some(role) = self.node_ous.role_of(ou)
            {
                roles.insert(role);
            }
        }
        let mut roles = roles.into_iter();
        match (roles.next(), roles.next()) {
            (Some(role), None) => Ok(role),
            (None, _) => Err(Error::Role {
                subject: subject.to_owned(),
                reason: "no OU names a role (client, peer, orderer, admin or auditor)".into(),
            }),
            (Some(a), Some(b)) => Err(Error::Role {
                subject: subject.to_owned(),
                reason: format!("OUs name more than one role ({a} and {b})"),
            }),
        }
    }
}

/// Parses a DER certificate, refusing oversized input and trailing bytes.
fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>> {
    if der.len() > MAX_CERT_BYTES {
        return Err(Error::Certificate(format!(
            "{} bytes, over the limit of {MAX_CERT_BYTES}",
            der.len()
        )));
    }
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(Error::Certificate(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(Error::Certificate(format!("cannot parse: {e}"))),
    }
}

/// The subject's common name, or the whole subject when it has none.
fn subject_cn(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| cert.subject().to_string())
}

/// The regular files of a folder, sorted by name; an absent folder has none.
pub(crate) fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a file of at most 4 MiB.
pub(crate) fn read_limited(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::config(
            path,
            format!("{} bytes, over the limit of {MAX_FILE_BYTES}", meta.len()),
        ));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Every PEM block labelled `label` in the files of `dir`, in file-name order.
fn pem_files(dir: &Path, label: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for file in files_in(dir)? {
        let bytes = read_limited(&file)?;
        let blocks = pem_blocks(&bytes, label).map_err(|e| Error::config(&file, e.to_string()))?;
        if blocks.is_empty() {
            return Err(Error::config(&file, format!("no {label} PEM block")));
        }
        out.extend(blocks);
    }
    Ok(out)
}
