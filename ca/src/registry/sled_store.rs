//! The sled [`Registry`]: the CA server's store under its home (`db/`).
//!
//! Trees:
//! - `registrations`: enrollment id → JSON [`StoredRegistration`];
//! - `certificates`: serial bytes → JSON [`StoredCert`];
//! - `certs_by_id`: enrollment id ‖ 0x00 ‖ serial → empty (ids never contain a zero byte);
//! - `revoked`: serial bytes → empty, every revoked certificate (what a CRL lists);
//! - `meta`: `crl_number` (u64 big-endian) and `schema` (the record format's version).
//!
//! Records are JSON of storage types kept apart from the domain types, so the domain can change
//! without silently changing what is on disk. Every change runs in one sled transaction over the
//! trees it touches and is flushed before the method returns.

use std::collections::BTreeMap;
use std::path::Path;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};

use super::{
    CertKind, IssuedCert, Registration, Registry, RevocationInfo, check_enrollment_left, check_id,
};
use crate::authority::RevocationReason;
use crate::error::RegistryError;
use crate::password::SecretHash;

/// The version of the record format this code writes and reads.
const SCHEMA: u64 = 1;
const CRL_NUMBER: &[u8] = b"crl_number";
const SCHEMA_KEY: &[u8] = b"schema";

/// A registry stored in sled.
#[derive(Debug, Clone)]
pub struct SledRegistry {
    db: sled::Db,
    /// Held while certificates are recorded and while an identity is revoked: sled transactions
    /// cannot scan, so revoking an identity reads its certificates first, and this lock keeps a
    /// certificate from being recorded in between. (sled's own file lock keeps other processes
    /// out.)
    issue_lock: std::sync::Arc<std::sync::Mutex<()>>,
    registrations: sled::Tree,
    certificates: sled::Tree,
    certs_by_id: sled::Tree,
    revoked: sled::Tree,
    meta: sled::Tree,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRegistration {
    id: String,
    role: crate::identity::Role,
    affiliation: String,
    attributes: BTreeMap<String, String>,
    max_enrollments: Option<u32>,
    enrollments: u32,
    secret_algorithm: String,
    secret_iterations: u32,
    secret_salt: String,
    secret_hash: String,
    registered_by: String,
    registered_at: i64,
    revoked: Option<StoredRevocation>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRevocation {
    at: i64,
    reason: u8,
    by: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredCert {
    serial: String,
    enrollment_id: String,
    kind: String,
    der: String,
    not_before: i64,
    not_after: i64,
    revoked: Option<StoredRevocation>,
}

fn corrupt(key: &[u8], reason: impl std::fmt::Display) -> RegistryError {
    RegistryError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_string(),
    }
}

fn backend(e: sled::Error) -> RegistryError {
    RegistryError::Backend(e.to_string())
}

impl From<&RevocationInfo> for StoredRevocation {
    fn from(r: &RevocationInfo) -> Self {
        StoredRevocation {
            at: r.at,
            reason: r.reason.code(),
            by: r.by.clone(),
        }
    }
}

impl StoredRevocation {
    fn into_domain(self, key: &[u8]) -> Result<RevocationInfo, RegistryError> {
        Ok(RevocationInfo {
            at: self.at,
            reason: RevocationReason::from_code(self.reason).ok_or_else(|| {
                corrupt(key, format!("unknown revocation reason {}", self.reason))
            })?,
            by: self.by,
        })
    }
}

fn encode_registration(r: &Registration) -> Vec<u8> {
    let stored = StoredRegistration {
        id: r.id.clone(),
        role: r.role,
        affiliation: r.affiliation.clone(),
        attributes: r.attributes.clone(),
        max_enrollments: r.max_enrollments,
        enrollments: r.enrollments,
        secret_algorithm: crate::password::ALGORITHM.to_owned(),
        secret_iterations: r.secret.iterations,
        secret_salt: hex::encode(&r.secret.salt),
        secret_hash: hex::encode(&r.secret.hash),
        registered_by: r.registered_by.clone(),
        registered_at: r.registered_at,
        revoked: r.revoked.as_ref().map(StoredRevocation::from),
    };
    // Serialising plain strings, numbers and maps with string keys cannot fail.
    serde_json::to_vec(&stored).unwrap_or_default()
}

fn decode_registration(key: &[u8], bytes: &[u8]) -> Result<Registration, RegistryError> {
    let s: StoredRegistration = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))?;
    if s.secret_algorithm != crate::password::ALGORITHM {
        return Err(corrupt(
            key,
            format!("unknown secret hash algorithm {:?}", s.secret_algorithm),
        ));
    }
    let unhex = |v: &str| hex::decode(v).map_err(|e| corrupt(key, e));
    Ok(Registration {
        id: s.id,
        role: s.role,
        affiliation: s.affiliation,
        attributes: s.attributes,
        max_enrollments: s.max_enrollments,
        enrollments: s.enrollments,
        secret: SecretHash {
            iterations: s.secret_iterations,
            salt: unhex(&s.secret_salt)?,
            hash: unhex(&s.secret_hash)?,
        },
        registered_by: s.registered_by,
        registered_at: s.registered_at,
        revoked: s.revoked.map(|r| r.into_domain(key)).transpose()?,
    })
}

fn encode_cert(c: &IssuedCert) -> Vec<u8> {
    let stored = StoredCert {
        serial: c.serial_hex(),
        enrollment_id: c.enrollment_id.clone(),
        kind: c.kind.as_str().to_owned(),
        der: hex::encode(&c.der),
        not_before: c.not_before,
        not_after: c.not_after,
        revoked: c.revoked.as_ref().map(StoredRevocation::from),
    };
    serde_json::to_vec(&stored).unwrap_or_default()
}

fn decode_cert(key: &[u8], bytes: &[u8]) -> Result<IssuedCert, RegistryError> {
    let s: StoredCert = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))?;
    let unhex = |v: &str| hex::decode(v).map_err(|e| corrupt(key, e));
    Ok(IssuedCert {
        serial: unhex(&s.serial)?,
        enrollment_id: s.enrollment_id,
        kind: CertKind::parse(&s.kind)
            .ok_or_else(|| corrupt(key, format!("unknown certificate kind {:?}", s.kind)))?,
        der: unhex(&s.der)?,
        not_before: s.not_before,
        not_after: s.not_after,
        revoked: s.revoked.map(|r| r.into_domain(key)).transpose()?,
    })
}

fn by_id_key(id: &str, serial: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(id.len() + 1 + serial.len());
    key.extend_from_slice(id.as_bytes());
    key.push(0);
    key.extend_from_slice(serial);
    key
}

/// Turns a transaction's result into the registry's.
fn finish<T>(r: Result<T, TransactionError<RegistryError>>) -> Result<T, RegistryError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    })
}

type TxResult<T> = Result<T, ConflictableTransactionError<RegistryError>>;

fn abort<T>(e: RegistryError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn tx_registration(regs: &TransactionalTree, id: &str) -> TxResult<Registration> {
    match regs.get(id.as_bytes())? {
        Some(bytes) => {
            decode_registration(id.as_bytes(), &bytes).map_err(ConflictableTransactionError::Abort)
        }
        None => abort(RegistryError::UnknownIdentity(id.to_owned())),
    }
}

impl SledRegistry {
    /// Opens (creating if needed) the registry in the folder `path`. Fails if another process
    /// has it open.
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|e| RegistryError::Backend(format!("{}: {e}", path.display())))?;
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        let registry = SledRegistry {
            registrations: tree("registrations")?,
            certificates: tree("certificates")?,
            certs_by_id: tree("certs_by_id")?,
            revoked: tree("revoked")?,
            meta: tree("meta")?,
            db,
            issue_lock: Default::default(),
        };
        match registry.meta.get(SCHEMA_KEY).map_err(backend)? {
            None => {
                registry
                    .meta
                    .insert(SCHEMA_KEY, &SCHEMA.to_be_bytes())
                    .map_err(backend)?;
                registry.flush()?;
            }
            Some(v) if v.as_ref() == SCHEMA.to_be_bytes() => {}
            Some(v) => {
                return Err(corrupt(
                    SCHEMA_KEY,
                    format!(
                        "the registry has schema {}, this CA reads schema {SCHEMA}",
                        hex::encode(&v)
                    ),
                ));
            }
        }
        Ok(registry)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data, so a panic while it was held leaves nothing to repair.
        self.issue_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes everything to disk.
    fn flush(&self) -> Result<(), RegistryError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }

    fn decode_certs(
        &self,
        keys: impl Iterator<Item = sled::Result<Vec<u8>>>,
    ) -> Result<Vec<IssuedCert>, RegistryError> {
        let mut out = Vec::new();
        for serial in keys {
            let serial = serial.map_err(backend)?;
            let bytes = self
                .certificates
                .get(&serial)
                .map_err(backend)?
                .ok_or_else(|| corrupt(&serial, "an index names a certificate that is missing"))?;
            out.push(decode_cert(&serial, &bytes)?);
        }
        Ok(out)
    }
}

impl Registry for SledRegistry {
    fn register(&self, registration: &Registration) -> Result<(), RegistryError> {
        check_id(&registration.id)?;
        let swapped = self
            .registrations
            .compare_and_swap(
                registration.id.as_bytes(),
                None as Option<&[u8]>,
                Some(encode_registration(registration)),
            )
            .map_err(backend)?;
        if swapped.is_err() {
            return Err(RegistryError::Duplicate(registration.id.clone()));
        }
        self.flush()
    }

    fn registration(&self, id: &str) -> Result<Option<Registration>, RegistryError> {
        self.registrations
            .get(id.as_bytes())
            .map_err(backend)?
            .map(|bytes| decode_registration(id.as_bytes(), &bytes))
            .transpose()
    }

    fn registrations(
        &self,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Registration>, RegistryError> {
        use std::ops::Bound;
        let lower = match start_after {
            Some(after) => Bound::Excluded(after.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self
            .registrations
            .range::<Vec<u8>, _>((lower, Bound::Unbounded))
            .take(limit)
        {
            let (key, bytes) = item.map_err(backend)?;
            out.push(decode_registration(&key, &bytes)?);
        }
        Ok(out)
    }

    fn record_issue(
        &self,
        id: &str,
        uses_enrollment: bool,
        certs: &[IssuedCert],
    ) -> Result<(), RegistryError> {
        let _guard = self.lock();
        let result = (&self.registrations, &self.certificates, &self.certs_by_id).transaction(
            |(regs, certificates, by_id)| {
                let mut reg = tx_registration(regs, id)?;
                if reg.revoked.is_some() {
                    return abort(RegistryError::IdentityRevoked(id.to_owned()));
                }
                if uses_enrollment {
                    check_enrollment_left(&reg).map_err(ConflictableTransactionError::Abort)?;
                    reg.enrollments = reg.enrollments.saturating_add(1);
                    regs.insert(id.as_bytes(), encode_registration(&reg))?;
                }
                for (i, cert) in certs.iter().enumerate() {
                    if certificates.get(&cert.serial)?.is_some()
                        || certs[..i].iter().any(|c| c.serial == cert.serial)
                    {
                        return abort(RegistryError::SerialInUse(cert.serial_hex()));
                    }
                    certificates.insert(cert.serial.as_slice(), encode_cert(cert))?;
                    by_id.insert(by_id_key(id, &cert.serial), &[] as &[u8])?;
                }
                Ok(())
            },
        );
        finish(result)?;
        self.flush()
    }

    fn certificate(&self, serial: &[u8]) -> Result<Option<IssuedCert>, RegistryError> {
        self.certificates
            .get(serial)
            .map_err(backend)?
            .map(|bytes| decode_cert(serial, &bytes))
            .transpose()
    }

    fn certificates_of(&self, id: &str) -> Result<Vec<IssuedCert>, RegistryError> {
        let prefix = by_id_key(id, &[]);
        let serials = self
            .certs_by_id
            .scan_prefix(&prefix)
            .keys()
            .map(|k| k.map(|k| k.get(prefix.len()..).unwrap_or_default().to_vec()));
        self.decode_certs(serials)
    }

    fn revoke_identity(
        &self,
        id: &str,
        info: &RevocationInfo,
    ) -> Result<Vec<IssuedCert>, RegistryError> {
        // The serials are read before the transaction (sled transactions cannot scan), under the
        // lock that `record_issue` takes, so none can be added before the identity is marked.
        let _guard = self.lock();
        let serials: Vec<Vec<u8>> = {
            let prefix = by_id_key(id, &[]);
            self.certs_by_id
                .scan_prefix(&prefix)
                .keys()
                .map(|k| {
                    k.map(|k| k.get(prefix.len()..).unwrap_or_default().to_vec())
                        .map_err(backend)
                })
                .collect::<Result<_, _>>()?
        };
        let result = (&self.registrations, &self.certificates, &self.revoked).transaction(
            |(regs, certificates, revoked_tree)| {
                let mut reg = tx_registration(regs, id)?;
                let already = reg.revoked.is_some();
                let mut revoked = Vec::new();
                for serial in &serials {
                    let Some(bytes) = certificates.get(serial)? else {
                        return abort(corrupt(serial, "an index names a missing certificate"));
                    };
                    let mut cert =
                        decode_cert(serial, &bytes).map_err(ConflictableTransactionError::Abort)?;
                    if cert.revoked.is_none() {
                        cert.revoked = Some(info.clone());
                        certificates.insert(serial.as_slice(), encode_cert(&cert))?;
                        revoked_tree.insert(serial.as_slice(), &[] as &[u8])?;
                        revoked.push(cert);
                    }
                }
                if already && revoked.is_empty() {
                    return abort(RegistryError::IdentityRevoked(id.to_owned()));
                }
                if !already {
                    reg.revoked = Some(info.clone());
                    regs.insert(id.as_bytes(), encode_registration(&reg))?;
                }
                Ok(revoked)
            },
        );
        let revoked = finish(result)?;
        self.flush()?;
        Ok(revoked)
    }

    fn revoke_certificate(
        &self,
        serial: &[u8],
        info: &RevocationInfo,
    ) -> Result<IssuedCert, RegistryError> {
        let result = (&self.certificates, &self.revoked).transaction(|(certificates, revoked)| {
            let Some(bytes) = certificates.get(serial)? else {
                return abort(RegistryError::UnknownCertificate(hex::encode(serial)));
            };
            let mut cert =
                decode_cert(serial, &bytes).map_err(ConflictableTransactionError::Abort)?;
            if cert.revoked.is_some() {
                return abort(RegistryError::AlreadyRevoked(hex::encode(serial)));
            }
            cert.revoked = Some(info.clone());
            certificates.insert(serial, encode_cert(&cert))?;
            revoked.insert(serial, &[] as &[u8])?;
            Ok(cert)
        });
        let cert = finish(result)?;
        self.flush()?;
        Ok(cert)
    }

    fn revoked_certificates(&self) -> Result<Vec<IssuedCert>, RegistryError> {
        self.decode_certs(self.revoked.iter().keys().map(|k| k.map(|k| k.to_vec())))
    }

    fn next_crl_number(&self) -> Result<u64, RegistryError> {
        let mut bad = None;
        let next = self
            .meta
            .update_and_fetch(CRL_NUMBER, |old| {
                let old = match old {
                    None => 0,
                    Some(b) => match <[u8; 8]>::try_from(b) {
                        Ok(b) => u64::from_be_bytes(b),
                        Err(_) => {
                            bad = Some(b.len());
                            return old.map(<[u8]>::to_vec);
                        }
                    },
                };
                Some(old.saturating_add(1).to_be_bytes().to_vec())
            })
            .map_err(backend)?;
        if let Some(len) = bad {
            return Err(corrupt(CRL_NUMBER, format!("{len} bytes instead of 8")));
        }
        let next = next.ok_or_else(|| corrupt(CRL_NUMBER, "missing after update"))?;
        let bytes =
            <[u8; 8]>::try_from(next.as_ref()).map_err(|_| corrupt(CRL_NUMBER, "not 8 bytes"))?;
        self.flush()?;
        Ok(u64::from_be_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::run(&SledRegistry::open(&dir.path().join("db")).unwrap());
    }

    #[test]
    fn everything_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let r = SledRegistry::open(&path).unwrap();
            super::super::conformance::run(&r);
        }
        // sled's threads let go of the lock a moment after the registry is dropped.
        let r = (0..300)
            .find_map(|_| match SledRegistry::open(&path) {
                Err(e) if e.to_string().contains("acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    None
                }
                other => Some(other.unwrap()),
            })
            .expect("the registry stayed locked");
        assert_eq!(r.registrations(None, 10).unwrap().len(), 2);
        assert!(r.registration("alice").unwrap().unwrap().revoked.is_some());
        assert_eq!(r.revoked_certificates().unwrap().len(), 4);
        assert_eq!(r.certificates_of("alice").unwrap().len(), 3);
        assert_eq!(r.next_crl_number().unwrap(), 3);
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let r = SledRegistry::open(&dir.path().join("db")).unwrap();
        r.registrations.insert("mallory", b"{not json").unwrap();
        assert!(matches!(
            r.registration("mallory"),
            Err(RegistryError::Corrupt { .. })
        ));
        assert!(matches!(
            r.registrations(None, 10),
            Err(RegistryError::Corrupt { .. })
        ));
    }
}
