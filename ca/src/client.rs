//! The client side of the CA: calls `mercato.CertificateAuthority` over TLS, and writes what it
//! is given into a member's MSP folder, in the layout [`crate::Msp::load`] and
//! [`crate::SigningIdentity::load`] read.
//!
//! Keys are generated here, on the member's machine; only CSRs travel. Signed requests are made
//! by [`sign_request`] with the caller's enrollment identity (see [`crate::server::auth`]).
//!
//! # The MSP folder
//! ```text
//! <msp>/
//!   cacerts/ca.pem                     the root CA
//!   intermediatecerts/intermediate.pem the CAs between the root and the member (if any)
//!   signcerts/cert.pem                 the enrollment certificate
//!   keystore/key.pem                   its private key, PKCS#8 (0600)
//!   tlscacerts/tlsca.pem               the TLS root
//!   crls/                              CRLs (`gencrl` writes crls/crl.pem)
//!   config.toml                        the NodeOU role names (Mercato's defaults)
//!   tls/ca.crt                         the TLS root again, where TLS settings expect it
//!   tls/server.crt, tls/server.key     a TLS certificate with host names (a node), or
//!   tls/client.crt, tls/client.key     one without (a client), when TLS enrollment was asked
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mercato_proto::pb::mercato as pb;
use pb::certificate_authority_client::CertificateAuthorityClient;
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::authority::RevocationReason;
use crate::crypto::{KeyAlgorithm, SigningKey, pem_blocks, to_pem};
use crate::csr::make_csr;
use crate::error::{ClientError, Error};
use crate::identity::SigningIdentity;
use crate::msp::{MspConfig, files_in};
use crate::server::auth::signed_message;
use crate::server::core::Profile;

/// The key file's name in `keystore/`.
pub const KEY_FILE: &str = "key.pem";
/// The certificate file's name in `signcerts/`.
pub const CERT_FILE: &str = "cert.pem";
/// The largest answer accepted from a CA, bytes.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Which key a CSR is made for.
#[derive(Debug, Clone)]
pub enum KeyChoice {
    /// A new key of this algorithm, generated here.
    Generate(KeyAlgorithm),
    /// An existing key, PKCS#8 DER (re-enrollment without rotation).
    Reuse(Vec<u8>),
}

impl KeyChoice {
    fn key(&self) -> Result<Vec<u8>, ClientError> {
        match self {
            KeyChoice::Generate(alg) => Ok(SigningKey::generate(*alg)?.1),
            KeyChoice::Reuse(der) => {
                SigningKey::from_pkcs8(der)?;
                Ok(der.clone())
            }
        }
    }
}

/// A TLS certificate to ask for along with the enrollment certificate.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The TLS key's algorithm (always a new key).
    pub algorithm: KeyAlgorithm,
    /// DNS names and IP addresses; none for a client-only certificate.
    pub hosts: Vec<String>,
}

/// What to enroll for.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// The enrollment key.
    pub key: KeyChoice,
    /// An enrollment certificate, or an intermediate CA certificate.
    pub profile: Profile,
    /// A TLS certificate too, if set.
    pub tls: Option<TlsOptions>,
}

impl Default for EnrollOptions {
    fn default() -> Self {
        EnrollOptions {
            key: KeyChoice::Generate(KeyAlgorithm::EcdsaP256),
            profile: Profile::Enrollment,
            tls: None,
        }
    }
}

/// What an enrollment returned, with the keys made for it.
#[derive(Clone)]
pub struct Enrolled {
    /// The certificate, DER.
    pub certificate: Vec<u8>,
    /// Its serial, hex.
    pub serial: String,
    /// Its private key, PKCS#8 DER.
    pub key_pkcs8: Vec<u8>,
    /// The issuing CA's certificate, then each CA above it up to the root; DER.
    pub ca_chain: Vec<Vec<u8>>,
    /// The TLS certificate (DER), its serial and its key (PKCS#8 DER), if asked for.
    pub tls: Option<EnrolledTls>,
    /// The TLS root certificates, DER.
    pub tls_roots: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Enrolled")
            .field("serial", &self.serial)
            .field("tls", &self.tls.as_ref().map(|t| &t.serial))
            .finish_non_exhaustive()
    }
}

/// A TLS certificate and its key.
#[derive(Clone)]
pub struct EnrolledTls {
    /// The certificate, DER.
    pub certificate: Vec<u8>,
    /// Its serial, hex.
    pub serial: String,
    /// Its private key, PKCS#8 DER.
    pub key_pkcs8: Vec<u8>,
    /// Whether it names hosts (a node's server certificate) or not (a client's).
    pub server: bool,
}

/// A registration to ask for.
#[derive(Debug, Clone, Default)]
pub struct RegisterOptions {
    /// The new enrollment id.
    pub id: String,
    /// Its secret; the CA generates one when empty.
    pub secret: Option<String>,
    /// Its type: client, peer, orderer, admin or auditor.
    pub role: String,
    /// Its affiliation; the registrar's when `None`.
    pub affiliation: Option<String>,
    /// Its attributes.
    pub attributes: Vec<(String, String)>,
    /// 0 for the CA's default, -1 unlimited.
    pub max_enrollments: i32,
}

/// What to revoke.
#[derive(Debug, Clone)]
pub enum RevokeWhat {
    /// An identity and all its certificates.
    Identity(String),
    /// One certificate, by hex serial.
    Serial(String),
}

/// The CA's CRLs.
#[derive(Debug, Clone)]
pub struct Crls {
    /// The enrollment CA's CRL, DER (what an MSP's `crls/` holds).
    pub crl: Vec<u8>,
    /// The TLS root's CRL, DER.
    pub tls_crl: Vec<u8>,
    /// Their number.
    pub number: u64,
}

/// A connection to a CA.
#[derive(Debug, Clone)]
pub struct CaClient {
    inner: CertificateAuthorityClient<Channel>,
    url: String,
}

impl CaClient {
    /// Connects to the CA at `url` (`https://host:port`), trusting only `tls_root_pem` (the CA's
    /// TLS root, from its home's `tlsca/cert.pem`).
    pub async fn connect(url: &str, tls_root_pem: &[u8]) -> Result<Self, ClientError> {
        crate::server::install_crypto_provider();
        let fail = |reason: String| ClientError::Connect {
            url: url.to_owned(),
            reason,
        };
        if !url.starts_with("https://") {
            return Err(fail(
                "the CA is reached over TLS: the URL must start with https://".into(),
            ));
        }
        let roots = pem_blocks(tls_root_pem, "CERTIFICATE").map_err(|e| fail(e.to_string()))?;
        if roots.is_empty() {
            return Err(fail("the TLS root file holds no certificate".into()));
        }
        let tls = ClientTlsConfig::new().ca_certificates(
            roots
                .iter()
                .map(|der| Certificate::from_pem(to_pem("CERTIFICATE", der))),
        );
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| fail(e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .tls_config(tls)
            .map_err(|e| fail(e.to_string()))?
            .connect()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        Ok(CaClient {
            inner: CertificateAuthorityClient::new(channel)
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            url: url.to_owned(),
        })
    }

    /// The CA's address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The generated client, for calls this type does not wrap (and for tests that send
    /// malformed requests).
    pub fn raw(&mut self) -> &mut CertificateAuthorityClient<Channel> {
        &mut self.inner
    }

    /// The CA's chain, TLS roots and MSP id.
    pub async fn info(&mut self) -> Result<pb::GetCaInfoResponse, ClientError> {
        Ok(self
            .inner
            .get_ca_info(pb::GetCaInfoRequest {})
            .await?
            .into_inner())
    }

    /// Enrolls `id` with `secret`: makes the keys, sends the CSRs, returns the certificates and
    /// keys.
    pub async fn enroll(
        &mut self,
        id: &str,
        secret: &str,
        options: &EnrollOptions,
    ) -> Result<Enrolled, ClientError> {
        let prepared = cert_request(id, options)?;
        let response = self
            .inner
            .enroll(pb::EnrollRequest {
                enrollment_id: id.to_owned(),
                secret: secret.to_owned(),
                request: Some(prepared.request),
            })
            .await?
            .into_inner();
        enrolled(response, prepared.key, prepared.tls_key, options)
    }

    /// Renews `signer`'s certificate (and a TLS certificate, if asked) for the key in
    /// `options`: the current one (`KeyChoice::Reuse`) or a new one.
    pub async fn reenroll(
        &mut self,
        signer: &SigningIdentity,
        options: &EnrollOptions,
    ) -> Result<Enrolled, ClientError> {
        let id = common_name(signer)?;
        let prepared = cert_request(&id, options)?;
        let signed = sign_request(
            signer,
            pb::authenticated_request::Body::Reenroll(pb::ReenrollRequest {
                request: Some(prepared.request),
            }),
        )?;
        let response = self.inner.reenroll(signed).await?.into_inner();
        enrolled(response, prepared.key, prepared.tls_key, options)
    }

    /// Registers an identity; returns its secret.
    pub async fn register(
        &mut self,
        signer: &SigningIdentity,
        options: &RegisterOptions,
    ) -> Result<String, ClientError> {
        let signed = sign_request(
            signer,
            pb::authenticated_request::Body::Register(pb::RegisterRequest {
                enrollment_id: options.id.clone(),
                secret: options.secret.clone().unwrap_or_default(),
                r#type: options.role.clone(),
                affiliation: options.affiliation.clone().unwrap_or_default(),
                attributes: options
                    .attributes
                    .iter()
                    .map(|(name, value)| pb::Attribute {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                max_enrollments: options.max_enrollments,
            }),
        )?;
        Ok(self.inner.register(signed).await?.into_inner().secret)
    }

    /// Revokes an identity or a certificate; returns the serials revoked and, with `gen_crl`,
    /// a fresh CRL (DER).
    pub async fn revoke(
        &mut self,
        signer: &SigningIdentity,
        what: &RevokeWhat,
        reason: RevocationReason,
        gen_crl: bool,
    ) -> Result<(Vec<String>, Option<Vec<u8>>), ClientError> {
        let (enrollment_id, serial) = match what {
            RevokeWhat::Identity(id) => (id.clone(), String::new()),
            RevokeWhat::Serial(s) => (String::new(), s.to_ascii_lowercase()),
        };
        let signed = sign_request(
            signer,
            pb::authenticated_request::Body::Revoke(pb::RevokeRequest {
                enrollment_id,
                serial,
                reason: i32::from(reason.code()),
                gen_crl,
            }),
        )?;
        let r = self.inner.revoke(signed).await?.into_inner();
        Ok((r.revoked_serials, (!r.crl.is_empty()).then_some(r.crl)))
    }

    /// Asks for fresh CRLs.
    pub async fn gen_crl(&mut self, signer: &SigningIdentity) -> Result<Crls, ClientError> {
        let signed = sign_request(
            signer,
            pb::authenticated_request::Body::GenCrl(pb::GenCrlRequest {}),
        )?;
        let r = self.inner.gen_crl(signed).await?.into_inner();
        if r.crl.is_empty() {
            return Err(ClientError::BadResponse("the CA returned no CRL".into()));
        }
        Ok(Crls {
            crl: r.crl,
            tls_crl: r.tls_crl,
            number: r.crl_number,
        })
    }

    /// Lists every identity `signer` manages, page by page.
    pub async fn list(
        &mut self,
        signer: &SigningIdentity,
    ) -> Result<Vec<pb::IdentityInfo>, ClientError> {
        let mut out = Vec::new();
        let mut start_after = String::new();
        loop {
            let signed = sign_request(
                signer,
                pb::authenticated_request::Body::ListIdentities(pb::ListIdentitiesRequest {
                    page_size: 0,
                    start_after: start_after.clone(),
                }),
            )?;
            let page = self.inner.list_identities(signed).await?.into_inner();
            out.extend(page.identities);
            if page.next_start_after.is_empty() || page.next_start_after == start_after {
                return Ok(out);
            }
            start_after = page.next_start_after;
        }
    }
}

/// The common name of a signing identity's certificate (its enrollment id).
fn common_name(signer: &SigningIdentity) -> Result<String, ClientError> {
    let der = certificate_der(signer)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| Error::Certificate(format!("cannot parse: {e}")))?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| ClientError::InvalidRequest("the certificate has no common name".into()))
}

fn certificate_der(signer: &SigningIdentity) -> Result<Vec<u8>, ClientError> {
    Ok(pem_blocks(signer.certificate_pem(), "CERTIFICATE")?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Certificate("no CERTIFICATE block".into()))?)
}

/// Signs a request body as `signer`, timestamped now with a random nonce.
pub fn sign_request(
    signer: &SigningIdentity,
    body: pb::authenticated_request::Body,
) -> Result<pb::SignedRequest, ClientError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    sign_request_at(signer, body, now, crate::crypto::random_nonce()?)
}

/// Signs a request body as `signer` with a given timestamp and nonce (for tests of the replay
/// window).
pub fn sign_request_at(
    signer: &SigningIdentity,
    body: pb::authenticated_request::Body,
    timestamp: i64,
    nonce: Vec<u8>,
) -> Result<pb::SignedRequest, ClientError> {
    let request = pb::AuthenticatedRequest {
        certificate: certificate_der(signer)?,
        timestamp,
        nonce,
        body: Some(body),
    }
    .encode_to_vec();
    let signature = signer.key().sign(&signed_message(&request))?;
    Ok(pb::SignedRequest { request, signature })
}

/// A certificate request with the keys its CSRs were made for.
struct Prepared {
    request: pb::CertificateRequest,
    key: Vec<u8>,
    /// The TLS key (PKCS#8 DER) and whether the certificate names hosts.
    tls_key: Option<(Vec<u8>, bool)>,
}

fn cert_request(id: &str, options: &EnrollOptions) -> Result<Prepared, ClientError> {
    let key = options.key.key()?;
    let csr = make_csr(&key, id)?;
    let (tls_csr, hosts, tls_key) = match &options.tls {
        Some(tls) => {
            let (_, tls_key) = SigningKey::generate(tls.algorithm)?;
            (
                make_csr(&tls_key, id)?,
                tls.hosts.clone(),
                Some((tls_key, !tls.hosts.is_empty())),
            )
        }
        None => (Vec::new(), Vec::new(), None),
    };
    let profile = match options.profile {
        Profile::Enrollment => pb::Profile::Enrollment,
        Profile::IntermediateCa => pb::Profile::IntermediateCa,
    };
    Ok(Prepared {
        request: pb::CertificateRequest {
            csr,
            tls_csr,
            hosts,
            profile: profile as i32,
        },
        key,
        tls_key,
    })
}

fn enrolled(
    r: pb::EnrollResponse,
    key: Vec<u8>,
    tls_key: Option<(Vec<u8>, bool)>,
    options: &EnrollOptions,
) -> Result<Enrolled, ClientError> {
    if r.certificate.is_empty() || r.ca_chain.is_empty() {
        return Err(ClientError::BadResponse(
            "the answer lacks the certificate or the CA chain".into(),
        ));
    }
    // The certificate must be for the key this side generated: a CA answering with someone
    // else's certificate would leave an unusable MSP folder.
    let (_, cert) = x509_parser::parse_x509_certificate(&r.certificate)
        .map_err(|e| ClientError::BadResponse(format!("the certificate does not parse: {e}")))?;
    let signing = SigningKey::from_pkcs8(&key)?;
    if cert.public_key().subject_public_key.data.as_ref() != signing.public_key_bytes() {
        return Err(ClientError::BadResponse(
            "the certificate is not for the key in the CSR".into(),
        ));
    }
    let tls = match (tls_key, r.tls_certificate.is_empty()) {
        (Some((key_pkcs8, server)), false) => Some(EnrolledTls {
            certificate: r.tls_certificate,
            serial: r.tls_serial,
            key_pkcs8,
            server,
        }),
        (Some(_), true) if options.tls.is_some() => {
            return Err(ClientError::BadResponse(
                "a TLS certificate was asked for and none came back".into(),
            ));
        }
        _ => None,
    };
    Ok(Enrolled {
        certificate: r.certificate,
        serial: r.serial,
        key_pkcs8: key,
        ca_chain: r.ca_chain,
        tls,
        tls_roots: r.tls_root_certs,
    })
}

/// The whole error chain of a transport error, which tonic hides behind "transport error".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Writes an enrollment into the MSP folder `dir` (created if needed). Refuses a folder whose
/// `signcerts/` or `keystore/` holds files this client did not write, since the loader takes the
/// first file of each.
pub fn write_msp(dir: &Path, enrolled: &Enrolled) -> Result<(), ClientError> {
    for (sub, ours) in [("signcerts", CERT_FILE), ("keystore", KEY_FILE)] {
        for file in files_in(&dir.join(sub))? {
            if file.file_name().is_none_or(|n| n != ours) {
                return Err(ClientError::Msp(Error::config(
                    &file,
                    format!("{sub}/ holds a file other than {ours}; use an empty MSP folder"),
                )));
            }
        }
    }
    let (root, intermediates) = enrolled
        .ca_chain
        .split_last()
        .ok_or_else(|| ClientError::BadResponse("an empty CA chain".into()))?;
    mkdir(dir, 0o755)?;
    for sub in [
        "cacerts",
        "intermediatecerts",
        "signcerts",
        "tlscacerts",
        "crls",
    ] {
        mkdir(&dir.join(sub), 0o755)?;
    }
    mkdir(&dir.join("keystore"), 0o700)?;
    let pems =
        |ders: &[Vec<u8>]| -> String { ders.iter().map(|d| to_pem("CERTIFICATE", d)).collect() };
    write_file(
        &dir.join("cacerts/ca.pem"),
        pems(std::slice::from_ref(root)).as_bytes(),
        0o644,
    )?;
    let intermediate = dir.join("intermediatecerts/intermediate.pem");
    if intermediates.is_empty() {
        remove_if_exists(&intermediate)?;
    } else {
        write_file(&intermediate, pems(intermediates).as_bytes(), 0o644)?;
    }
    write_file(
        &dir.join("tlscacerts/tlsca.pem"),
        pems(&enrolled.tls_roots).as_bytes(),
        0o644,
    )?;
    let config = dir.join("config.toml");
    if !config.exists() {
        write_file(&config, node_ou_config().as_bytes(), 0o644)?;
    }
    // The key goes in before the certificate: a crash in between leaves the old certificate
    // with a new key, which the loader reports as a mismatch instead of signing with a stale
    // pair.
    write_file(
        &dir.join("keystore").join(KEY_FILE),
        to_pem("PRIVATE KEY", &enrolled.key_pkcs8).as_bytes(),
        0o600,
    )?;
    write_file(
        &dir.join("signcerts").join(CERT_FILE),
        to_pem("CERTIFICATE", &enrolled.certificate).as_bytes(),
        0o644,
    )?;
    if let Some(tls) = &enrolled.tls {
        let tls_dir = dir.join("tls");
        mkdir(&tls_dir, 0o700)?;
        write_file(
            &tls_dir.join("ca.crt"),
            pems(&enrolled.tls_roots).as_bytes(),
            0o644,
        )?;
        let name = if tls.server { "server" } else { "client" };
        write_file(
            &tls_dir.join(format!("{name}.key")),
            to_pem("PRIVATE KEY", &tls.key_pkcs8).as_bytes(),
            0o600,
        )?;
        write_file(
            &tls_dir.join(format!("{name}.crt")),
            to_pem("CERTIFICATE", &tls.certificate).as_bytes(),
            0o644,
        )?;
    }
    Ok(())
}

/// Writes a CRL (DER) into the MSP folder's `crls/crl.pem`, replacing the previous one.
pub fn write_crl(dir: &Path, crl: &[u8]) -> Result<PathBuf, ClientError> {
    mkdir(&dir.join("crls"), 0o755)?;
    let path = dir.join("crls/crl.pem");
    write_file(&path, to_pem("X509 CRL", crl).as_bytes(), 0o644)?;
    Ok(path)
}

/// The private key of the MSP folder's identity, PKCS#8 DER (to re-enroll with the same key).
pub fn read_key(dir: &Path) -> Result<Vec<u8>, ClientError> {
    let path = dir.join("keystore").join(KEY_FILE);
    let pem = crate::msp::read_limited(&path)?;
    let der = pem_blocks(&pem, "PRIVATE KEY")?
        .into_iter()
        .next()
        .ok_or_else(|| Error::config(&path, "no PRIVATE KEY block"))?;
    Ok(der)
}

fn node_ou_config() -> String {
    let ous = MspConfig::default().node_ous;
    format!(
        "# The OUs that give a certificate its role (Fabric's NodeOUs); these are Mercato's defaults.\n\
         [node_ous]\nclient = {:?}\npeer = {:?}\norderer = {:?}\nadmin = {:?}\nauditor = {:?}\n",
        ous.client, ous.peer, ous.orderer, ous.admin, ous.auditor
    )
}

fn mkdir(dir: &Path, mode: u32) -> Result<(), ClientError> {
    let existed = dir.exists();
    fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    if !existed {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(|e| Error::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<(), ClientError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io {
            path: path.display().to_string(),
            source: e,
        }
        .into()),
    }
}

/// Replaces a file atomically: a temporary file in the folder's parent (so the loader, which
/// reads every file of a folder, never sees it), synced, then renamed into place.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ClientError> {
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let parent = path
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io(e).into());
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io(e)
    })?;
    Ok(())
}
