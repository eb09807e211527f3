//! The CA server end to end, in process, over TLS on 127.0.0.1:0: register → enroll → sign and
//! verify through the MSP library → revoke → CRL → the MSP refuses the identity; every kind of bad
//! input; a restart; re-enrollment; an intermediate CA; what `openssl` makes of the results.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mercato_ca::authority::RevocationReason;
use mercato_ca::client::{
    self, CaClient, EnrollOptions, KeyChoice, RegisterOptions, RevokeWhat, TlsOptions,
    sign_request, sign_request_at,
};
use mercato_ca::crypto::to_pem;
use mercato_ca::home::{self, CaHome, InitOptions, ParentCa};
use mercato_ca::registry::{IssuedCert, Registration};
use mercato_ca::server::core::Profile;
use mercato_ca::server::{CaCore, CaServer, Config};
use mercato_ca::{Error, KeyAlgorithm, Msp, MspManager, Role, SigningIdentity, SigningKey};
use mercato_proto::Signer;
use mercato_proto::pb::mercato as pb;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;

const MSP_ID: &str = "Org1MSP";

fn test_config() -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.server.hosts = vec!["127.0.0.1".into(), "localhost".into()];
    config.ca.msp_id = MSP_ID.into();
    // The lowest the CA accepts: tests hash many secrets.
    config.security.pbkdf2_iterations = 1000;
    config
}

/// A CA home in a temporary folder.
struct Home {
    _tmp: TempDir,
    dir: PathBuf,
    admin_secret: String,
}

impl Home {
    async fn new(config: Config) -> Home {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca-home");
        let report = home::init(
            &dir,
            InitOptions {
                config,
                admin_id: "admin".into(),
                admin_secret: None,
                parent: None,
            },
        )
        .await
        .unwrap();
        Home {
            _tmp: tmp,
            dir,
            admin_secret: report.admin_secret,
        }
    }

    fn scratch(&self, name: &str) -> PathBuf {
        self.dir.parent().unwrap().join(name)
    }

    fn tls_root(&self) -> Vec<u8> {
        std::fs::read(CaHome::new(&self.dir).tls_root_path()).unwrap()
    }
}

/// Binds a CA server on `dir`, waiting (boundedly) for sled's threads to let go of the registry
/// that `init` or a stopped server just closed: in production a restart is a new process.
async fn bind_when_free(dir: &Path, config: Config) -> CaServer {
    for _ in 0..300 {
        match CaServer::bind(dir, config.clone()).await {
            Err(e) if e.to_string().contains("acquire lock") => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            other => return other.unwrap(),
        }
    }
    panic!("{}: the registry stayed locked", dir.display());
}

/// A running CA.
struct Running {
    url: String,
    tls_root: Vec<u8>,
    core: Option<Arc<CaCore>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), mercato_ca::CaError>>>,
}

impl Running {
    async fn start(home: &Home) -> Running {
        let config = CaHome::new(&home.dir).load_config().unwrap();
        let server = bind_when_free(&home.dir, config).await;
        let url = format!("https://127.0.0.1:{}", server.local_addr().port());
        let core = Arc::clone(server.core());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Running {
            url,
            tls_root: home.tls_root(),
            core: Some(core),
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn client(&self) -> CaClient {
        CaClient::connect(&self.url, &self.tls_root).await.unwrap()
    }

    fn core(&self) -> &CaCore {
        self.core.as_ref().unwrap()
    }

    /// Stops the server and waits until it has released the registry.
    async fn stop(mut self) {
        drop(self.core.take());
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// What the registry holds: every registration with its certificates.
fn snapshot(core: &CaCore) -> Vec<(Registration, Vec<IssuedCert>)> {
    let r = core.registry();
    r.registrations(None, 10_000)
        .unwrap()
        .into_iter()
        .map(|reg| {
            let certs = r.certificates_of(&reg.id).unwrap();
            (reg, certs)
        })
        .collect()
}

async fn enroll_into(
    ca: &mut CaClient,
    id: &str,
    secret: &str,
    options: &EnrollOptions,
    dir: &Path,
) -> SigningIdentity {
    let enrolled = ca.enroll(id, secret, options).await.unwrap();
    client::write_msp(dir, &enrolled).unwrap();
    SigningIdentity::load(MSP_ID, dir).unwrap()
}

fn p256() -> EnrollOptions {
    EnrollOptions::default()
}

fn register(id: &str, role: &str, attrs: &[(&str, &str)]) -> RegisterOptions {
    RegisterOptions {
        id: id.into(),
        role: role.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..RegisterOptions::default()
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, mercato_ca::ClientError>) -> (Code, String) {
    match r {
        Err(mercato_ca::ClientError::Refused { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn openssl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("openssl"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("skipping the openssl checks: openssl is not on PATH");
    }
    found
}

fn run_openssl(openssl: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(openssl)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?} failed: {text}");
    text
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_enroll_sign_revoke_and_the_msp_with_the_crl_refuses_the_identity() {
    let home = Home::new(test_config()).await;
    let ca = Running::start(&home).await;
    let mut client = ca.client().await;

    let info = client.info().await.unwrap();
    assert_eq!(info.msp_id, MSP_ID);
    assert_eq!(info.ca_chain.len(), 1);
    assert_eq!(info.tls_root_certs.len(), 1);

    let admin_dir = home.scratch("admin-msp");
    let admin = enroll_into(
        &mut client,
        "admin",
        &home.admin_secret,
        &p256(),
        &admin_dir,
    )
    .await;
    let seller_secret = client
        .register(
            &admin,
            &register("seller1", "client", &[("role", "seller"), ("shop", "acme")]),
        )
        .await
        .unwrap();
    let peer_secret = client
        .register(&admin, &register("peer0", "peer", &[]))
        .await
        .unwrap();

    // A seller with P-256, a peer with Ed25519 and a TLS server certificate.
    let seller_dir = home.scratch("seller1-msp");
    let seller = enroll_into(&mut client, "seller1", &seller_secret, &p256(), &seller_dir).await;
    let peer_dir = home.scratch("peer0-msp");
    let peer = enroll_into(
        &mut client,
        "peer0",
        &peer_secret,
        &EnrollOptions {
            key: KeyChoice::Generate(KeyAlgorithm::Ed25519),
            profile: Profile::Enrollment,
            tls: Some(TlsOptions {
                algorithm: KeyAlgorithm::EcdsaP256,
                hosts: vec!["peer0.org1.example.com".into(), "127.0.0.1".into()],
            }),
        },
        &peer_dir,
    )
    .await;
    assert_eq!(peer.key().algorithm(), KeyAlgorithm::Ed25519);

    // The folders have the layout the loaders read, with private keys 0600.
    for dir in [&seller_dir, &peer_dir] {
        for sub in [
            "cacerts/ca.pem",
            "signcerts/cert.pem",
            "tlscacerts/tlsca.pem",
            "config.toml",
        ] {
            assert!(dir.join(sub).is_file(), "{}", dir.join(sub).display());
        }
        assert_eq!(mode(&dir.join("keystore/key.pem")), 0o600);
    }
    assert_eq!(mode(&peer_dir.join("tls/server.key")), 0o600);
    assert!(peer_dir.join("tls/server.crt").is_file());
    assert!(peer_dir.join("tls/ca.crt").is_file());
    assert!(!seller_dir.join("tls").exists());

    // Sign and verify through the MSP library, with an MSP loaded from the member's folder.
    let mgr = MspManager::new([Msp::load(MSP_ID, &seller_dir).unwrap()]);
    let msg = b"an order for one pair of shoes";
    let id = mgr
        .verify(seller.creator(), msg, &seller.sign(msg).unwrap())
        .unwrap();
    assert_eq!(id.role(), Role::Client);
    assert_eq!(id.common_name(), "seller1");
    assert_eq!(id.attribute("role"), Some("seller"));
    assert_eq!(id.attribute("shop"), Some("acme"));
    assert_eq!(id.attribute("hf.EnrollmentID"), Some("seller1"));
    assert_eq!(id.attribute("hf.Type"), Some("client"));
    let peer_id = mgr
        .verify(peer.creator(), msg, &peer.sign(msg).unwrap())
        .unwrap();
    assert_eq!(peer_id.role(), Role::Peer);
    assert!(
        mgr.verify(seller.creator(), b"other", &seller.sign(msg).unwrap())
            .is_err()
    );

    // Revoke the seller; the CRL comes back with the answer.
    let (revoked, crl) = client
        .revoke(
            &admin,
            &RevokeWhat::Identity("seller1".into()),
            RevocationReason::KeyCompromise,
            true,
        )
        .await
        .unwrap();
    assert_eq!(revoked, [id.serial().to_owned()]);
    let crl = crl.unwrap();
    client::write_crl(&seller_dir, &crl).unwrap();
    let mgr = MspManager::new([Msp::load(MSP_ID, &seller_dir).unwrap()]);
    assert!(matches!(
        mgr.verify(seller.creator(), msg, &seller.sign(msg).unwrap()),
        Err(Error::Revoked { .. })
    ));
    // The peer is not revoked.
    mgr.verify(peer.creator(), msg, &peer.sign(msg).unwrap())
        .unwrap();
    // A revoked identity can no longer enroll, even with its secret.
    let (c, _) = code(client.enroll("seller1", &seller_secret, &p256()).await);
    assert_eq!(c, Code::FailedPrecondition);

    // GenCrl gives the same revocations, numbered.
    let crls = client.gen_crl(&admin).await.unwrap();
    assert_eq!(crls.number, 2);
    let (_, parsed) = x509_parser::parse_x509_crl(&crls.crl).unwrap();
    let serials: Vec<String> = parsed
        .iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect();
    assert_eq!(serials, [id.serial().to_owned()]);

    if let Some(openssl) = openssl() {
        let p = |path: PathBuf| path.display().to_string();
        for dir in [&seller_dir, &peer_dir] {
            let out = run_openssl(
                &openssl,
                &[
                    "verify",
                    "-CAfile",
                    &p(dir.join("cacerts/ca.pem")),
                    &p(dir.join("signcerts/cert.pem")),
                ],
            );
            assert!(out.contains(": OK"), "{out}");
        }
        let out = run_openssl(
            &openssl,
            &[
                "verify",
                "-CAfile",
                &p(peer_dir.join("tls/ca.crt")),
                "-purpose",
                "sslserver",
                &p(peer_dir.join("tls/server.crt")),
            ],
        );
        assert!(out.contains(": OK"), "{out}");
        let out = run_openssl(
            &openssl,
            &[
                "crl",
                "-in",
                &p(seller_dir.join("crls/crl.pem")),
                "-CAfile",
                &p(seller_dir.join("cacerts/ca.pem")),
                "-noout",
                "-verify",
            ],
        );
        assert!(out.contains("verify OK"), "{out}");
        // With the CRL, openssl refuses the revoked certificate too.
        let crl_check = std::process::Command::new(&openssl)
            .args([
                "verify",
                "-crl_check",
                "-CAfile",
                &p(seller_dir.join("cacerts/ca.pem")),
                "-CRLfile",
                &p(seller_dir.join("crls/crl.pem")),
                &p(seller_dir.join("signcerts/cert.pem")),
            ])
            .output()
            .unwrap();
        assert!(!crl_check.status.success());
        assert!(
            String::from_utf8_lossy(&crl_check.stdout).contains("revoked")
                || String::from_utf8_lossy(&crl_check.stderr).contains("revoked")
        );
        let tls_crl = home.scratch("tls-crl.pem");
        std::fs::write(&tls_crl, to_pem("X509 CRL", &crls.tls_crl)).unwrap();
        let out = run_openssl(
            &openssl,
            &[
                "crl",
                "-in",
                &p(tls_crl),
                "-CAfile",
                &p(peer_dir.join("tls/ca.crt")),
                "-noout",
                "-verify",
            ],
        );
        assert!(out.contains("verify OK"), "{out}");
    }
    drop(client);
    ca.stop().await;
}

/// The CA's log, captured for the whole test binary (the server logs from its own threads, so a
/// per-thread subscriber would miss it).
mod logs {
    use std::sync::{Mutex, OnceLock};

    static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    static INSTALLED: OnceLock<bool> = OnceLock::new();

    struct Writer;

    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            BUFFER
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Installs the capturing subscriber once; false if another global subscriber was first.
    pub fn captured() -> bool {
        *INSTALLED.get_or_init(|| {
            tracing_subscriber::fmt()
                .with_writer(|| Writer)
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .try_init()
                .is_ok()
        })
    }

    pub fn text() -> String {
        String::from_utf8_lossy(&BUFFER.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_enrollments_are_refused_with_clear_errors_and_store_nothing() {
    logs::captured();
    let home = Home::new(test_config()).await;
    let ca = Running::start(&home).await;
    let mut client = ca.client().await;
    let admin = enroll_into(
        &mut client,
        "admin",
        &home.admin_secret,
        &p256(),
        &home.scratch("admin-msp"),
    )
    .await;
    let secret = client
        .register(
            &admin,
            &RegisterOptions {
                max_enrollments: 1,
                ..register("alice", "client", &[])
            },
        )
        .await
        .unwrap();
    let before = snapshot(ca.core());

    let raw_enroll = |csr: Vec<u8>, secret: &str| pb::EnrollRequest {
        enrollment_id: "alice".into(),
        secret: secret.into(),
        request: Some(pb::CertificateRequest {
            csr,
            ..Default::default()
        }),
    };
    let good_csr = {
        let (_, der) = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        mercato_ca::csr::make_csr(&der, "alice").unwrap()
    };

    // A malformed CSR.
    let err = client
        .raw()
        .enroll(raw_enroll(b"not a CSR".to_vec(), &secret))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("CSR"), "{}", err.message());

    // A mis-signed CSR: its subject changed after signing, so it still parses.
    let mut forged = good_csr.clone();
    let at = forged
        .windows(5)
        .position(|w| w == b"alice")
        .expect("the CSR names alice");
    forged[at + 4] = b'f';
    let err = client
        .raw()
        .enroll(raw_enroll(forged, &secret))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("signature"), "{}", err.message());

    // The wrong curve: P-384.
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let p384_csr = rcgen::CertificateParams::default()
        .serialize_request(&p384)
        .unwrap()
        .der()
        .to_vec();
    let err = client
        .raw()
        .enroll(raw_enroll(p384_csr, &secret))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("wrong curve"), "{}", err.message());

    // Hosts without a TLS CSR.
    let mut with_hosts = raw_enroll(good_csr.clone(), &secret);
    if let Some(r) = with_hosts.request.as_mut() {
        r.hosts = vec!["peer.example.com".into()];
    }
    let err = client.raw().enroll(with_hosts).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A client asking for a TLS server certificate (host names): only nodes get those, or any
    // member could serve as a peer or the CA to everyone who trusts the TLS root.
    let (c, message) = code(
        client
            .enroll(
                "alice",
                &secret,
                &EnrollOptions {
                    tls: Some(TlsOptions {
                        algorithm: KeyAlgorithm::EcdsaP256,
                        hosts: vec!["peer0.org1.example.com".into()],
                    }),
                    ..p256()
                },
            )
            .await,
    );
    assert_eq!(c, Code::PermissionDenied);
    assert!(message.contains("only to peers and orderers"), "{message}");

    // A wrong secret and an unknown id get the same answer.
    let wrong = client
        .raw()
        .enroll(raw_enroll(good_csr.clone(), "not-the-secret"))
        .await
        .unwrap_err();
    let mut unknown_req = raw_enroll(good_csr.clone(), &secret);
    unknown_req.enrollment_id = "nobody".into();
    let unknown = client.raw().enroll(unknown_req).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(
        (wrong.code(), wrong.message()),
        (unknown.code(), unknown.message())
    );

    // An oversized request is refused before it is decoded, and the refusal is logged.
    let huge = raw_enroll(vec![0x30; 100 * 1024], &secret);
    let err = client.raw().enroll(huge).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    // Nothing else in this test binary installs a global subscriber.
    assert!(logs::captured());
    let text = logs::text();
    assert!(
        text.lines().any(|l| l.contains("request refused")
            && l.contains("/mercato.CertificateAuthority/Enroll")
            && l.contains(&format!("{:?}", err.code()))),
        "no log line for the oversized request in:\n{text}"
    );

    assert_eq!(
        snapshot(ca.core()),
        before,
        "a refused enrollment stored something"
    );

    // One enrollment is allowed; the second is refused and stores nothing.
    client.enroll("alice", &secret, &p256()).await.unwrap();
    let after_one = snapshot(ca.core());
    let (c, message) = code(client.enroll("alice", &secret, &p256()).await);
    assert_eq!(c, Code::FailedPrecondition);
    assert!(message.contains("enrollments"), "{message}");
    assert_eq!(snapshot(ca.core()), after_one);
    drop(client);
    ca.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enrollments_never_exceed_the_maximum() {
    let home = Home::new(test_config()).await;
    let ca = Running::start(&home).await;
    let mut client = ca.client().await;
    let admin = enroll_into(
        &mut client,
        "admin",
        &home.admin_secret,
        &p256(),
        &home.scratch("admin-msp"),
    )
    .await;
    let secret = client
        .register(
            &admin,
            &RegisterOptions {
                max_enrollments: 2,
                ..register("racer", "client", &[])
            },
        )
        .await
        .unwrap();
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let mut c = client.clone();
            let secret = secret.clone();
            tokio::spawn(async move { c.enroll("racer", &secret, &p256()).await })
        })
        .collect();
    let mut ok = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(code::<()>(Err(e)).0, Code::FailedPrecondition),
        }
    }
    assert_eq!(ok, 2);
    let racer = ca.core().registry().registration("racer").unwrap().unwrap();
    assert_eq!(racer.enrollments, 2);
    assert_eq!(
        ca.core().registry().certificates_of("racer").unwrap().len(),
        2
    );
    drop(client);
    ca.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rights_and_signed_requests_are_enforced_and_refusals_store_nothing() {
    let home = Home::new(test_config()).await;
    let ca = Running::start(&home).await;
    let mut client = ca.client().await;
    let admin = enroll_into(
        &mut client,
        "admin",
        &home.admin_secret,
        &p256(),
        &home.scratch("admin-msp"),
    )
    .await;
    // A shop registrar: may register clients with a `role` attribute, nothing more.
    let shop_secret = client
        .register(
            &admin,
            &RegisterOptions {
                affiliation: Some("org1.shops".into()),
                ..register(
                    "shop-registrar",
                    "admin",
                    &[
                        ("hf.Registrar.Roles", "client"),
                        ("hf.Registrar.Attributes", "role"),
                    ],
                )
            },
        )
        .await
        .unwrap();
    let shop = enroll_into(
        &mut client,
        "shop-registrar",
        &shop_secret,
        &p256(),
        &home.scratch("shop-msp"),
    )
    .await;
    let buyer_secret = client
        .register(&admin, &register("buyer", "client", &[]))
        .await
        .unwrap();
    let buyer = enroll_into(
        &mut client,
        "buyer",
        &buyer_secret,
        &p256(),
        &home.scratch("buyer-msp"),
    )
    .await;
    // Duplicate ids are refused.
    let (c, _) = code(
        client
            .register(&admin, &register("buyer", "client", &[]))
            .await,
    );
    assert_eq!(c, Code::AlreadyExists);
    let before = snapshot(ca.core());

    let forbidden: Vec<(&SigningIdentity, RegisterOptions)> = vec![
        (&shop, register("p1", "peer", &[])),
        (&shop, register("c1", "client", &[("shop", "acme")])),
        (&shop, register("c2", "client", &[("hf.Revoker", "true")])),
        (
            &shop,
            register("a1", "admin", &[("hf.Registrar.Roles", "client,peer")]),
        ),
        (
            &shop,
            RegisterOptions {
                affiliation: Some("org2".into()),
                ..register("c3", "client", &[])
            },
        ),
        (&buyer, register("c4", "client", &[])),
    ];
    for (who, req) in &forbidden {
        let (c, message) = code(client.register(who, req).await);
        assert_eq!(c, Code::PermissionDenied, "{}: {message}", req.id);
    }
    let (c, _) = code(
        client
            .revoke(
                &shop,
                &RevokeWhat::Identity("buyer".into()),
                RevocationReason::Unspecified,
                false,
            )
            .await,
    );
    assert_eq!(c, Code::PermissionDenied);
    let (c, _) = code(client.gen_crl(&buyer).await);
    assert_eq!(c, Code::PermissionDenied);
    let (c, _) = code(client.list(&buyer).await);
    assert_eq!(c, Code::PermissionDenied);
    // Malformed registrations.
    for req in [
        register("bad id", "client", &[]),
        register("c5", "wizard", &[]),
        register("c6", "client", &[("hf.EnrollmentID", "someone")]),
    ] {
        let (c, message) = code(client.register(&admin, &req).await);
        assert_eq!(c, Code::InvalidArgument, "{}: {message}", req.id);
    }

    assert_eq!(
        snapshot(ca.core()),
        before,
        "a refused request stored something"
    );

    // Signed requests: a replayed copy, an old timestamp, a body for another method, a
    // signature by another key.
    let body = || {
        pb::authenticated_request::Body::Register(pb::RegisterRequest {
            enrollment_id: "replayed".into(),
            r#type: "client".into(),
            ..Default::default()
        })
    };
    let once = sign_request(&admin, body()).unwrap();
    client.raw().register(once.clone()).await.unwrap();
    let before = snapshot(ca.core());
    let err = client.raw().register(once).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("replay"), "{}", err.message());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stale = sign_request_at(&admin, body(), now - 3600, vec![9; 16]).unwrap();
    let err = client.raw().register(stale).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("timestamp"), "{}", err.message());
    let wrong_method = sign_request(
        &admin,
        pb::authenticated_request::Body::GenCrl(pb::GenCrlRequest {}),
    )
    .unwrap();
    let err = client.raw().register(wrong_method).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut stolen_cert = sign_request(&admin, body()).unwrap();
    stolen_cert.signature = buyer
        .key()
        .sign(&mercato_ca::server::auth::signed_message(
            &stolen_cert.request,
        ))
        .unwrap();
    let err = client.raw().register(stolen_cert).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("signature"), "{}", err.message());
    let garbage = pb::SignedRequest {
        request: vec![0xff; 64],
        signature: vec![1; 64],
    };
    assert_eq!(
        client.raw().register(garbage).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        snapshot(ca.core()),
        before,
        "a refused request stored something"
    );

    // Within its rights the shop registrar works, and sees only what it manages.
    client
        .register(&shop, &register("shopper", "client", &[("role", "buyer")]))
        .await
        .unwrap();
    let listed: Vec<String> = client
        .list(&shop)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.enrollment_id)
        .collect();
    assert_eq!(listed, ["shopper"]);
    let all: Vec<String> = client
        .list(&admin)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.enrollment_id)
        .collect();
    assert_eq!(
        all,
        ["admin", "buyer", "replayed", "shop-registrar", "shopper"]
    );

    // A revoked caller is refused at once, without waiting for a CRL.
    client
        .revoke(
            &admin,
            &RevokeWhat::Identity("shop-registrar".into()),
            RevocationReason::PrivilegeWithdrawn,
            false,
        )
        .await
        .unwrap();
    let (c, message) = code(client.list(&shop).await);
    assert_eq!(c, Code::Unauthenticated);
    assert!(message.contains("revoked"), "{message}");
    // Revoking again finds nothing left.
    let (c, _) = code(
        client
            .revoke(
                &admin,
                &RevokeWhat::Identity("shop-registrar".into()),
                RevocationReason::Unspecified,
                false,
            )
            .await,
    );
    assert_eq!(c, Code::FailedPrecondition);
    drop(client);
    ca.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_registrations_certificates_and_revocations() {
    let home = Home::new(test_config()).await;
    let ca = Running::start(&home).await;
    let mut client = ca.client().await;
    let admin_dir = home.scratch("admin-msp");
    let admin = enroll_into(
        &mut client,
        "admin",
        &home.admin_secret,
        &p256(),
        &admin_dir,
    )
    .await;
    let alice_secret = client
        .register(&admin, &register("alice", "client", &[("role", "brand")]))
        .await
        .unwrap();
    let bob_secret = client
        .register(&admin, &register("bob", "peer", &[]))
        .await
        .unwrap();
    let alice = client
        .enroll("alice", &alice_secret, &p256())
        .await
        .unwrap();
    client
        .revoke(
            &admin,
            &RevokeWhat::Serial(alice.serial.clone()),
            RevocationReason::Superseded,
            false,
        )
        .await
        .unwrap();
    let first_crl = client.gen_crl(&admin).await.unwrap();
    assert_eq!(first_crl.number, 1);
    let before = snapshot(ca.core());
    drop(client);
    ca.stop().await;

    let ca = Running::start(&home).await;
    assert_eq!(snapshot(ca.core()), before);
    let mut client = ca.client().await;
    // The admin's certificate still authenticates; the revocation is still in the CRL, whose
    // number keeps counting.
    let admin = SigningIdentity::load(MSP_ID, &admin_dir).unwrap();
    let crls = client.gen_crl(&admin).await.unwrap();
    assert_eq!(crls.number, 2);
    let (_, crl) = x509_parser::parse_x509_crl(&crls.crl).unwrap();
    let revoked: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect();
    assert_eq!(revoked, std::slice::from_ref(&alice.serial));
    let listed = client.list(&admin).await.unwrap();
    let alice_info = listed.iter().find(|i| i.enrollment_id == "alice").unwrap();
    assert!(alice_info.certificates[0].revoked);
    assert_eq!(alice_info.enrollments, 1);
    // Registrations survive: bob enrolls with the secret issued before the restart, and the
    // bootstrap admin's single enrollment stays used.
    client.enroll("bob", &bob_secret, &p256()).await.unwrap();
    let (c, _) = code(client.enroll("admin", &home.admin_secret, &p256()).await);
    assert_eq!(c, Code::FailedPrecondition);
    drop(client);
    ca.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reenroll_renews_with_the_same_or_a_new_key() {
    let home = Home::new(test_config()).await;
    let ca = Running::start(&home).await;
    let mut client = ca.client().await;
    let admin = enroll_into(
        &mut client,
        "admin",
        &home.admin_secret,
        &p256(),
        &home.scratch("admin-msp"),
    )
    .await;
    let secret = client
        .register(
            &admin,
            &RegisterOptions {
                max_enrollments: 1,
                ..register("alice", "client", &[])
            },
        )
        .await
        .unwrap();
    let dir = home.scratch("alice-msp");
    let alice = enroll_into(&mut client, "alice", &secret, &p256(), &dir).await;
    let first_serial = Msp::load(MSP_ID, &dir)
        .unwrap()
        .validate(alice.certificate_pem(), alice.creator())
        .unwrap()
        .serial()
        .to_owned();

    // Same key: the certificate changes, the key does not; no enrollment is used up.
    let same = client
        .reenroll(
            &alice,
            &EnrollOptions {
                key: KeyChoice::Reuse(client::read_key(&dir).unwrap()),
                ..p256()
            },
        )
        .await
        .unwrap();
    assert_ne!(same.serial, first_serial);
    client::write_msp(&dir, &same).unwrap();
    let renewed = SigningIdentity::load(MSP_ID, &dir).unwrap();
    assert_eq!(
        renewed.key().public_key_bytes(),
        alice.key().public_key_bytes()
    );

    // A new Ed25519 key, and a client TLS certificate along with it.
    let rotated = client
        .reenroll(
            &renewed,
            &EnrollOptions {
                key: KeyChoice::Generate(KeyAlgorithm::Ed25519),
                profile: Profile::Enrollment,
                tls: Some(TlsOptions {
                    algorithm: KeyAlgorithm::EcdsaP256,
                    hosts: Vec::new(),
                }),
            },
        )
        .await
        .unwrap();
    client::write_msp(&dir, &rotated).unwrap();
    let rotated_id = SigningIdentity::load(MSP_ID, &dir).unwrap();
    assert_eq!(rotated_id.key().algorithm(), KeyAlgorithm::Ed25519);
    assert!(dir.join("tls/client.crt").is_file());
    let mgr = MspManager::new([Msp::load(MSP_ID, &dir).unwrap()]);
    let sig = rotated_id.sign(b"m").unwrap();
    mgr.verify(rotated_id.creator(), b"m", &sig).unwrap();
    // The older certificates stay valid until they expire or are revoked.
    mgr.identity(alice.creator()).unwrap();
    let listed = client.list(&admin).await.unwrap();
    let info = listed.iter().find(|i| i.enrollment_id == "alice").unwrap();
    assert_eq!(info.enrollments, 1);
    assert_eq!(info.certificates.len(), 4);

    // The MSP folder refuses foreign files where the loader takes the first one.
    std::fs::write(dir.join("keystore/aaa_sk"), "x").unwrap();
    assert!(client::write_msp(&dir, &rotated).is_err());
    drop(client);
    ca.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intermediate_ca_enrolls_with_its_parent_and_issues_members_that_chain_to_the_root() {
    let parent_home = Home::new(test_config()).await;
    let parent = Running::start(&parent_home).await;
    let mut parent_client = parent.client().await;
    let parent_admin = enroll_into(
        &mut parent_client,
        "admin",
        &parent_home.admin_secret,
        &p256(),
        &parent_home.scratch("parent-admin-msp"),
    )
    .await;
    let ica_secret = parent_client
        .register(
            &parent_admin,
            &register("ica.org1", "client", &[("hf.IntermediateCA", "true")]),
        )
        .await
        .unwrap();
    // Without the right, a CA enrollment is refused.
    let plain_secret = parent_client
        .register(&parent_admin, &register("not-a-ca", "client", &[]))
        .await
        .unwrap();
    let (c, _) = code(
        parent_client
            .enroll(
                "not-a-ca",
                &plain_secret,
                &EnrollOptions {
                    profile: Profile::IntermediateCa,
                    ..p256()
                },
            )
            .await,
    );
    assert_eq!(c, Code::PermissionDenied);

    let tmp = tempfile::tempdir().unwrap();
    let child_dir = tmp.path().join("ica-home");
    let report = home::init(
        &child_dir,
        InitOptions {
            config: test_config(),
            admin_id: "ica-admin".into(),
            admin_secret: Some("ica-admin-secret".into()),
            parent: Some(ParentCa {
                url: parent.url.clone(),
                tls_root_pem: parent_home.tls_root(),
                enrollment_id: "ica.org1".into(),
                secret: ica_secret,
            }),
        },
    )
    .await
    .unwrap();
    let child_home = Home {
        _tmp: tmp,
        dir: child_dir,
        admin_secret: report.admin_secret,
    };
    let child = Running::start(&child_home).await;
    let mut child_client = child.client().await;
    let info = child_client.info().await.unwrap();
    assert_eq!(info.ca_chain.len(), 2);
    let admin = enroll_into(
        &mut child_client,
        "ica-admin",
        "ica-admin-secret",
        &p256(),
        &child_home.scratch("ica-admin-msp"),
    )
    .await;
    let secret = child_client
        .register(&admin, &register("member", "client", &[]))
        .await
        .unwrap();
    let dir = child_home.scratch("member-msp");
    let member = enroll_into(&mut child_client, "member", &secret, &p256(), &dir).await;
    assert!(dir.join("intermediatecerts/intermediate.pem").is_file());
    let mgr = MspManager::new([Msp::load(MSP_ID, &dir).unwrap()]);
    mgr.verify(member.creator(), b"m", &member.sign(b"m").unwrap())
        .unwrap();
    // The parent's own MSP (root only) does not accept it without the intermediate.
    let parent_only =
        MspManager::new([Msp::load(MSP_ID, &parent_home.scratch("parent-admin-msp")).unwrap()]);
    assert!(parent_only.identity(member.creator()).is_err());

    if let Some(openssl) = openssl() {
        let p = |path: PathBuf| path.display().to_string();
        let out = run_openssl(
            &openssl,
            &[
                "verify",
                "-CAfile",
                &p(dir.join("cacerts/ca.pem")),
                "-untrusted",
                &p(dir.join("intermediatecerts/intermediate.pem")),
                &p(dir.join("signcerts/cert.pem")),
            ],
        );
        assert!(out.contains(": OK"), "{out}");
    }
    drop(child_client);
    child.stop().await;
    drop(parent_client);
    parent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_makes_private_keys_and_never_overwrites_a_home() {
    let home = Home::new(test_config()).await;
    let h = CaHome::new(&home.dir);
    for key in [h.ca_key_path(), h.tls_root_key_path(), h.server_key_path()] {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
    assert_eq!(mode(&home.dir), 0o700);
    assert_eq!(h.load_config().unwrap(), test_config());
    let again = home::init(
        &home.dir,
        InitOptions {
            config: test_config(),
            admin_id: "admin".into(),
            admin_secret: None,
            parent: None,
        },
    )
    .await;
    assert!(again.is_err());
    // A failed init leaves nothing behind.
    let mut bad = test_config();
    bad.security.pbkdf2_iterations = 1;
    let target = home.scratch("never-made");
    assert!(
        home::init(
            &target,
            InitOptions {
                config: bad,
                admin_id: "admin".into(),
                admin_secret: None,
                parent: None,
            },
        )
        .await
        .is_err()
    );
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(home.dir.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".init-"))
        .collect();
    assert!(leftovers.is_empty());
    // A start with other hosts issues a new server certificate for them.
    let mut config = test_config();
    config.server.hosts = vec!["127.0.0.1".into(), "ca.example.com".into()];
    let before = std::fs::read(h.server_cert_path()).unwrap();
    let server = bind_when_free(&home.dir, config).await;
    drop(server);
    let after = std::fs::read(h.server_cert_path()).unwrap();
    assert_ne!(before, after);
    assert_eq!(mode(&h.server_key_path()), 0o600);
}
