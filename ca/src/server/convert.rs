//! Wire ⇄ domain: the one place where the CA server reads `mercato.*` protobuf messages into its
//! own request types (refusing missing and oversized fields) and writes its answers back.

use std::collections::BTreeMap;

use mercato_proto::pb::mercato as pb;
use prost::Message;

use crate::authority::RevocationReason;
use crate::error::CaError;
use crate::identity::Role;
use crate::registry::{IssuedCert, Registration};
use crate::server::core::{
    CaInfo, CertRequest, Crls, EnrollRequest, Enrollment, ListRequest, Listing, Profile,
    RegisterRequest, RevokeOutcome, RevokeRequest, RevokeTarget, SignedEnvelope,
};

/// The largest caller certificate accepted in a signed request, bytes.
const MAX_CALLER_CERT_BYTES: usize = 16 * 1024;
/// The largest signature accepted, bytes (a DER P-256 signature is at most 72).
const MAX_SIGNATURE_BYTES: usize = 512;
/// The nonce's length bounds, bytes.
const NONCE_BYTES: std::ops::RangeInclusive<usize> = 16..=64;

/// The body of a signed request, decoded.
#[derive(Debug, Clone)]
pub enum Body {
    /// `Register`.
    Register(RegisterRequest),
    /// `Reenroll`.
    Reenroll(CertRequest),
    /// `Revoke`.
    Revoke(RevokeRequest),
    /// `GenCrl`.
    GenCrl,
    /// `ListIdentities`.
    List(ListRequest),
}

impl Body {
    /// The body's name, as the proto's oneof names it.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Register(_) => "register",
            Body::Reenroll(_) => "reenroll",
            Body::Revoke(_) => "revoke",
            Body::GenCrl => "gen_crl",
            Body::List(_) => "list_identities",
        }
    }
}

fn invalid(what: impl Into<String>) -> CaError {
    CaError::InvalidRequest(what.into())
}

fn profile(value: i32) -> Result<Profile, CaError> {
    match pb::Profile::try_from(value) {
        Ok(pb::Profile::Enrollment) => Ok(Profile::Enrollment),
        Ok(pb::Profile::IntermediateCa) => Ok(Profile::IntermediateCa),
        Err(_) => Err(invalid(format!("unknown profile {value}"))),
    }
}

fn cert_request(req: Option<pb::CertificateRequest>) -> Result<CertRequest, CaError> {
    let req = req.ok_or_else(|| invalid("the certificate request is missing"))?;
    if req.csr.is_empty() {
        return Err(invalid("the CSR is missing"));
    }
    Ok(CertRequest {
        csr: req.csr,
        tls_csr: (!req.tls_csr.is_empty()).then_some(req.tls_csr),
        hosts: req.hosts,
        profile: profile(req.profile)?,
    })
}

impl TryFrom<pb::EnrollRequest> for EnrollRequest {
    type Error = CaError;
    fn try_from(req: pb::EnrollRequest) -> Result<Self, CaError> {
        if req.enrollment_id.is_empty() {
            return Err(invalid("the enrollment id is missing"));
        }
        Ok(EnrollRequest {
            id: req.enrollment_id,
            secret: req.secret,
            request: cert_request(req.request)?,
        })
    }
}

fn reason(value: i32) -> Result<RevocationReason, CaError> {
    u8::try_from(value)
        .ok()
        .and_then(RevocationReason::from_code)
        .ok_or_else(|| invalid(format!("unknown revocation reason {value}")))
}

fn reason_code(reason: RevocationReason) -> i32 {
    i32::from(reason.code())
}

fn attributes(list: Vec<pb::Attribute>) -> Result<BTreeMap<String, String>, CaError> {
    let mut out = BTreeMap::new();
    for a in list {
        if out.contains_key(&a.name) {
            return Err(invalid(format!("attribute {} is given twice", a.name)));
        }
        out.insert(a.name, a.value);
    }
    Ok(out)
}

fn body(body: pb::authenticated_request::Body) -> Result<Body, CaError> {
    use pb::authenticated_request::Body as B;
    Ok(match body {
        B::Register(r) => Body::Register(RegisterRequest {
            id: r.enrollment_id,
            secret: (!r.secret.is_empty()).then_some(r.secret),
            role: r.r#type.parse::<Role>().map_err(|_| {
                invalid(format!(
                    "unknown type {:?} (client, peer, orderer, admin or auditor)",
                    r.r#type
                ))
            })?,
            affiliation: (!r.affiliation.is_empty()).then_some(r.affiliation),
            attributes: attributes(r.attributes)?,
            max_enrollments: r.max_enrollments,
        }),
        B::Reenroll(r) => Body::Reenroll(cert_request(r.request)?),
        B::Revoke(r) => {
            let target = match (r.enrollment_id.is_empty(), r.serial.is_empty()) {
                (false, true) => RevokeTarget::Identity(r.enrollment_id),
                (true, false) => {
                    let serial = hex::decode(r.serial.trim_start_matches("0x"))
                        .map_err(|_| invalid(format!("serial {:?} is not hex", r.serial)))?;
                    if serial.is_empty() || serial.len() > 20 {
                        return Err(invalid("a serial has 1 to 20 bytes"));
                    }
                    RevokeTarget::Serial(serial)
                }
                _ => {
                    return Err(invalid(
                        "a revocation names exactly one of an enrollment id and a serial",
                    ));
                }
            };
            Body::Revoke(RevokeRequest {
                target,
                reason: reason(r.reason)?,
                gen_crl: r.gen_crl,
            })
        }
        B::GenCrl(_) => Body::GenCrl,
        B::ListIdentities(r) => Body::List(ListRequest {
            page_size: usize::try_from(r.page_size).unwrap_or(usize::MAX),
            start_after: (!r.start_after.is_empty()).then_some(r.start_after),
        }),
    })
}

/// Decodes a signed request into its authentication envelope and its body. The body's kind is
/// checked against the method called, so that a request signed for one method cannot be sent
/// to another.
pub fn signed(
    req: pb::SignedRequest,
    method: &'static str,
) -> Result<(SignedEnvelope, Body), CaError> {
    let inner = pb::AuthenticatedRequest::decode(req.request.as_slice())
        .map_err(|e| invalid(format!("the signed request does not decode: {e}")))?;
    if inner.certificate.is_empty() || inner.certificate.len() > MAX_CALLER_CERT_BYTES {
        return Err(invalid(format!(
            "the caller's certificate has {} bytes (1 to {MAX_CALLER_CERT_BYTES} allowed)",
            inner.certificate.len()
        )));
    }
    if req.signature.is_empty() || req.signature.len() > MAX_SIGNATURE_BYTES {
        return Err(invalid(format!(
            "the signature has {} bytes (1 to {MAX_SIGNATURE_BYTES} allowed)",
            req.signature.len()
        )));
    }
    if !NONCE_BYTES.contains(&inner.nonce.len()) {
        return Err(invalid(format!(
            "the nonce has {} bytes ({} to {} required)",
            inner.nonce.len(),
            NONCE_BYTES.start(),
            NONCE_BYTES.end()
        )));
    }
    let body = body(
        inner
            .body
            .ok_or_else(|| invalid("the signed request has no body"))?,
    )?;
    if body.name() != method {
        return Err(invalid(format!(
            "this call takes a {method} body, and the request carries {}",
            body.name()
        )));
    }
    Ok((
        SignedEnvelope {
            signature: req.signature,
            certificate: inner.certificate,
            timestamp: inner.timestamp,
            request: req.request,
        },
        body,
    ))
}

/// The CA's description on the wire.
pub fn ca_info(info: CaInfo) -> pb::GetCaInfoResponse {
    pb::GetCaInfoResponse {
        ca_name: info.ca_name,
        msp_id: info.msp_id,
        ca_chain: info.ca_chain,
        tls_root_certs: info.tls_roots,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// An enrollment's answer on the wire.
pub fn enrollment(e: Enrollment) -> pb::EnrollResponse {
    let (tls_certificate, tls_serial) = e.tls.unwrap_or_default();
    pb::EnrollResponse {
        certificate: e.certificate,
        serial: e.serial,
        ca_chain: e.ca_chain,
        tls_certificate,
        tls_serial,
        tls_root_certs: e.tls_roots,
    }
}

/// A revocation's answer on the wire.
pub fn revoke_outcome(o: RevokeOutcome) -> pb::RevokeResponse {
    pb::RevokeResponse {
        revoked_serials: o.revoked,
        crl: o.crl.unwrap_or_default(),
    }
}

/// CRLs on the wire.
pub fn crls(c: Crls) -> pb::GenCrlResponse {
    pb::GenCrlResponse {
        crl: c.crl,
        tls_crl: c.tls_crl,
        crl_number: c.number,
    }
}

fn certificate_info(c: &IssuedCert) -> pb::CertificateInfo {
    pb::CertificateInfo {
        serial: c.serial_hex(),
        kind: c.kind.as_str().to_owned(),
        not_before: c.not_before,
        not_after: c.not_after,
        revoked: c.revoked.is_some(),
        revocation_reason: c.revoked.as_ref().map_or(0, |r| reason_code(r.reason)),
    }
}

fn identity_info(reg: &Registration, certs: &[IssuedCert]) -> pb::IdentityInfo {
    // The secret hash is deliberately not part of the answer.
    pb::IdentityInfo {
        enrollment_id: reg.id.clone(),
        r#type: reg.role.as_str().to_owned(),
        affiliation: reg.affiliation.clone(),
        attributes: reg
            .attributes
            .iter()
            .map(|(name, value)| pb::Attribute {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        max_enrollments: reg
            .max_enrollments
            .map_or(-1, |m| i32::try_from(m).unwrap_or(i32::MAX)),
        enrollments: reg.enrollments,
        revoked: reg.revoked.is_some(),
        certificates: certs.iter().map(certificate_info).collect(),
    }
}

/// A listing on the wire.
pub fn listing(l: Listing) -> pb::ListIdentitiesResponse {
    pb::ListIdentitiesResponse {
        identities: l
            .identities
            .iter()
            .map(|(reg, certs)| identity_info(reg, certs))
            .collect(),
        next_start_after: l.next_start_after.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_with(
        body: Option<pb::authenticated_request::Body>,
        nonce: usize,
    ) -> pb::SignedRequest {
        pb::SignedRequest {
            request: pb::AuthenticatedRequest {
                certificate: vec![0x30; 10],
                timestamp: 5,
                nonce: vec![7; nonce],
                body,
            }
            .encode_to_vec(),
            signature: vec![1; 64],
        }
    }

    #[test]
    fn a_body_must_match_its_method() {
        let req = signed_with(
            Some(pb::authenticated_request::Body::GenCrl(
                pb::GenCrlRequest {},
            )),
            16,
        );
        let (env, body) = signed(req.clone(), "gen_crl").unwrap();
        assert!(matches!(body, Body::GenCrl));
        assert_eq!(env.timestamp, 5);
        assert!(matches!(
            signed(req, "revoke"),
            Err(CaError::InvalidRequest(_))
        ));
    }

    #[test]
    fn missing_and_malformed_fields_are_refused() {
        assert!(signed(signed_with(None, 16), "gen_crl").is_err());
        let gen_crl = Some(pb::authenticated_request::Body::GenCrl(
            pb::GenCrlRequest {},
        ));
        assert!(signed(signed_with(gen_crl.clone(), 3), "gen_crl").is_err());
        let garbage = pb::SignedRequest {
            request: vec![0xff; 20],
            signature: vec![1],
        };
        assert!(signed(garbage, "gen_crl").is_err());
        let revoke_both = Some(pb::authenticated_request::Body::Revoke(pb::RevokeRequest {
            enrollment_id: "a".into(),
            serial: "01".into(),
            ..Default::default()
        }));
        assert!(signed(signed_with(revoke_both, 16), "revoke").is_err());
        let bad_reason = Some(pb::authenticated_request::Body::Revoke(pb::RevokeRequest {
            enrollment_id: "a".into(),
            reason: 7,
            ..Default::default()
        }));
        assert!(signed(signed_with(bad_reason, 16), "revoke").is_err());
        let bad_type = Some(pb::authenticated_request::Body::Register(
            pb::RegisterRequest {
                enrollment_id: "a".into(),
                r#type: "wizard".into(),
                ..Default::default()
            },
        ));
        assert!(signed(signed_with(bad_type, 16), "register").is_err());
        assert!(EnrollRequest::try_from(pb::EnrollRequest::default()).is_err());
        assert!(
            EnrollRequest::try_from(pb::EnrollRequest {
                enrollment_id: "a".into(),
                secret: "s".into(),
                request: Some(pb::CertificateRequest {
                    csr: vec![1],
                    profile: 9,
                    ..Default::default()
                }),
            })
            .is_err()
        );
    }
}
