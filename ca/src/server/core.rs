//! The CA's logic without sockets: enrollment, registration, revocation, CRLs and listings,
//! driven by plain domain requests and a [`Clock`], over a [`Registry`]. The gRPC service
//! decodes requests into these types, runs these methods on a blocking thread (hashing and
//! signing are CPU work) and encodes the answers.
//!
//! Every request is checked completely before anything is stored: on any refusal the registry
//! is unchanged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ring::rand::{SecureRandom, SystemRandom};

use crate::authority::{
    Authority, CrlEntry, MemberRequest, RevocationReason, SubjectKey, TlsRequest, Validity,
};
use crate::crypto::{KeyAlgorithm, to_pem};
use crate::csr::verify_csr;
use crate::error::{CaError, RegistryError};
use crate::identity::{Identity, Role};
use crate::msp::{Msp, MspMaterial};
use crate::password::{MAX_SECRET_LEN, PasswordHasher, generate_secret};
use crate::registry::{CertKind, IssuedCert, Registration, Registry, RevocationInfo};
use crate::server::auth::{
    AFFILIATION_ATTR, ENROLLMENT_ID_ATTR, ReplayCache, Rights, TYPE_ATTR, signed_message,
};
use crate::server::config::Config;

/// The longest enrollment id, bytes.
pub const MAX_ID_LEN: usize = 64;
/// The longest affiliation, bytes.
pub const MAX_AFFILIATION_LEN: usize = 256;
/// The most attributes one registration may carry.
pub const MAX_ATTRIBUTES: usize = 32;
/// The longest attribute name and value, bytes.
pub const MAX_ATTRIBUTE_NAME_LEN: usize = 64;
/// See [`MAX_ATTRIBUTE_NAME_LEN`].
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 1024;
/// The most host names a TLS certificate may carry.
pub const MAX_HOSTS: usize = 16;
/// The most identities one listing returns.
pub const MAX_PAGE_SIZE: usize = 500;
/// The listing size when the caller does not say.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// How far before "now" issued certificates start, seconds, so that a client whose clock is a
/// little behind the CA's can use a certificate at once (Fabric CA backdates by five minutes).
const BACKDATE_SECS: i64 = 300;
/// How many registrations one listing looks at before it returns a partial page.
const MAX_SCAN: usize = 10_000;

/// The time, unix seconds. Injected so that tests can move it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// What kind of certificate an enrollment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A member's enrollment certificate (and optionally a TLS certificate).
    Enrollment,
    /// An intermediate CA certificate.
    IntermediateCa,
}

/// The certificates an enrollment or re-enrollment asks for.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// The CSR (DER) for the main certificate's key.
    pub csr: Vec<u8>,
    /// A CSR (DER) for a TLS certificate's key, if one is wanted.
    pub tls_csr: Option<Vec<u8>>,
    /// The TLS certificate's DNS names and IP addresses.
    pub hosts: Vec<String>,
    /// What the main certificate is.
    pub profile: Profile,
}

/// An enrollment with a secret.
#[derive(Debug, Clone)]
pub struct EnrollRequest {
    /// The enrollment id.
    pub id: String,
    /// Its secret.
    pub secret: String,
    /// What to issue.
    pub request: CertRequest,
}

/// What an enrollment issued.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// The certificate, DER.
    pub certificate: Vec<u8>,
    /// Its serial, hex.
    pub serial: String,
    /// The issuing CA's certificate, then each CA above it up to the root; DER.
    pub ca_chain: Vec<Vec<u8>>,
    /// The TLS certificate (DER) and its serial (hex), if one was asked for.
    pub tls: Option<(Vec<u8>, String)>,
    /// The TLS root certificates, DER.
    pub tls_roots: Vec<Vec<u8>>,
}

/// A registration request.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    /// The new enrollment id.
    pub id: String,
    /// Its secret; generated when `None`.
    pub secret: Option<String>,
    /// Its type.
    pub role: Role,
    /// Its affiliation; the registrar's own when `None`.
    pub affiliation: Option<String>,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// 0 for the CA's default, -1 for unlimited, or a positive limit.
    pub max_enrollments: i32,
}

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// An identity and every certificate of it.
    Identity(String),
    /// One certificate, by serial bytes.
    Serial(Vec<u8>),
}

/// A revocation request.
#[derive(Debug, Clone)]
pub struct RevokeRequest {
    /// What.
    pub target: RevokeTarget,
    /// Why.
    pub reason: RevocationReason,
    /// Whether to return a fresh CRL too.
    pub gen_crl: bool,
}

/// What a revocation did.
#[derive(Debug, Clone)]
pub struct RevokeOutcome {
    /// The serials revoked now, hex.
    pub revoked: Vec<String>,
    /// A fresh CRL from the enrollment CA, DER, if asked for.
    pub crl: Option<Vec<u8>>,
}

/// Fresh CRLs.
#[derive(Debug, Clone)]
pub struct Crls {
    /// The enrollment CA's CRL, DER.
    pub crl: Vec<u8>,
    /// The TLS root's CRL, DER.
    pub tls_crl: Vec<u8>,
    /// Their CRL number.
    pub number: u64,
}

/// A listing request.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// At most this many (0: the default).
    pub page_size: usize,
    /// Start after this id.
    pub start_after: Option<String>,
}

/// One page of identities, each with its certificates.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The identities. Their secret hashes are never sent.
    pub identities: Vec<(Registration, Vec<IssuedCert>)>,
    /// Where the next page starts, if there is one.
    pub next_start_after: Option<String>,
}

/// The CA's public description.
#[derive(Debug, Clone)]
pub struct CaInfo {
    /// The CA's name.
    pub ca_name: String,
    /// The organisation's MSP id.
    pub msp_id: String,
    /// The issuing CA's certificate, then each CA above it up to the root; DER.
    pub ca_chain: Vec<Vec<u8>>,
    /// The TLS root certificates, DER.
    pub tls_roots: Vec<Vec<u8>>,
}

/// The authentication part of a signed request, decoded.
#[derive(Debug, Clone)]
pub struct SignedEnvelope {
    /// The encoded `AuthenticatedRequest`, exactly as signed.
    pub request: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
    /// The caller's certificate, DER.
    pub certificate: Vec<u8>,
    /// The request's timestamp, unix seconds.
    pub timestamp: i64,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Its enrollment id.
    pub id: String,
    /// Its registration, as of this request.
    pub registration: Registration,
    /// Its validated certificate.
    pub identity: Identity,
}

/// The CA's keys and certificates, as the home holds them.
#[derive(Debug)]
pub struct CaMaterial {
    /// The enrollment CA (a root, or an intermediate).
    pub authority: Authority,
    /// The certificates above the enrollment CA up to the root, DER (empty for a root).
    pub parent_chain: Vec<Vec<u8>>,
    /// The TLS root.
    pub tls_authority: Authority,
}

/// The certificate authority's logic.
#[derive(Debug)]
pub struct CaCore {
    config: Config,
    authority: Authority,
    chain: Vec<Vec<u8>>,
    tls_authority: Authority,
    msp: Msp,
    registry: Arc<dyn Registry>,
    hasher: PasswordHasher,
    replay: Mutex<ReplayCache>,
    clock: Arc<dyn Clock>,
}

impl CaCore {
    /// A CA over `material` and `registry`.
    pub fn new(
        config: Config,
        material: CaMaterial,
        registry: Arc<dyn Registry>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CaError> {
        let mut chain = vec![material.authority.certificate_der().to_vec()];
        chain.extend(material.parent_chain);
        let (root, intermediates) = chain
            .split_last()
            .ok_or_else(|| CaError::Config("the CA has no certificate".into()))?;
        // Callers are checked through the CA's own MSP: exactly what an organisation's MSP made
        // from this CA's chain would accept.
        let msp = Msp::new(
            &config.ca.msp_id,
            MspMaterial {
                root_certs: vec![root.clone()],
                intermediate_certs: intermediates.to_vec(),
                ..MspMaterial::default()
            },
        )
        .map_err(|e| CaError::Config(format!("the CA's certificate chain is not usable: {e}")))?;
        Ok(CaCore {
            hasher: PasswordHasher::new(config.security.pbkdf2_iterations)?,
            replay: Mutex::new(ReplayCache::new(config.security.replay_cache_capacity)),
            config,
            authority: material.authority,
            chain,
            tls_authority: material.tls_authority,
            msp,
            registry,
            clock,
        })
    }

    /// The registry (for tools and tests).
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    /// The CA's chain and TLS roots.
    pub fn info(&self) -> CaInfo {
        CaInfo {
            ca_name: self.authority.common_name().to_owned(),
            msp_id: self.config.ca.msp_id.clone(),
            ca_chain: self.chain.clone(),
            tls_roots: vec![self.tls_authority.certificate_der().to_vec()],
        }
    }

    /// Enrolls with a secret.
    pub fn enroll(&self, req: EnrollRequest) -> Result<Enrollment, CaError> {
        check_enrollment_id(&req.id)?;
        if req.secret.is_empty() || req.secret.len() > MAX_SECRET_LEN {
            return Err(CaError::InvalidRequest(format!(
                "a secret has 1 to {MAX_SECRET_LEN} bytes, not {}",
                req.secret.len()
            )));
        }
        // The CSRs are judged first: cheap, and independent of who is asking.
        let keys = check_cert_request(&req.request)?;
        let reg = self.registry.registration(&req.id)?;
        let reg = match reg {
            Some(reg) if self.hasher.verify(&reg.secret, &req.secret) => reg,
            Some(_) => return Err(CaError::BadCredentials),
            None => {
                self.hasher.verify_unknown(&req.secret);
                return Err(CaError::BadCredentials);
            }
        };
        if reg.revoked.is_some() {
            return Err(RegistryError::IdentityRevoked(reg.id).into());
        }
        if let Some(max) = reg.max_enrollments
            && reg.enrollments >= max
        {
            return Err(RegistryError::EnrollmentLimit { id: reg.id, max }.into());
        }
        let (enrollment, records) = self.issue_for(&reg, &req.request, keys)?;
        // The registry checks the limit again, atomically with the increment, so concurrent
        // enrollments cannot exceed it.
        self.registry.record_issue(&reg.id, true, &records)?;
        tracing::info!(
            id = %reg.id,
            role = %reg.role,
            serial = %enrollment.serial,
            tls = enrollment.tls.is_some(),
            "enrolled"
        );
        Ok(enrollment)
    }

    /// Checks a signed request's certificate, signature, timestamp and freshness; returns the
    /// caller.
    pub fn authenticate(&self, env: &SignedEnvelope) -> Result<Caller, CaError> {
        let now = self.clock.now();
        let max_age = i64::try_from(self.config.security.request_max_age_secs).unwrap_or(300);
        let skew = now.saturating_sub(env.timestamp);
        if skew.abs() > max_age {
            return Err(CaError::Unauthenticated(format!(
                "the request's timestamp {} is {} s away from the CA's clock ({now}); at most {max_age} s is accepted",
                env.timestamp,
                skew.abs()
            )));
        }
        let pem = to_pem("CERTIFICATE", &env.certificate);
        let serialized =
            mercato_proto::identity::serialize_identity(&self.config.ca.msp_id, pem.as_bytes());
        let identity = self
            .msp
            .validate(pem.as_bytes(), &serialized)
            .map_err(|e| {
                CaError::Unauthenticated(format!("the certificate is not valid for this CA: {e}"))
            })?;
        identity
            .check_valid_at(now)
            .map_err(|e| CaError::Unauthenticated(e.to_string()))?;
        identity
            .verify(&signed_message(&env.request), &env.signature)
            .map_err(|e| {
                CaError::Unauthenticated(format!("the request's signature does not verify: {e}"))
            })?;
        let serial = hex::decode(identity.serial())
            .map_err(|_| CaError::Internal("a validated serial is not hex".into()))?;
        let issued = self.registry.certificate(&serial)?;
        let Some(issued) = issued else {
            return Err(CaError::Unauthenticated(format!(
                "certificate {} was not issued by this CA",
                identity.serial()
            )));
        };
        if issued.kind != CertKind::Enrollment || issued.der != identity.certificate_der() {
            return Err(CaError::Unauthenticated(format!(
                "certificate {} is not an enrollment certificate of this CA",
                identity.serial()
            )));
        }
        if issued.revoked.is_some() {
            return Err(CaError::Unauthenticated(format!(
                "certificate {} is revoked",
                identity.serial()
            )));
        }
        let registration = self
            .registry
            .registration(&issued.enrollment_id)?
            .ok_or_else(|| {
                CaError::Unauthenticated(format!(
                    "identity {:?} is no longer registered",
                    issued.enrollment_id
                ))
            })?;
        if registration.revoked.is_some() {
            return Err(CaError::Unauthenticated(format!(
                "identity {:?} is revoked",
                registration.id
            )));
        }
        // Last, so that only authentic requests take room in the cache.
        self.replay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check_and_insert(
                &registration.id,
                &env.request,
                env.timestamp.saturating_add(max_age),
                now,
            )?;
        Ok(Caller {
            id: registration.id.clone(),
            registration,
            identity,
        })
    }

    /// Renews the caller's certificates for the key(s) in `request`.
    pub fn reenroll(&self, caller: &Caller, request: CertRequest) -> Result<Enrollment, CaError> {
        if request.profile != Profile::Enrollment {
            return Err(CaError::InvalidRequest(
                "re-enrollment renews an enrollment certificate; an intermediate CA enrolls with its secret".into(),
            ));
        }
        let keys = check_cert_request(&request)?;
        let (enrollment, records) = self.issue_for(&caller.registration, &request, keys)?;
        self.registry.record_issue(&caller.id, false, &records)?;
        tracing::info!(id = %caller.id, serial = %enrollment.serial, "re-enrolled");
        Ok(enrollment)
    }

    /// Registers an identity; returns its secret.
    pub fn register(&self, caller: &Caller, req: RegisterRequest) -> Result<String, CaError> {
        check_enrollment_id(&req.id)?;
        let affiliation = req
            .affiliation
            .unwrap_or_else(|| caller.registration.affiliation.clone());
        check_affiliation(&affiliation)?;
        check_attributes(&req.attributes)?;
        let rights = Rights::of(&caller.registration);
        rights.check_registration(&caller.id, req.role, &affiliation, &req.attributes)?;
        let ca_max = self.config.enrollment.max_enrollments;
        let max_enrollments = match (req.max_enrollments, ca_max) {
            (0, -1) => None,
            (0, max) => Some(max.unsigned_abs()),
            (-1, -1) => None,
            (-1, max) => {
                return Err(CaError::InvalidRequest(format!(
                    "unlimited enrollments are not allowed; this CA allows at most {max}"
                )));
            }
            (n, max) if n < -1 => {
                return Err(CaError::InvalidRequest(format!(
                    "max enrollments {n} (use -1 for unlimited, 0 for the CA's default {max})"
                )));
            }
            (n, max) if max > 0 && n > max => {
                return Err(CaError::InvalidRequest(format!(
                    "max enrollments {n} is over this CA's limit of {max}"
                )));
            }
            (n, _) => Some(n.unsigned_abs()),
        };
        let secret = match req.secret {
            Some(s) => s,
            None => generate_secret()?,
        };
        let registration = Registration {
            id: req.id,
            role: req.role,
            affiliation,
            attributes: req.attributes,
            max_enrollments,
            enrollments: 0,
            secret: self.hasher.hash(&secret)?,
            registered_by: caller.id.clone(),
            registered_at: self.clock.now(),
            revoked: None,
        };
        self.registry.register(&registration)?;
        tracing::info!(
            id = %registration.id,
            role = %registration.role,
            affiliation = %registration.affiliation,
            by = %caller.id,
            "registered"
        );
        Ok(secret)
    }

    /// Revokes an identity or a certificate the caller manages.
    pub fn revoke(&self, caller: &Caller, req: RevokeRequest) -> Result<RevokeOutcome, CaError> {
        let rights = Rights::of(&caller.registration);
        rights.require_revoker(&caller.id)?;
        let target_id = match &req.target {
            RevokeTarget::Identity(id) => {
                check_enrollment_id(id)?;
                id.clone()
            }
            RevokeTarget::Serial(serial) => {
                self.registry
                    .certificate(serial)?
                    .ok_or_else(|| RegistryError::UnknownCertificate(hex::encode(serial)))?
                    .enrollment_id
            }
        };
        let target = self
            .registry
            .registration(&target_id)?
            .ok_or_else(|| RegistryError::UnknownIdentity(target_id.clone()))?;
        rights.require_manages(&caller.id, &target)?;
        let info = RevocationInfo {
            at: self.clock.now(),
            reason: req.reason,
            by: caller.id.clone(),
        };
        let revoked = match &req.target {
            RevokeTarget::Identity(id) => self.registry.revoke_identity(id, &info)?,
            RevokeTarget::Serial(serial) => {
                vec![self.registry.revoke_certificate(serial, &info)?]
            }
        };
        let revoked: Vec<String> = revoked.iter().map(IssuedCert::serial_hex).collect();
        tracing::info!(
            target = %target.id,
            serials = ?revoked,
            reason = %req.reason,
            by = %caller.id,
            "revoked"
        );
        let crl = if req.gen_crl {
            Some(self.make_crls()?.crl)
        } else {
            None
        };
        Ok(RevokeOutcome { revoked, crl })
    }

    /// Issues fresh CRLs.
    pub fn gen_crl(&self, caller: &Caller) -> Result<Crls, CaError> {
        Rights::of(&caller.registration).require_gen_crl(&caller.id)?;
        let crls = self.make_crls()?;
        tracing::info!(number = crls.number, by = %caller.id, "generated CRLs");
        Ok(crls)
    }

    /// Lists the identities the caller manages.
    pub fn list(&self, caller: &Caller, req: ListRequest) -> Result<Listing, CaError> {
        let rights = Rights::of(&caller.registration);
        rights.require_registrar(&caller.id)?;
        let page_size = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let mut identities = Vec::new();
        let mut cursor = req.start_after;
        let mut scanned = 0;
        loop {
            let batch = self.registry.registrations(cursor.as_deref(), page_size)?;
            let exhausted = batch.len() < page_size;
            for reg in batch {
                scanned += 1;
                cursor = Some(reg.id.clone());
                if rights.manages(&reg) {
                    let certs = self.registry.certificates_of(&reg.id)?;
                    identities.push((reg, certs));
                    if identities.len() == page_size {
                        return Ok(Listing {
                            identities,
                            next_start_after: cursor,
                        });
                    }
                }
            }
            if exhausted {
                return Ok(Listing {
                    identities,
                    next_start_after: None,
                });
            }
            if scanned >= MAX_SCAN {
                return Ok(Listing {
                    identities,
                    next_start_after: cursor,
                });
            }
        }
    }

    fn make_crls(&self) -> Result<Crls, CaError> {
        let revoked = self.registry.revoked_certificates()?;
        let number = self.registry.next_crl_number()?;
        let now = self.clock.now();
        let next = now.saturating_add(self.config.crl.validity_hours.saturating_mul(3600));
        let entry = |c: &IssuedCert| {
            c.revoked.as_ref().map(|r| CrlEntry {
                serial: c.serial.clone(),
                revoked_at: r.at,
                reason: r.reason,
            })
        };
        let (tls, ecerts): (Vec<&IssuedCert>, Vec<&IssuedCert>) =
            revoked.iter().partition(|c| c.kind == CertKind::Tls);
        let ecert_entries: Vec<CrlEntry> = ecerts.into_iter().filter_map(entry).collect();
        let tls_entries: Vec<CrlEntry> = tls.into_iter().filter_map(entry).collect();
        let internal = |e: crate::Error| CaError::Internal(format!("signing a CRL: {e}"));
        Ok(Crls {
            crl: self
                .authority
                .crl_with_reasons(&ecert_entries, number, now, next)
                .map_err(internal)?,
            tls_crl: self
                .tls_authority
                .crl_with_reasons(&tls_entries, number, now, next)
                .map_err(internal)?,
            number,
        })
    }

    /// Issues what `req` asks for to `reg`; returns the answer and the records to store.
    fn issue_for(
        &self,
        reg: &Registration,
        req: &CertRequest,
        keys: (SubjectKey, Option<SubjectKey>),
    ) -> Result<(Enrollment, Vec<IssuedCert>), CaError> {
        let now = self.clock.now();
        let (key, tls_key) = keys;
        let internal =
            |e: crate::Error| CaError::Internal(format!("issuing for {:?}: {e}", reg.id));
        let mut records = Vec::new();
        let (der, serial, kind) = match req.profile {
            Profile::Enrollment => {
                let validity = self.validity(
                    now,
                    self.config.enrollment.ecert_validity_days,
                    self.authority.not_after(),
                )?;
                let serial = new_serial()?;
                let der = self
                    .authority
                    .issue(&MemberRequest {
                        common_name: reg.id.clone(),
                        role: reg.role,
                        attributes: certificate_attributes(reg),
                        key,
                        validity,
                        serial: serial.clone(),
                        hosts: Vec::new(),
                    })
                    .map_err(internal)?;
                (der, serial, CertKind::Enrollment)
            }
            Profile::IntermediateCa => {
                if !Rights::of(reg).may_enroll_intermediate_ca() {
                    return Err(CaError::Forbidden(format!(
                        "{:?} may not enroll as an intermediate CA (it needs {}=true)",
                        reg.id,
                        crate::server::auth::INTERMEDIATE_CA
                    )));
                }
                if key.algorithm != KeyAlgorithm::EcdsaP256 {
                    return Err(CaError::BadCsr(format!(
                        "an intermediate CA key must be ECDSA P-256, not {}",
                        key.algorithm
                    )));
                }
                let validity = self.validity(
                    now,
                    self.config.enrollment.intermediate_validity_days,
                    self.authority.not_after(),
                )?;
                let serial = new_serial()?;
                let der = self
                    .authority
                    .issue_intermediate(&reg.id, &key, validity, &serial)
                    .map_err(internal)?;
                (der, serial, CertKind::IntermediateCa)
            }
        };
        let validity_of = |der: &[u8]| -> Result<(i64, i64), CaError> {
            let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
                CaError::Internal(format!("an issued certificate does not parse: {e}"))
            })?;
            Ok((
                cert.validity().not_before.timestamp(),
                cert.validity().not_after.timestamp(),
            ))
        };
        let (not_before, not_after) = validity_of(&der)?;
        records.push(IssuedCert {
            serial: serial.clone(),
            enrollment_id: reg.id.clone(),
            kind,
            der: der.clone(),
            not_before,
            not_after,
            revoked: None,
        });
        // A server certificate for host names lets its holder serve as that host to every member
        // who trusts the TLS root: only nodes get one.
        if !req.hosts.is_empty() && !matches!(reg.role, Role::Peer | Role::Orderer) {
            return Err(CaError::Forbidden(format!(
                "TLS certificates for host names are issued only to peers and orderers; {:?} is a {}",
                reg.id, reg.role
            )));
        }
        let mut tls = None;
        if let Some(tls_key) = tls_key {
            let validity = self.validity(
                now,
                self.config.enrollment.tls_validity_days,
                self.tls_authority.not_after(),
            )?;
            let tls_serial = new_serial()?;
            let tls_der = self
                .tls_authority
                .issue_tls(&TlsRequest {
                    common_name: reg.id.clone(),
                    role: Some(reg.role),
                    key: tls_key,
                    validity,
                    serial: tls_serial.clone(),
                    hosts: req.hosts.clone(),
                })
                .map_err(internal)?;
            let (not_before, not_after) = validity_of(&tls_der)?;
            records.push(IssuedCert {
                serial: tls_serial.clone(),
                enrollment_id: reg.id.clone(),
                kind: CertKind::Tls,
                der: tls_der.clone(),
                not_before,
                not_after,
                revoked: None,
            });
            tls = Some((tls_der, hex::encode(&tls_serial)));
        }
        Ok((
            Enrollment {
                certificate: der,
                serial: hex::encode(&serial),
                ca_chain: self.chain.clone(),
                tls,
                tls_roots: vec![self.tls_authority.certificate_der().to_vec()],
            },
            records,
        ))
    }

    /// From a little before `now` for `days`, but never past `ca_not_after`.
    fn validity(&self, now: i64, days: i64, ca_not_after: i64) -> Result<Validity, CaError> {
        let mut v = Validity::days_from(now.saturating_sub(BACKDATE_SECS), days);
        v.not_after = v.not_after.min(ca_not_after);
        if v.not_after <= now {
            return Err(CaError::Internal(format!(
                "the CA certificate expired at {ca_not_after}; it can issue nothing"
            )));
        }
        Ok(v)
    }
}

/// The attributes written into an enrollment certificate: the registration's own (not its
/// `hf.*` rights), plus the enrollment id, type and affiliation, as Fabric CA writes them.
fn certificate_attributes(reg: &Registration) -> BTreeMap<String, String> {
    let mut attrs: BTreeMap<String, String> = reg
        .attributes
        .iter()
        .filter(|(k, _)| !k.starts_with("hf."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    attrs.insert(ENROLLMENT_ID_ATTR.into(), reg.id.clone());
    attrs.insert(TYPE_ATTR.into(), reg.role.as_str().into());
    attrs.insert(AFFILIATION_ATTR.into(), reg.affiliation.clone());
    attrs
}

/// A random serial number: 16 bytes, positive, minimally encoded (so the bytes are exactly what
/// the certificate and a CRL carry).
pub(crate) fn new_serial() -> Result<Vec<u8>, CaError> {
    let mut serial = vec![0u8; 16];
    SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| CaError::Internal("the system random generator failed".into()))?;
    serial[0] = (serial[0] & 0x7f).max(1);
    Ok(serial)
}

/// Checks both CSRs and the hosts of a certificate request; returns the keys.
fn check_cert_request(req: &CertRequest) -> Result<(SubjectKey, Option<SubjectKey>), CaError> {
    let key = verify_csr(&req.csr)?;
    let tls_key = match &req.tls_csr {
        Some(csr) => Some(verify_csr(csr).map_err(|e| match e {
            CaError::BadCsr(why) => CaError::BadCsr(format!("TLS CSR: {why}")),
            other => other,
        })?),
        None => None,
    };
    if !req.hosts.is_empty() && tls_key.is_none() {
        return Err(CaError::InvalidRequest(
            "host names are for a TLS certificate, and the request has no TLS CSR".into(),
        ));
    }
    if req.profile == Profile::IntermediateCa && tls_key.is_some() {
        return Err(CaError::InvalidRequest(
            "an intermediate CA enrollment cannot ask for a TLS certificate".into(),
        ));
    }
    if req.hosts.len() > MAX_HOSTS {
        return Err(CaError::InvalidRequest(format!(
            "{} host names, at most {MAX_HOSTS} allowed",
            req.hosts.len()
        )));
    }
    for host in &req.hosts {
        check_host(host)?;
    }
    Ok((key, tls_key))
}

/// An enrollment id: 1 to 64 of letters, digits and `. _ @ + -`, starting with a letter or
/// digit.
pub fn check_enrollment_id(id: &str) -> Result<(), CaError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CaError::InvalidRequest(format!(
            "enrollment id {:?} is not 1 to {MAX_ID_LEN} letters, digits and . _ @ + - starting with a letter or digit",
            truncate(id)
        )))
    }
}

/// An affiliation: empty (the root), or dotted segments of letters, digits, `_` and `-`.
pub fn check_affiliation(affiliation: &str) -> Result<(), CaError> {
    let ok = affiliation.is_empty()
        || (affiliation.len() <= MAX_AFFILIATION_LEN
            && affiliation.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            }));
    if ok {
        Ok(())
    } else {
        Err(CaError::InvalidRequest(format!(
            "affiliation {:?} is not dotted segments of letters, digits, _ and - (at most {MAX_AFFILIATION_LEN} bytes)",
            truncate(affiliation)
        )))
    }
}

/// Attribute names are letters, digits and `. _ -`; values are printable text.
pub fn check_attributes(attributes: &BTreeMap<String, String>) -> Result<(), CaError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(CaError::InvalidRequest(format!(
            "{} attributes, at most {MAX_ATTRIBUTES} allowed",
            attributes.len()
        )));
    }
    for (name, value) in attributes {
        let name_ok = !name.is_empty()
            && name.len() <= MAX_ATTRIBUTE_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(CaError::InvalidRequest(format!(
                "attribute name {:?} is not 1 to {MAX_ATTRIBUTE_NAME_LEN} letters, digits and . _ -",
                truncate(name)
            )));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_LEN || value.chars().any(char::is_control) {
            return Err(CaError::InvalidRequest(format!(
                "attribute {name} has a value over {MAX_ATTRIBUTE_VALUE_LEN} bytes or with control characters"
            )));
        }
    }
    Ok(())
}

/// A host for a TLS certificate: an IP address, or a DNS name (optionally `*.` wildcard).
pub fn check_host(host: &str) -> Result<(), CaError> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let ok = !name.is_empty()
        && host.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(CaError::InvalidRequest(format!(
            "host {:?} is not a DNS name or an IP address",
            truncate(host)
        )))
    }
}

/// At most 80 characters of a value, for an error message.
fn truncate(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(80).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_affiliations_attributes_and_hosts_are_checked() {
        for ok in ["admin", "peer0.org1", "alice@example.com", "a+b_c-d"] {
            check_enrollment_id(ok).unwrap();
        }
        for bad in ["", ".x", "a b", "a/b", "é", &"x".repeat(65), "a\0"] {
            assert!(check_enrollment_id(bad).is_err(), "{bad:?}");
        }
        for ok in ["", "org1", "org1.sellers", "a-b.c_d"] {
            check_affiliation(ok).unwrap();
        }
        for bad in [".", "org1.", "a..b", "a b"] {
            assert!(check_affiliation(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "localhost",
            "peer0.org1.example.com",
            "*.example.com",
            "10.0.0.1",
            "::1",
        ] {
            check_host(ok).unwrap();
        }
        for bad in ["", "a b", "-a.com", "a..b", "*", "a_b.com"] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
        let attrs = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        check_attributes(&attrs("role", "brand")).unwrap();
        assert!(check_attributes(&attrs("bad name", "x")).is_err());
        assert!(check_attributes(&attrs("x", "line\nbreak")).is_err());
        let many: BTreeMap<String, String> = (0..=MAX_ATTRIBUTES)
            .map(|i| (format!("a{i}"), String::new()))
            .collect();
        assert!(check_attributes(&many).is_err());
    }

    #[test]
    fn serials_are_positive_sixteen_bytes() {
        for _ in 0..64 {
            let s = new_serial().unwrap();
            assert_eq!(s.len(), 16);
            assert!(s[0] >= 1 && s[0] <= 0x7f);
        }
    }
}
