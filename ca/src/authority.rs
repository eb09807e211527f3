//! The issuing core of a certificate authority: a CA key and certificate that issue member
//! certificates (with a role OU and Fabric CA's attribute extension), intermediate CAs and CRLs.
//! It does no I/O; the CA server stores what it issues.

use std::collections::BTreeMap;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevocationReason, RevokedCertParams, SanType, SerialNumber, SignatureAlgorithm,
};
use time::OffsetDateTime;

use crate::crypto::{KeyAlgorithm, to_pem};
use crate::error::{Error, Result};
use crate::identity::{ATTRIBUTES_OID_ARCS, Role, encode_attributes};

/// A validity period, unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first second the certificate is valid.
    pub not_before: i64,
    /// The last second the certificate is valid.
    pub not_after: i64,
}

impl Validity {
    /// From `now` for `days` days.
    pub fn days_from(now: i64, days: i64) -> Self {
        Validity {
            not_before: now,
            not_after: now.saturating_add(days.saturating_mul(86_400)),
        }
    }

    fn dates(&self) -> Result<(OffsetDateTime, OffsetDateTime)> {
        let t = |s: i64| {
            OffsetDateTime::from_unix_timestamp(s)
                .map_err(|e| Error::Issue(format!("time {s} out of range: {e}")))
        };
        if self.not_after <= self.not_before {
            return Err(Error::Issue(format!(
                "validity ends ({}) before it starts ({})",
                self.not_after, self.not_before
            )));
        }
        Ok((t(self.not_before)?, t(self.not_after)?))
    }
}

/// A subject's public key: raw bytes (an uncompressed P-256 point or 32 Ed25519 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKey {
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// The raw public key.
    pub bytes: Vec<u8>,
}

impl PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bytes
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self.algorithm {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

/// What to put in a member certificate.
#[derive(Debug, Clone)]
pub struct MemberRequest {
    /// The enrollment id, as the subject's common name.
    pub common_name: String,
    /// The NodeOU role.
    pub role: Role,
    /// Attributes for attribute-based access in chaincode (`role=brand`, `shop=...`).
    pub attributes: BTreeMap<String, String>,
    /// The subject's key.
    pub key: SubjectKey,
    /// The validity period.
    pub validity: Validity,
    /// The serial number (at most 20 bytes; unique per CA).
    pub serial: Vec<u8>,
    /// DNS names and IP addresses for a TLS certificate; empty for an enrollment certificate.
    pub hosts: Vec<String>,
}

/// A revoked certificate, for a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The certificate's serial number.
    pub serial: Vec<u8>,
    /// When it was revoked, unix seconds.
    pub revoked_at: i64,
}

/// A CA: its certificate and signing key.
pub struct Authority {
    organization: String,
    certificate: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("organization", &self.organization)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Creates a self-signed root CA with a new P-256 key.
    pub fn new_root(common_name: &str, organization: &str, validity: Validity) -> Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(issue_err)?;
        let params = ca_params(common_name, organization, validity)?;
        let certificate = params.self_signed(&key).map_err(issue_err)?;
        Ok(Authority {
            organization: organization.to_owned(),
            certificate,
            issuer: Issuer::new(params, key),
        })
    }

    /// Creates an intermediate CA signed by this one, with a new P-256 key.
    pub fn new_intermediate(&self, common_name: &str, validity: Validity) -> Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(issue_err)?;
        let params = ca_params(common_name, &self.organization, validity)?;
        let certificate = params.signed_by(&key, &self.issuer).map_err(issue_err)?;
        Ok(Authority {
            organization: self.organization.clone(),
            certificate,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        self.certificate.der()
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> String {
        to_pem("CERTIFICATE", self.certificate.der())
    }

    /// The CA's private key, PKCS#8 DER (to be stored 0600 by the CA server).
    pub fn key_pkcs8_der(&self) -> Vec<u8> {
        self.issuer.key().serialize_der()
    }

    /// Issues a member certificate; returns its DER.
    pub fn issue(&self, req: &MemberRequest) -> Result<Vec<u8>> {
        if req.serial.is_empty() || req.serial.len() > 20 {
            return Err(Error::Issue(format!(
                "serial of {} bytes (1 to 20 allowed)",
                req.serial.len()
            )));
        }
        let (not_before, not_after) = req.validity.dates()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, req.common_name.as_str());
        dn.push(DnType::OrganizationName, self.organization.as_str());
        dn.push(DnType::OrganizationalUnitName, req.role.as_str());
        params.distinguished_name = dn;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from_slice(&req.serial));
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        if req.hosts.is_empty() {
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        } else {
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            for host in &req.hosts {
                params.subject_alt_names.push(match host.parse() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(
                        host.clone()
                            .try_into()
                            .map_err(|_| Error::Issue(format!("bad host name {host:?}")))?,
                    ),
                });
            }
        }
        if !req.attributes.is_empty() {
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    ATTRIBUTES_OID_ARCS,
                    encode_attributes(&req.attributes),
                ));
        }
        let cert = params
            .signed_by(&req.key, &self.issuer)
            .map_err(issue_err)?;
        Ok(cert.der().to_vec())
    }

    /// Issues a signed CRL listing `revoked`.
    pub fn crl(
        &self,
        revoked: &[Revocation],
        number: u64,
        this_update: i64,
        next_update: i64,
    ) -> Result<Vec<u8>> {
        let (this_update, next_update) = Validity {
            not_before: this_update,
            not_after: next_update,
        }
        .dates()?;
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_at)
                        .map_err(|e| Error::Issue(format!("revocation time: {e}")))?,
                    reason_code: Some(RevocationReason::Unspecified),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).map_err(issue_err)?;
        Ok(crl.der().to_vec())
    }
}

fn ca_params(
    common_name: &str,
    organization: &str,
    validity: Validity,
) -> Result<CertificateParams> {
    let (not_before, not_after) = validity.dates()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, organization);
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn issue_err(e: rcgen::Error) -> Error {
    Error::Issue(e.to_string())
}
