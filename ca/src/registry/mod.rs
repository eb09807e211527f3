//! The CA's registry: registered identities (with their secret hashes and rights), every
//! certificate issued, and revocations, behind the [`Registry`] trait so that the CA's logic
//! never sees the storage engine.
//!
//! Each operation that changes more than one record is atomic: an enrollment uses up one of the
//! identity's enrollments and stores its certificates together, or does neither; a revocation
//! marks the identity and all its certificates together. [`SledRegistry`] makes each change
//! durable (flushed to disk) before it returns, so a certificate or a revocation the CA has
//! answered for survives a crash.
//!
//! # Layout
//! - this module: the records and the [`Registry`] trait.
//! - `mem`: [`MemRegistry`], for tests and tools.
//! - `sled_store`: [`SledRegistry`], the CA server's store under its home.

mod mem;
mod sled_store;

use std::collections::BTreeMap;

pub use mem::MemRegistry;
pub use sled_store::SledRegistry;

use crate::authority::RevocationReason;
use crate::error::RegistryError;
use crate::identity::Role;
use crate::password::SecretHash;

/// A registered identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The enrollment id (the common name of its certificates).
    pub id: String,
    /// Its type: the NodeOU role of its enrollment certificates.
    pub role: Role,
    /// Its dotted affiliation; empty is the root of the organisation.
    pub affiliation: String,
    /// Its attributes: `hf.*` rights (kept here) and the rest (written into certificates).
    pub attributes: BTreeMap<String, String>,
    /// How many times its secret may enroll; `None` is unlimited.
    pub max_enrollments: Option<u32>,
    /// How many times it has enrolled with its secret.
    pub enrollments: u32,
    /// The hash of its secret.
    pub secret: SecretHash,
    /// Who registered it.
    pub registered_by: String,
    /// When, unix seconds.
    pub registered_at: i64,
    /// Set once the identity is revoked: it can no longer enroll or re-enroll.
    pub revoked: Option<RevocationInfo>,
}

impl Registration {
    /// An attribute's value.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }
}

/// When, why and by whom something was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationInfo {
    /// When, unix seconds.
    pub at: i64,
    /// Why.
    pub reason: RevocationReason,
    /// The enrollment id of the revoker.
    pub by: String,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertKind {
    /// An enrollment certificate (signs as a member), issued by the enrollment CA.
    Enrollment,
    /// A TLS certificate, issued by the TLS root.
    Tls,
    /// An intermediate CA certificate, issued by the enrollment CA.
    IntermediateCa,
}

impl CertKind {
    /// The kind's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Enrollment => "enrollment",
            CertKind::Tls => "tls",
            CertKind::IntermediateCa => "ca",
        }
    }

    /// The kind with this name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            CertKind::Enrollment,
            CertKind::Tls,
            CertKind::IntermediateCa,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The serial number's bytes, as in the certificate.
    pub serial: Vec<u8>,
    /// The identity it was issued to.
    pub enrollment_id: String,
    /// What it is for.
    pub kind: CertKind,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The first second it is valid, unix seconds.
    pub not_before: i64,
    /// The last second it is valid, unix seconds.
    pub not_after: i64,
    /// Set once it is revoked.
    pub revoked: Option<RevocationInfo>,
}

impl IssuedCert {
    /// The serial number, lowercase hex (as `Identity::serial` writes it).
    pub fn serial_hex(&self) -> String {
        hex::encode(&self.serial)
    }
}

/// The CA's store. Implementations are safe to share between threads; every method is one
/// atomic step.
pub trait Registry: Send + Sync + std::fmt::Debug {
    /// Adds an identity; refuses an id that is already registered.
    fn register(&self, registration: &Registration) -> Result<(), RegistryError>;

    /// The identity with this id.
    fn registration(&self, id: &str) -> Result<Option<Registration>, RegistryError>;

    /// At most `limit` identities in id order, starting after `start_after`.
    fn registrations(
        &self,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Registration>, RegistryError>;

    /// Records certificates issued to `id`, atomically: the identity must exist and not be
    /// revoked; when `uses_enrollment`, it must have an enrollment left, and uses it up; every
    /// serial must be new. On any refusal nothing is stored.
    fn record_issue(
        &self,
        id: &str,
        uses_enrollment: bool,
        certs: &[IssuedCert],
    ) -> Result<(), RegistryError>;

    /// The certificate with this serial number.
    fn certificate(&self, serial: &[u8]) -> Result<Option<IssuedCert>, RegistryError>;

    /// Every certificate issued to `id`, in serial order.
    fn certificates_of(&self, id: &str) -> Result<Vec<IssuedCert>, RegistryError>;

    /// Revokes the identity (no more enrollments) and every certificate of it not yet revoked;
    /// returns the certificates revoked now. Refuses an identity that is already revoked and
    /// has no certificate left to revoke.
    fn revoke_identity(
        &self,
        id: &str,
        info: &RevocationInfo,
    ) -> Result<Vec<IssuedCert>, RegistryError>;

    /// Revokes one certificate; returns it as revoked. Refuses one already revoked.
    fn revoke_certificate(
        &self,
        serial: &[u8],
        info: &RevocationInfo,
    ) -> Result<IssuedCert, RegistryError>;

    /// Every revoked certificate, in serial order.
    fn revoked_certificates(&self) -> Result<Vec<IssuedCert>, RegistryError>;

    /// The next CRL number: 1 the first time, then one more each call, across restarts.
    fn next_crl_number(&self) -> Result<u64, RegistryError>;
}

/// The check every implementation makes before storing an identity: ids are the keys of the
/// stores' indexes, which separate an id from a serial with a zero byte.
fn check_id(id: &str) -> Result<(), RegistryError> {
    if id.is_empty() || id.contains('\0') {
        return Err(RegistryError::UnknownIdentity(id.to_owned()));
    }
    Ok(())
}

/// Whether `reg` may enroll once more with its secret.
fn check_enrollment_left(reg: &Registration) -> Result<(), RegistryError> {
    match reg.max_enrollments {
        Some(max) if reg.enrollments >= max => Err(RegistryError::EnrollmentLimit {
            id: reg.id.clone(),
            max,
        }),
        _ => Ok(()),
    }
}

/// One suite of behaviour that every [`Registry`] must show; run against each implementation.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    fn reg(id: &str, max: Option<u32>) -> Registration {
        Registration {
            id: id.into(),
            role: Role::Client,
            affiliation: "org1".into(),
            attributes: [("role".to_string(), "brand".to_string())].into(),
            max_enrollments: max,
            enrollments: 0,
            secret: SecretHash {
                iterations: 1,
                salt: vec![1; 16],
                hash: vec![2; 32],
            },
            registered_by: "admin".into(),
            registered_at: 100,
            revoked: None,
        }
    }

    fn cert(id: &str, serial: u8, kind: CertKind) -> IssuedCert {
        IssuedCert {
            serial: vec![0x10, serial],
            enrollment_id: id.into(),
            kind,
            der: vec![0x30, serial],
            not_before: 1,
            not_after: 2,
            revoked: None,
        }
    }

    fn info(at: i64) -> RevocationInfo {
        RevocationInfo {
            at,
            reason: RevocationReason::KeyCompromise,
            by: "admin".into(),
        }
    }

    /// Runs the suite against a fresh, empty registry.
    pub(crate) fn run(r: &dyn Registry) {
        registrations_are_unique_and_listed_in_order(r);
        enrollment_limits_are_enforced_atomically(r);
        revocation_covers_identity_and_certificates(r);
        crl_numbers_increase(r);
    }

    fn registrations_are_unique_and_listed_in_order(r: &dyn Registry) {
        r.register(&reg("bob", None)).unwrap();
        r.register(&reg("alice", Some(1))).unwrap();
        assert!(matches!(
            r.register(&reg("bob", Some(3))),
            Err(RegistryError::Duplicate(id)) if id == "bob"
        ));
        assert_eq!(r.registration("bob").unwrap().unwrap(), reg("bob", None));
        assert_eq!(r.registration("nobody").unwrap(), None);
        let ids = |v: Vec<Registration>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(r.registrations(None, 10).unwrap()), ["alice", "bob"]);
        assert_eq!(ids(r.registrations(None, 1).unwrap()), ["alice"]);
        assert_eq!(ids(r.registrations(Some("alice"), 10).unwrap()), ["bob"]);
        assert!(r.register(&reg("bad\0id", None)).is_err());
    }

    fn enrollment_limits_are_enforced_atomically(r: &dyn Registry) {
        let c1 = cert("alice", 1, CertKind::Enrollment);
        let t1 = cert("alice", 2, CertKind::Tls);
        r.record_issue("alice", true, &[c1.clone(), t1.clone()])
            .unwrap();
        assert_eq!(r.registration("alice").unwrap().unwrap().enrollments, 1);
        // The second enrollment is over the limit of one: nothing is stored.
        let c2 = cert("alice", 3, CertKind::Enrollment);
        assert!(matches!(
            r.record_issue("alice", true, std::slice::from_ref(&c2)),
            Err(RegistryError::EnrollmentLimit { max: 1, .. })
        ));
        assert_eq!(r.certificate(&c2.serial).unwrap(), None);
        // A re-enrollment does not use an enrollment.
        r.record_issue("alice", false, std::slice::from_ref(&c2))
            .unwrap();
        // A serial is never reused, and the refusal stores nothing.
        let dup = cert("bob", 1, CertKind::Enrollment);
        assert!(matches!(
            r.record_issue("bob", true, &[dup]),
            Err(RegistryError::SerialInUse(_))
        ));
        assert_eq!(r.registration("bob").unwrap().unwrap().enrollments, 0);
        assert!(matches!(
            r.record_issue("nobody", true, &[cert("nobody", 9, CertKind::Enrollment)]),
            Err(RegistryError::UnknownIdentity(_))
        ));
        assert_eq!(r.certificate(&c1.serial).unwrap().unwrap(), c1);
        assert_eq!(r.certificates_of("alice").unwrap(), [c1, t1, c2]);
        assert!(r.certificates_of("bob").unwrap().is_empty());
    }

    fn revocation_covers_identity_and_certificates(r: &dyn Registry) {
        r.record_issue("bob", true, &[cert("bob", 5, CertKind::Enrollment)])
            .unwrap();
        let one = r.revoke_certificate(&[0x10, 5], &info(50)).unwrap();
        assert_eq!(one.revoked, Some(info(50)));
        assert!(matches!(
            r.revoke_certificate(&[0x10, 5], &info(51)),
            Err(RegistryError::AlreadyRevoked(_))
        ));
        assert!(matches!(
            r.revoke_certificate(&[0x77], &info(51)),
            Err(RegistryError::UnknownCertificate(_))
        ));
        // Bob is still registered and may enroll again.
        assert!(r.registration("bob").unwrap().unwrap().revoked.is_none());

        let revoked = r.revoke_identity("alice", &info(60)).unwrap();
        assert_eq!(revoked.len(), 3);
        assert!(revoked.iter().all(|c| c.revoked == Some(info(60))));
        let alice = r.registration("alice").unwrap().unwrap();
        assert_eq!(alice.revoked, Some(info(60)));
        assert!(matches!(
            r.revoke_identity("alice", &info(61)),
            Err(RegistryError::IdentityRevoked(_))
        ));
        assert!(matches!(
            r.revoke_identity("nobody", &info(61)),
            Err(RegistryError::UnknownIdentity(_))
        ));
        // A revoked identity cannot be issued anything more.
        assert!(matches!(
            r.record_issue("alice", false, &[cert("alice", 8, CertKind::Enrollment)]),
            Err(RegistryError::IdentityRevoked(_))
        ));
        let serials: Vec<Vec<u8>> = r
            .revoked_certificates()
            .unwrap()
            .into_iter()
            .map(|c| c.serial)
            .collect();
        assert_eq!(
            serials,
            [vec![0x10, 1], vec![0x10, 2], vec![0x10, 3], vec![0x10, 5]]
        );
    }

    fn crl_numbers_increase(r: &dyn Registry) {
        assert_eq!(r.next_crl_number().unwrap(), 1);
        assert_eq!(r.next_crl_number().unwrap(), 2);
    }
}
