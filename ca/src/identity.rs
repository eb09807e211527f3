//! Identities: a member's validated certificate (who signed, in which role, with which
//! attributes) and a signing identity (the same plus its private key).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::crypto::{PublicKey, SigningKey, pem_blocks};
use crate::error::{Error, Result};
use crate::policy::{MspRole, PolicySigner};

/// The role a certificate's NodeOU gives its holder.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A seller's or buyer's application: proposes and submits transactions.
    Client,
    /// A peer: endorses and commits.
    Peer,
    /// An orderer: signs blocks.
    Orderer,
    /// An organisation administrator.
    Admin,
    /// An auditor: reads everything, writes nothing.
    Auditor,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 5] = [
        Role::Client,
        Role::Peer,
        Role::Orderer,
        Role::Admin,
        Role::Auditor,
    ];

    /// The role's name as written in OUs and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Peer => "peer",
            Role::Orderer => "orderer",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::Role {
                subject: String::new(),
                reason: format!("unknown role {s:?}"),
            })
    }
}

/// The OID of the attribute extension, as Fabric CA writes it: the extension's value is JSON
/// `{"attrs": {"name": "value", ...}}`.
pub const ATTRIBUTES_OID: &str = "1.2.3.4.5.6.7.8.1";
/// The same OID as rcgen wants it.
pub(crate) const ATTRIBUTES_OID_ARCS: &[u64] = &[1, 2, 3, 4, 5, 6, 7, 8, 1];
/// The largest attribute extension accepted.
const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;

#[derive(serde::Serialize, serde::Deserialize)]
struct AttributesJson {
    attrs: BTreeMap<String, String>,
}

/// Encodes attributes as the extension value.
pub(crate) fn encode_attributes(attrs: &BTreeMap<String, String>) -> Vec<u8> {
    serde_json::to_vec(&AttributesJson {
        attrs: attrs.clone(),
    })
    .unwrap_or_default()
}

/// Decodes the attribute extension's value.
pub(crate) fn decode_attributes(value: &[u8]) -> Result<BTreeMap<String, String>> {
    if value.len() > MAX_ATTRIBUTES_BYTES {
        return Err(Error::Certificate(format!(
            "attribute extension of {} bytes, over the limit of {MAX_ATTRIBUTES_BYTES}",
            value.len()
        )));
    }
    serde_json::from_slice::<AttributesJson>(value)
        .map(|a| a.attrs)
        .map_err(|e| Error::Certificate(format!("attribute extension is not valid JSON: {e}")))
}

/// A member identity whose certificate has been validated against its MSP: chain, revocation and
/// role. The validity period is checked separately against a time the caller chooses (see
/// [`Identity::check_valid_at`]), so that validation of blocks stays independent of the clock.
#[derive(Debug, Clone)]
pub struct Identity {
    pub(crate) msp_id: String,
    pub(crate) serialized: Vec<u8>,
    pub(crate) certificate: Vec<u8>,
    pub(crate) cert_hash: [u8; 32],
    pub(crate) common_name: String,
    pub(crate) serial: String,
    pub(crate) role: Role,
    pub(crate) admin: bool,
    pub(crate) attributes: BTreeMap<String, String>,
    pub(crate) public_key: PublicKey,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl Identity {
    /// The MSP (organisation) id.
    pub fn msp_id(&self) -> &str {
        &self.msp_id
    }
    /// The serialized `msp.SerializedIdentity` bytes this identity was read from.
    pub fn serialized(&self) -> &[u8] {
        &self.serialized
    }
    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }
    /// SHA-256 of the certificate: a stable id of the signer.
    pub fn cert_hash(&self) -> &[u8; 32] {
        &self.cert_hash
    }
    /// The subject's common name (the enrollment id).
    pub fn common_name(&self) -> &str {
        &self.common_name
    }
    /// The certificate's serial number, lowercase hex.
    pub fn serial(&self) -> &str {
        &self.serial
    }
    /// The role from the certificate's NodeOU.
    pub fn role(&self) -> Role {
        self.role
    }
    /// Whether the identity administers its MSP (admin OU, or listed in the MSP's admin certs).
    pub fn is_admin(&self) -> bool {
        self.admin
    }
    /// The certificate's attributes (Fabric CA's attribute extension), e.g. `role=brand`.
    pub fn attributes(&self) -> &BTreeMap<String, String> {
        &self.attributes
    }
    /// One attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }
    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }
    /// The validity period, unix seconds.
    pub fn validity(&self) -> (i64, i64) {
        (self.not_before, self.not_after)
    }

    /// Checks the certificate is within its validity period at `unix_seconds`.
    pub fn check_valid_at(&self, unix_seconds: i64) -> Result<()> {
        if unix_seconds < self.not_before || unix_seconds > self.not_after {
            return Err(Error::Expired {
                subject: self.common_name.clone(),
                at: unix_seconds,
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        Ok(())
    }

    /// Verifies a signature made by this identity (see [`PublicKey::verify`]).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        self.public_key.verify(message, signature)
    }
}

impl PolicySigner for Identity {
    fn msp_id(&self) -> &str {
        &self.msp_id
    }
    fn has_role(&self, role: MspRole) -> bool {
        match role {
            MspRole::Member => true,
            MspRole::Admin => self.admin,
            MspRole::Client => self.role == Role::Client,
            MspRole::Peer => self.role == Role::Peer,
            MspRole::Orderer => self.role == Role::Orderer,
            MspRole::Auditor => self.role == Role::Auditor,
        }
    }
    fn signer_key(&self) -> &[u8] {
        &self.cert_hash
    }
}

impl PolicySigner for std::sync::Arc<Identity> {
    fn msp_id(&self) -> &str {
        &self.msp_id
    }
    fn has_role(&self, role: MspRole) -> bool {
        self.as_ref().has_role(role)
    }
    fn signer_key(&self) -> &[u8] {
        &self.cert_hash
    }
}

/// An identity that can sign: a certificate, its MSP id and the matching private key.
pub struct SigningIdentity {
    msp_id: String,
    certificate_pem: Vec<u8>,
    serialized: Vec<u8>,
    key: SigningKey,
}

impl fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("msp_id", &self.msp_id)
            .field("key", &self.key)
            .finish()
    }
}

impl SigningIdentity {
    /// Pairs a PEM certificate with its private key, checking that they belong together.
    pub fn new(msp_id: &str, certificate_pem: &[u8], key: SigningKey) -> Result<Self> {
        let der = pem_blocks(certificate_pem, "CERTIFICATE")?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Certificate("no CERTIFICATE block in the PEM".into()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| Error::Certificate(format!("cannot parse: {e}")))?;
        let cert_key = PublicKey::from_spki(cert.public_key())?;
        if cert_key != key.public_key()? {
            return Err(Error::Key(
                "the private key does not match the certificate's public key".into(),
            ));
        }
        Ok(SigningIdentity {
            msp_id: msp_id.to_owned(),
            serialized: mercato_proto::identity::serialize_identity(msp_id, certificate_pem),
            certificate_pem: certificate_pem.to_vec(),
            key,
        })
    }

    /// Loads a member's signing identity from its MSP folder: the certificate in `signcerts/` and
    /// the private key in `keystore/` (the first PEM file of each, by name).
    pub fn load(msp_id: &str, dir: &Path) -> Result<Self> {
        let cert = first_file(&dir.join("signcerts"))?;
        let key = first_file(&dir.join("keystore"))?;
        let cert_pem = crate::msp::read_limited(&cert)?;
        let key_pem = crate::msp::read_limited(&key)?;
        let key = SigningKey::from_pem(&key_pem).map_err(|e| Error::config(&key, e.to_string()))?;
        SigningIdentity::new(msp_id, &cert_pem, key)
            .map_err(|e| Error::config(&cert, e.to_string()))
    }

    /// The MSP id.
    pub fn msp_id(&self) -> &str {
        &self.msp_id
    }
    /// The PEM certificate.
    pub fn certificate_pem(&self) -> &[u8] {
        &self.certificate_pem
    }
    /// The serialized identity (the "creator" of what it signs).
    pub fn serialized(&self) -> &[u8] {
        &self.serialized
    }
    /// The private key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }
}

impl mercato_proto::Signer for SigningIdentity {
    fn creator(&self) -> &[u8] {
        &self.serialized
    }
    fn sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, mercato_proto::SignError> {
        self.key
            .sign(message)
            .map_err(|e| mercato_proto::SignError(e.to_string()))
    }
}

/// The first regular file in `dir`, by name.
fn first_file(dir: &Path) -> Result<std::path::PathBuf> {
    crate::msp::files_in(dir)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::config(dir, "no file found"))
}
