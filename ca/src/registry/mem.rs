//! An in-memory [`Registry`], for tests and tools: the same behaviour as the sled one, lost on
//! drop.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{IssuedCert, Registration, Registry, RevocationInfo, check_enrollment_left, check_id};
use crate::error::RegistryError;

/// A registry held in memory.
#[derive(Debug, Default)]
pub struct MemRegistry {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    registrations: BTreeMap<String, Registration>,
    certificates: BTreeMap<Vec<u8>, IssuedCert>,
    crl_number: u64,
}

impl MemRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave a half-applied change: every method
        // checks everything before it changes anything.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Registry for MemRegistry {
    fn register(&self, registration: &Registration) -> Result<(), RegistryError> {
        check_id(&registration.id)?;
        let mut state = self.state();
        if state.registrations.contains_key(&registration.id) {
            return Err(RegistryError::Duplicate(registration.id.clone()));
        }
        state
            .registrations
            .insert(registration.id.clone(), registration.clone());
        Ok(())
    }

    fn registration(&self, id: &str) -> Result<Option<Registration>, RegistryError> {
        Ok(self.state().registrations.get(id).cloned())
    }

    fn registrations(
        &self,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Registration>, RegistryError> {
        let state = self.state();
        Ok(state
            .registrations
            .values()
            .filter(|r| start_after.is_none_or(|after| r.id.as_str() > after))
            .take(limit)
            .cloned()
            .collect())
    }

    fn record_issue(
        &self,
        id: &str,
        uses_enrollment: bool,
        certs: &[IssuedCert],
    ) -> Result<(), RegistryError> {
        let mut state = self.state();
        let reg = state
            .registrations
            .get(id)
            .ok_or_else(|| RegistryError::UnknownIdentity(id.to_owned()))?;
        if reg.revoked.is_some() {
            return Err(RegistryError::IdentityRevoked(id.to_owned()));
        }
        if uses_enrollment {
            check_enrollment_left(reg)?;
        }
        for (i, cert) in certs.iter().enumerate() {
            if state.certificates.contains_key(&cert.serial)
                || certs[..i].iter().any(|c| c.serial == cert.serial)
            {
                return Err(RegistryError::SerialInUse(cert.serial_hex()));
            }
        }
        if uses_enrollment && let Some(reg) = state.registrations.get_mut(id) {
            reg.enrollments = reg.enrollments.saturating_add(1);
        }
        for cert in certs {
            state.certificates.insert(cert.serial.clone(), cert.clone());
        }
        Ok(())
    }

    fn certificate(&self, serial: &[u8]) -> Result<Option<IssuedCert>, RegistryError> {
        Ok(self.state().certificates.get(serial).cloned())
    }

    fn certificates_of(&self, id: &str) -> Result<Vec<IssuedCert>, RegistryError> {
        Ok(self
            .state()
            .certificates
            .values()
            .filter(|c| c.enrollment_id == id)
            .cloned()
            .collect())
    }

    fn revoke_identity(
        &self,
        id: &str,
        info: &RevocationInfo,
    ) -> Result<Vec<IssuedCert>, RegistryError> {
        let mut state = self.state();
        let reg = state
            .registrations
            .get(id)
            .ok_or_else(|| RegistryError::UnknownIdentity(id.to_owned()))?;
        let already = reg.revoked.is_some();
        let mut revoked = Vec::new();
        for cert in state.certificates.values_mut() {
            if cert.enrollment_id == id && cert.revoked.is_none() {
                cert.revoked = Some(info.clone());
                revoked.push(cert.clone());
            }
        }
        if already && revoked.is_empty() {
            return Err(RegistryError::IdentityRevoked(id.to_owned()));
        }
        if let Some(reg) = state.registrations.get_mut(id)
            && reg.revoked.is_none()
        {
            reg.revoked = Some(info.clone());
        }
        Ok(revoked)
    }

    fn revoke_certificate(
        &self,
        serial: &[u8],
        info: &RevocationInfo,
    ) -> Result<IssuedCert, RegistryError> {
        let mut state = self.state();
        let cert = state
            .certificates
            .get_mut(serial)
            .ok_or_else(|| RegistryError::UnknownCertificate(hex::encode(serial)))?;
        if cert.revoked.is_some() {
            return Err(RegistryError::AlreadyRevoked(hex::encode(serial)));
        }
        cert.revoked = Some(info.clone());
        Ok(cert.clone())
    }

    fn revoked_certificates(&self) -> Result<Vec<IssuedCert>, RegistryError> {
        Ok(self
            .state()
            .certificates
            .values()
            .filter(|c| c.revoked.is_some())
            .cloned()
            .collect())
    }

    fn next_crl_number(&self) -> Result<u64, RegistryError> {
        let mut state = self.state();
        state.crl_number = state.crl_number.saturating_add(1);
        Ok(state.crl_number)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance::run(&super::MemRegistry::new());
    }
}
