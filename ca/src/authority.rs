//! The issuing core of a certificate authority: a CA key and certificate that issue member
//! certificates (with a role OU and Fabric CA's attribute extension), TLS certificates,
//! intermediate CAs and CRLs. It does no I/O; the CA server stores what it issues.

use std::collections::BTreeMap;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevokedCertParams, SanType, SerialNumber, SignatureAlgorithm,
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

/// What to put in a TLS certificate: a server and client certificate for the listed hosts.
#[derive(Debug, Clone)]
pub struct TlsRequest {
    /// The subject's common name.
    pub common_name: String,
    /// The holder's NodeOU role, as an OU (none for the CA's own server certificate).
    pub role: Option<Role>,
    /// The subject's key.
    pub key: SubjectKey,
    /// The validity period.
    pub validity: Validity,
    /// The serial number (at most 20 bytes; unique per CA).
    pub serial: Vec<u8>,
    /// DNS names and IP addresses for the subject alternative names; may be empty for a
    /// certificate that only authenticates a client.
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

/// Why a certificate was revoked: RFC 5280's reason codes, without `certificateHold` and
/// `removeFromCRL` (a revocation is final).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RevocationReason {
    /// No reason given (not written into the CRL, as RFC 5280 recommends).
    Unspecified,
    /// The holder's private key was compromised.
    KeyCompromise,
    /// The issuing CA's key was compromised.
    CaCompromise,
    /// The holder changed affiliation.
    AffiliationChanged,
    /// The certificate was replaced.
    Superseded,
    /// The holder stopped operating.
    CessationOfOperation,
    /// The holder lost a privilege the certificate expressed.
    PrivilegeWithdrawn,
    /// The attribute authority was compromised.
    AaCompromise,
}

impl RevocationReason {
    /// Every reason, in code order.
    pub const ALL: [RevocationReason; 8] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise,
    ];

    /// The RFC 5280 reason code.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    /// The reason with this RFC 5280 code, if Mercato supports it.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The reason's name as the CLI writes it (`keycompromise`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keycompromise",
            RevocationReason::CaCompromise => "cacompromise",
            RevocationReason::AffiliationChanged => "affiliationchanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationofoperation",
            RevocationReason::PrivilegeWithdrawn => "privilegewithdrawn",
            RevocationReason::AaCompromise => "aacompromise",
        }
    }

    fn to_rcgen(self) -> Option<rcgen::RevocationReason> {
        use rcgen::RevocationReason as R;
        match self {
            RevocationReason::Unspecified => None,
            RevocationReason::KeyCompromise => Some(R::KeyCompromise),
            RevocationReason::CaCompromise => Some(R::CaCompromise),
            RevocationReason::AffiliationChanged => Some(R::AffiliationChanged),
            RevocationReason::Superseded => Some(R::Superseded),
            RevocationReason::CessationOfOperation => Some(R::CessationOfOperation),
            RevocationReason::PrivilegeWithdrawn => Some(R::PrivilegeWithdrawn),
            RevocationReason::AaCompromise => Some(R::AaCompromise),
        }
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RevocationReason {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let wanted: String = s
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .collect::<String>()
            .to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == wanted)
            .ok_or_else(|| Error::Issue(format!("unknown revocation reason {s:?}")))
    }
}

/// A revoked certificate with its reason, for a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlEntry {
    /// The certificate's serial number.
    pub serial: Vec<u8>,
    /// When it was revoked, unix seconds.
    pub revoked_at: i64,
    /// Why.
    pub reason: RevocationReason,
}

/// A CA: its certificate and signing key.
pub struct Authority {
    organization: String,
    common_name: String,
    certificate: Vec<u8>,
    not_after: i64,
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
            common_name: common_name.to_owned(),
            certificate: certificate.der().to_vec(),
            not_after: validity.not_after,
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
            common_name: common_name.to_owned(),
            certificate: certificate.der().to_vec(),
            not_after: validity.not_after,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate (DER) and its P-256 private key (PKCS#8 DER), as the CA
    /// server stores them. The certificate must be a CA certificate for that key.
    pub fn load(certificate_der: &[u8], key_pkcs8_der: &[u8]) -> Result<Self> {
        let (rest, cert) = x509_parser::parse_x509_certificate(certificate_der)
            .map_err(|e| Error::Certificate(format!("cannot parse the CA certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(Error::Certificate(
                "trailing bytes after the CA certificate".into(),
            ));
        }
        if !cert.is_ca() {
            return Err(Error::Certificate(
                "the certificate is not a CA certificate".into(),
            ));
        }
        let key = KeyPair::try_from(key_pkcs8_der)
            .map_err(|e| Error::Key(format!("cannot load the CA key: {e}")))?;
        if !key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            return Err(Error::UnsupportedKey("a CA key must be ECDSA P-256".into()));
        }
        if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(Error::Key(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        let text = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
            it.next()
                .and_then(|a| a.as_str().ok())
                .map(str::to_owned)
                .unwrap_or_default()
        };
        let organization = text(&mut cert.subject().iter_organization());
        let common_name = text(&mut cert.subject().iter_common_name());
        let not_after = cert.validity().not_after.timestamp();
        let issuer = Issuer::from_ca_cert_der(
            &rustls::pki_types::CertificateDer::from(certificate_der),
            key,
        )
        .map_err(issue_err)?;
        Ok(Authority {
            organization,
            common_name,
            certificate: certificate_der.to_vec(),
            not_after,
            issuer,
        })
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> String {
        to_pem("CERTIFICATE", &self.certificate)
    }

    /// The organisation (the subject's O) the CA issues for.
    pub fn organization(&self) -> &str {
        &self.organization
    }

    /// The CA certificate's common name.
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The last second the CA certificate is valid, unix seconds. Nothing it issues should
    /// outlive it.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The CA's private key, PKCS#8 DER (to be stored 0600 by the CA server).
    pub fn key_pkcs8_der(&self) -> Vec<u8> {
        self.issuer.key().serialize_der()
    }

    /// Issues a member certificate; returns its DER. With `hosts` it is a TLS certificate for
    /// them (see [`Authority::issue_tls`]); without, an enrollment certificate that only signs.
    pub fn issue(&self, req: &MemberRequest) -> Result<Vec<u8>> {
        let tls = !req.hosts.is_empty();
        let params = leaf_params(
            &req.common_name,
            &self.organization,
            Some(req.role),
            &req.serial,
            req.validity,
            tls,
            &req.hosts,
        )?;
        let mut params = params;
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

    /// Issues a TLS certificate (server and client authentication) for the request's hosts;
    /// returns its DER.
    pub fn issue_tls(&self, req: &TlsRequest) -> Result<Vec<u8>> {
        let params = leaf_params(
            &req.common_name,
            &self.organization,
            req.role,
            &req.serial,
            req.validity,
            true,
            &req.hosts,
        )?;
        let cert = params
            .signed_by(&req.key, &self.issuer)
            .map_err(issue_err)?;
        Ok(cert.der().to_vec())
    }

    /// Issues an intermediate CA certificate for `key` (which must be P-256, as every Mercato CA
    /// key is); returns its DER.
    pub fn issue_intermediate(
        &self,
        common_name: &str,
        key: &SubjectKey,
        validity: Validity,
        serial: &[u8],
    ) -> Result<Vec<u8>> {
        if key.algorithm != KeyAlgorithm::EcdsaP256 {
            return Err(Error::UnsupportedKey(format!(
                "an intermediate CA key must be ECDSA P-256, not {}",
                key.algorithm
            )));
        }
        check_serial(serial)?;
        let mut params = ca_params(common_name, &self.organization, validity)?;
        params.serial_number = Some(SerialNumber::from_slice(serial));
        let cert = params.signed_by(key, &self.issuer).map_err(issue_err)?;
        Ok(cert.der().to_vec())
    }

    /// Issues a signed CRL listing `revoked` (without reasons).
    pub fn crl(
        &self,
        revoked: &[Revocation],
        number: u64,
        this_update: i64,
        next_update: i64,
    ) -> Result<Vec<u8>> {
        let entries: Vec<CrlEntry> = revoked
            .iter()
            .map(|r| CrlEntry {
                serial: r.serial.clone(),
                revoked_at: r.revoked_at,
                reason: RevocationReason::Unspecified,
            })
            .collect();
        self.crl_with_reasons(&entries, number, this_update, next_update)
    }

    /// Issues a signed CRL listing `revoked` with their reasons.
    pub fn crl_with_reasons(
        &self,
        revoked: &[CrlEntry],
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
                check_serial(&r.serial)?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_at)
                        .map_err(|e| Error::Issue(format!("revocation time: {e}")))?,
                    reason_code: r.reason.to_rcgen(),
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

fn check_serial(serial: &[u8]) -> Result<()> {
    if serial.is_empty() || serial.len() > 20 {
        return Err(Error::Issue(format!(
            "serial of {} bytes (1 to 20 allowed)",
            serial.len()
        )));
    }
    Ok(())
}

/// The parameters of a leaf certificate: an enrollment certificate (signing only) or, with
/// `tls`, a TLS certificate for `hosts`.
fn leaf_params(
    common_name: &str,
    organization: &str,
    role: Option<Role>,
    serial: &[u8],
    validity: Validity,
    tls: bool,
    hosts: &[String],
) -> Result<CertificateParams> {
    check_serial(serial)?;
    let (not_before, not_after) = validity.dates()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, organization);
    if let Some(role) = role {
        dn.push(DnType::OrganizationalUnitName, role.as_str());
    }
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(SerialNumber::from_slice(serial));
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    if !tls {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        return Ok(params);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    for host in hosts {
        params.subject_alt_names.push(match host.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.clone()
                    .try_into()
                    .map_err(|_| Error::Issue(format!("bad host name {host:?}")))?,
            ),
        });
    }
    Ok(params)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SigningKey;
    use crate::msp::{Msp, MspMaterial};

    const NOW: i64 = 1_800_000_000;

    fn member(key: &SigningKey, serial: u8) -> MemberRequest {
        MemberRequest {
            common_name: "alice".into(),
            role: Role::Client,
            attributes: BTreeMap::new(),
            key: SubjectKey {
                algorithm: key.algorithm(),
                bytes: key.public_key_bytes().to_vec(),
            },
            validity: Validity::days_from(NOW, 30),
            serial: vec![serial],
            hosts: Vec::new(),
        }
    }

    #[test]
    fn a_loaded_authority_issues_what_the_original_msp_accepts() {
        let root = Authority::new_root("ca.org1", "Org1", Validity::days_from(NOW, 365)).unwrap();
        let loaded = Authority::load(root.certificate_der(), &root.key_pkcs8_der()).unwrap();
        assert_eq!(loaded.organization(), "Org1");
        assert_eq!(loaded.common_name(), "ca.org1");
        assert_eq!(loaded.not_after(), root.not_after());
        let (key, _) = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let der = loaded.issue(&member(&key, 7)).unwrap();
        let msp = Msp::new(
            "Org1MSP",
            MspMaterial {
                root_certs: vec![root.certificate_der().to_vec()],
                ..MspMaterial::default()
            },
        )
        .unwrap();
        let pem = to_pem("CERTIFICATE", &der);
        let id = msp.validate(pem.as_bytes(), b"").unwrap();
        assert_eq!(id.role(), Role::Client);
        assert_eq!(id.serial(), "07");
    }

    #[test]
    fn loading_refuses_a_wrong_key_or_a_leaf() {
        let root = Authority::new_root("ca", "O", Validity::days_from(NOW, 365)).unwrap();
        let other = Authority::new_root("ca2", "O", Validity::days_from(NOW, 365)).unwrap();
        assert!(Authority::load(root.certificate_der(), &other.key_pkcs8_der()).is_err());
        let (key, pkcs8) = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let leaf = root.issue(&member(&key, 1)).unwrap();
        assert!(Authority::load(&leaf, &pkcs8).is_err());
        assert!(Authority::load(b"garbage", &root.key_pkcs8_der()).is_err());
    }

    #[test]
    fn tls_and_intermediate_certificates() {
        let root = Authority::new_root("ca", "O", Validity::days_from(NOW, 365)).unwrap();
        let (key, _) = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let subject = SubjectKey {
            algorithm: KeyAlgorithm::EcdsaP256,
            bytes: key.public_key_bytes().to_vec(),
        };
        let tls = root
            .issue_tls(&TlsRequest {
                common_name: "peer0".into(),
                role: None,
                key: subject.clone(),
                validity: Validity::days_from(NOW, 30),
                serial: vec![2],
                hosts: vec!["peer0.example.com".into(), "10.0.0.1".into()],
            })
            .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&tls).unwrap();
        assert_eq!(cert.subject().iter_organizational_unit().count(), 0);
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(sans.value.general_names.len(), 2);
        let ica = root
            .issue_intermediate("ica", &subject, Validity::days_from(NOW, 30), &[3])
            .unwrap();
        let (_, ica_cert) = x509_parser::parse_x509_certificate(&ica).unwrap();
        assert!(ica_cert.is_ca());
        let (ed, _) = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let ed_key = SubjectKey {
            algorithm: KeyAlgorithm::Ed25519,
            bytes: ed.public_key_bytes().to_vec(),
        };
        assert!(
            root.issue_intermediate("ica", &ed_key, Validity::days_from(NOW, 30), &[4])
                .is_err()
        );
    }

    #[test]
    fn revocation_reasons_round_trip_through_code_and_name() {
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_code(r.code()), Some(r));
            assert_eq!(r.as_str().parse::<RevocationReason>().unwrap(), r);
        }
        assert_eq!(
            "Key-Compromise".parse::<RevocationReason>().unwrap(),
            RevocationReason::KeyCompromise
        );
        assert!(RevocationReason::from_code(6).is_none());
        assert!("hold".parse::<RevocationReason>().is_err());
    }
}
