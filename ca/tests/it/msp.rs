//! MSP validation: what a member identity must be to be accepted, and every way it is refused.

use mercato_ca::authority::Validity;
use mercato_ca::crypto::to_pem;
use mercato_ca::msp::MspMaterial;
use mercato_ca::{Error, KeyAlgorithm, Msp, MspManager, Role, SigningIdentity};
use mercato_proto::Signer;
use mercato_proto::identity::serialize_identity;

use crate::fixture::{DAY, MemberSpec, NOW, Org};

fn manager(orgs: &[&Org]) -> MspManager {
    MspManager::new(orgs.iter().map(|o| o.msp()))
}

#[test]
fn valid_members_of_each_role_and_algorithm_are_accepted() {
    let org = Org::new("Brand1MSP");
    let mgr = manager(&[&org]);
    for role in Role::ALL {
        for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let m = org.member(MemberSpec {
                algorithm,
                ..MemberSpec::new("someone", role)
            });
            let msg = b"an envelope payload";
            let sig = m.signer.sign(msg).unwrap();
            let id = mgr.verify(m.signer.creator(), msg, &sig).unwrap();
            assert_eq!(id.msp_id(), "Brand1MSP");
            assert_eq!(id.role(), role);
            assert_eq!(id.is_admin(), role == Role::Admin);
            assert_eq!(id.common_name(), "someone");
            id.check_valid_at(NOW).unwrap();
            // A signature over other bytes fails.
            assert!(matches!(
                id.verify(b"other bytes", &sig),
                Err(Error::BadSignature(_))
            ));
        }
    }
}

#[test]
fn attributes_are_read_from_the_certificate() {
    let org = Org::new("Brand1MSP");
    let m = org.member(MemberSpec {
        attributes: &[("role", "brand"), ("shop", "acme-shop")],
        ..MemberSpec::new("acme", Role::Client)
    });
    let id = manager(&[&org]).identity(m.signer.creator()).unwrap();
    assert_eq!(id.attribute("role"), Some("brand"));
    assert_eq!(id.attribute("shop"), Some("acme-shop"));
    assert_eq!(id.attribute("missing"), None);
}

#[test]
fn members_issued_by_an_intermediate_chain_to_the_root() {
    let org = Org::with_intermediate("SellersMSP");
    let m = org.simple("alice", Role::Client);
    manager(&[&org]).identity(m.signer.creator()).unwrap();
    // Without the intermediate in the MSP, the chain does not reach the root.
    let msp = Msp::new(
        "SellersMSP",
        MspMaterial {
            root_certs: vec![org.root.certificate_der().to_vec()],
            ..MspMaterial::default()
        },
    )
    .unwrap();
    let err = MspManager::new([msp])
        .identity(m.signer.creator())
        .unwrap_err();
    assert!(matches!(err, Error::Untrusted { .. }), "{err}");
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused_at_a_time() {
    let org = Org::new("Brand1MSP");
    let mgr = manager(&[&org]);
    let expired = org.member(MemberSpec {
        validity: Validity {
            not_before: NOW - 30 * DAY,
            not_after: NOW - DAY,
        },
        ..MemberSpec::new("old", Role::Client)
    });
    let future = org.member(MemberSpec {
        validity: Validity {
            not_before: NOW + DAY,
            not_after: NOW + 30 * DAY,
        },
        ..MemberSpec::new("early", Role::Client)
    });
    for m in [&expired, &future] {
        let err = mgr.identity_at(m.signer.creator(), NOW).unwrap_err();
        assert!(matches!(err, Error::Expired { at: NOW, .. }), "{err}");
    }
    // The chain itself is fine: block validation, which reads no clock, still knows who it is.
    assert_eq!(
        mgr.identity(expired.signer.creator())
            .unwrap()
            .common_name(),
        "old"
    );
    mgr.identity_at(expired.signer.creator(), NOW - 2 * DAY)
        .unwrap();
}

#[test]
fn revoked_certificate_is_refused() {
    let org = Org::with_intermediate("Brand1MSP");
    let bad = org.simple("mallory", Role::Client);
    let good = org.simple("bob", Role::Client);
    let mut material = org.material();
    material.crls = vec![org.crl(&[&bad.serial])];
    let mgr = MspManager::new([Msp::new("Brand1MSP", material).unwrap()]);
    let err = mgr.identity(bad.signer.creator()).unwrap_err();
    assert!(
        matches!(&err, Error::Revoked { serial, .. } if *serial == hex::encode(&bad.serial)),
        "{err}"
    );
    mgr.identity(good.signer.creator()).unwrap();
}

#[test]
fn revoked_intermediate_revokes_its_members() {
    let org = Org::with_intermediate("Brand1MSP");
    let m = org.simple("carol", Role::Peer);
    let ica = org.intermediate.as_ref().unwrap();
    let (_, ica_cert) = x509_parser::parse_x509_certificate(ica.certificate_der()).unwrap();
    let mut material = org.material();
    material.crls = vec![
        org.root
            .crl(
                &[mercato_ca::authority::Revocation {
                    serial: ica_cert.raw_serial().to_vec(),
                    revoked_at: NOW,
                }],
                1,
                NOW,
                NOW + DAY,
            )
            .unwrap(),
    ];
    let mgr = MspManager::new([Msp::new("Brand1MSP", material).unwrap()]);
    assert!(matches!(
        mgr.identity(m.signer.creator()),
        Err(Error::Revoked { .. })
    ));
}

#[test]
fn crl_from_a_foreign_ca_is_refused_when_loading() {
    let org = Org::new("Brand1MSP");
    let other = Org::new("EvilMSP");
    let mut material = org.material();
    material.crls = vec![other.crl(&[&[1]])];
    let err = Msp::new("Brand1MSP", material).unwrap_err();
    assert!(err.to_string().contains("not signed by any CA"), "{err}");
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let org = Org::new("Brand1MSP");
    let impostor_ca = Org::new("Brand1MSP");
    let m = impostor_ca.simple("eve", Role::Peer);
    let err = manager(&[&org]).identity(m.signer.creator()).unwrap_err();
    assert!(matches!(err, Error::Untrusted { .. }), "{err}");
}

#[test]
fn identity_claiming_another_msp_is_refused() {
    let brand1 = Org::new("Brand1MSP");
    let brand2 = Org::new("Brand2MSP");
    let m = brand1.simple("peer0", Role::Peer);
    // Brand1's certificate presented as a member of Brand2.
    let forged = serialize_identity("Brand2MSP", m.signer.certificate_pem());
    let mgr = manager(&[&brand1, &brand2]);
    assert!(matches!(
        mgr.identity(&forged),
        Err(Error::Untrusted { .. })
    ));
    let unknown = serialize_identity("NobodyMSP", m.signer.certificate_pem());
    assert!(matches!(mgr.identity(&unknown), Err(Error::UnknownMsp(id)) if id == "NobodyMSP"));
}

#[test]
fn wrong_role_does_not_satisfy_a_role_principal() {
    use mercato_ca::policy::{MspRole, PolicySigner};
    let org = Org::new("Brand1MSP");
    let mgr = manager(&[&org]);
    let client = mgr
        .identity(org.simple("c", Role::Client).signer.creator())
        .unwrap();
    assert!(client.has_role(MspRole::Client));
    assert!(client.has_role(MspRole::Member));
    for r in [
        MspRole::Peer,
        MspRole::Admin,
        MspRole::Orderer,
        MspRole::Auditor,
    ] {
        assert!(!client.has_role(r), "{r:?}");
    }
}

#[test]
fn admin_by_admincerts_folder() {
    let org = Org::new("Brand1MSP");
    let listed = org.simple("ops", Role::Client);
    let dir = tempfile::tempdir().unwrap();
    org.write_msp_folder(dir.path(), &[], &[&listed.cert_der]);
    let msp = Msp::load("Brand1MSP", dir.path()).unwrap();
    let id = MspManager::new([msp])
        .identity(listed.signer.creator())
        .unwrap();
    assert!(id.is_admin());
    assert_eq!(id.role(), Role::Client);
}

#[test]
fn msp_folder_with_crl_and_renamed_ous_loads() {
    let org = Org::with_intermediate("Brand1MSP");
    let revoked = org.simple("gone", Role::Client);
    let dir = tempfile::tempdir().unwrap();
    org.write_msp_folder(dir.path(), &[org.crl(&[&revoked.serial])], &[]);
    // Rename the client OU: a certificate with OU "client" then has no role.
    std::fs::write(
        dir.path().join("config.toml"),
        "[node_ous]\nclient = \"buyer\"\n",
    )
    .unwrap();
    let mgr = MspManager::new([Msp::load("Brand1MSP", dir.path()).unwrap()]);
    assert!(matches!(
        mgr.identity(revoked.signer.creator()),
        Err(Error::Revoked { .. })
    ));
    let client = org.simple("dan", Role::Client);
    assert!(matches!(
        mgr.identity(client.signer.creator()),
        Err(Error::Role { .. })
    ));
    mgr.identity(org.simple("p", Role::Peer).signer.creator())
        .unwrap();
}

#[test]
fn bad_msp_folders_are_refused_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = Msp::load("X", dir.path()).unwrap_err();
    assert!(err.to_string().contains("at least one root"), "{err}");
    std::fs::create_dir_all(dir.path().join("cacerts")).unwrap();
    std::fs::write(dir.path().join("cacerts/ca.pem"), "not a pem").unwrap();
    let err = Msp::load("X", dir.path()).unwrap_err();
    assert!(err.to_string().contains("ca.pem"), "{err}");
    // A member certificate is not a root.
    let org = Org::new("X");
    let m = org.simple("m", Role::Client);
    std::fs::write(
        dir.path().join("cacerts/ca.pem"),
        to_pem("CERTIFICATE", &m.cert_der),
    )
    .unwrap();
    let err = Msp::load("X", dir.path()).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
}

#[test]
fn signing_identity_loads_from_its_folder() {
    let org = Org::new("SellersMSP");
    let m = org.member(MemberSpec {
        algorithm: KeyAlgorithm::Ed25519,
        ..MemberSpec::new("alice", Role::Client)
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("signcerts")).unwrap();
    std::fs::create_dir_all(dir.path().join("keystore")).unwrap();
    std::fs::write(
        dir.path().join("signcerts/cert.pem"),
        m.signer.certificate_pem(),
    )
    .unwrap();
    let (_, pkcs8) = mercato_ca::SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    // A key that does not match the certificate is refused.
    std::fs::write(
        dir.path().join("keystore/key_sk"),
        to_pem("PRIVATE KEY", &pkcs8),
    )
    .unwrap();
    let err = SigningIdentity::load("SellersMSP", dir.path()).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    // With its own key it loads, and what it signs verifies as its MSP's member.
    std::fs::write(
        dir.path().join("keystore/key_sk"),
        to_pem("PRIVATE KEY", &m.key_pkcs8),
    )
    .unwrap();
    let loaded = SigningIdentity::load("SellersMSP", dir.path()).unwrap();
    let sig = loaded.sign(b"payload").unwrap();
    let id = manager(&[&org])
        .verify(loaded.creator(), b"payload", &sig)
        .unwrap();
    assert_eq!(id.common_name(), "alice");
}

#[test]
fn ca_certificate_cannot_be_a_member() {
    let org = Org::new("Brand1MSP");
    let pem = org.root.certificate_pem();
    let sid = serialize_identity("Brand1MSP", pem.as_bytes());
    let err = manager(&[&org]).identity(&sid).unwrap_err();
    assert!(err.to_string().contains("CA certificate"), "{err}");
}

#[test]
fn truncated_and_garbage_identities_are_errors() {
    let org = Org::new("Brand1MSP");
    let mgr = manager(&[&org]);
    let m = org.simple("x", Role::Client);
    let good = m.signer.creator().to_vec();
    let pem = m.signer.certificate_pem();
    let der_truncated = to_pem("CERTIFICATE", &m.cert_der[..m.cert_der.len() / 2]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", vec![0xde, 0xad, 0xbe, 0xef]),
        (
            "truncated serialized identity",
            good[..good.len() / 2].to_vec(),
        ),
        (
            "truncated PEM",
            serialize_identity("Brand1MSP", &pem[..pem.len() / 2]),
        ),
        (
            "truncated DER",
            serialize_identity("Brand1MSP", der_truncated.as_bytes()),
        ),
        ("not PEM", serialize_identity("Brand1MSP", b"hello")),
        (
            "huge",
            serialize_identity("Brand1MSP", &vec![b'A'; 200_000]),
        ),
    ];
    for (name, bytes) in cases {
        assert!(mgr.identity(&bytes).is_err(), "{name}");
    }
    // Every single-byte corruption of the certificate is refused or still validates the same
    // identity; none panics.
    for i in (0..m.cert_der.len()).step_by(7) {
        let mut der = m.cert_der.clone();
        der[i] ^= 0x40;
        let sid = serialize_identity("Brand1MSP", to_pem("CERTIFICATE", &der).as_bytes());
        if let Ok(id) = mgr.identity(&sid) {
            assert_eq!(id.common_name(), "x");
        }
    }
}

#[test]
fn high_s_signature_from_a_member_is_refused() {
    let org = Org::new("Brand1MSP");
    let m = org.simple("x", Role::Client);
    let mgr = manager(&[&org]);
    let sig = m.signer.sign(b"msg").unwrap();
    let flipped = mercato_ca::crypto::flip_s(&sig).unwrap();
    let err = mgr
        .verify(m.signer.creator(), b"msg", &flipped)
        .unwrap_err();
    assert!(err.to_string().contains("high S"), "{err}");
    mgr.verify(m.signer.creator(), b"msg", &sig).unwrap();
}

#[test]
fn cache_returns_the_same_identity_and_stays_bounded() {
    let org = Org::new("Brand1MSP");
    let mgr = MspManager::with_capacity([org.msp()], 2);
    let members: Vec<_> = (0..3)
        .map(|i| org.simple(&format!("m{i}"), Role::Client))
        .collect();
    let a = mgr.identity(members[0].signer.creator()).unwrap();
    let b = mgr.identity(members[0].signer.creator()).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    for m in &members {
        mgr.identity(m.signer.creator()).unwrap();
    }
    assert_eq!(mgr.cached(), 2);
}
