//! The peer node's configuration: the sample parses, environment overrides apply, bad settings
//! are refused with what was wrong.

use std::path::Path;

use mercato_peer::node::Config;

#[test]
fn the_sample_configuration_parses_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/peer.toml");
    let c = Config::load(&path).unwrap();
    c.validate().unwrap();
    assert_eq!(c.identity.msp_id, "Brand1MSP");
    // Paths are relative to the file.
    assert!(
        c.node.genesis.ends_with("deploy/genesis.block"),
        "{:?}",
        c.node.genesis
    );
    assert!(c.ledger_dir().ends_with("deploy/data/ledger"));
}

#[test]
fn environment_overrides_and_refusals() {
    let mut c = Config::default();
    c.identity.msp_id = "Brand2MSP".into();
    c.apply_env([
        (
            "MERCATO_PEER_LISTEN".to_string(),
            "127.0.0.1:7151".to_string(),
        ),
        (
            "MERCATO_PEER_TLS_CLIENT_AUTH_REQUIRED".to_string(),
            "true".to_string(),
        ),
        ("MERCATO_PEER_VERIFY_THREADS".to_string(), "3".to_string()),
        ("MERCATO_PEER_REQUEST_THREADS".to_string(), "24".to_string()),
        ("PATH".to_string(), "/bin".to_string()),
    ])
    .unwrap();
    assert_eq!(c.node.listen, "127.0.0.1:7151");
    assert!(c.tls.client_auth_required);
    assert_eq!(c.ledger.verify_threads, 3);
    assert_eq!(c.node.request_threads, 24);
    c.validate().unwrap();

    let e = c
        .apply_env([("MERCATO_PEER_LISTN".to_string(), "x".to_string())])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown variable MERCATO_PEER_LISTN"),
        "{e}"
    );
    let e = c
        .apply_env([(
            "MERCATO_PEER_VERIFY_THREADS".to_string(),
            "many".to_string(),
        )])
        .unwrap_err();
    assert!(e.to_string().contains("not a number"), "{e}");

    // Each broken setting is refused by name.
    let refusal = |change: &dyn Fn(&mut Config)| {
        let mut bad = c.clone();
        change(&mut bad);
        bad.validate().unwrap_err().to_string()
    };
    let e = refusal(&|b| b.node.operations = "localhost".into());
    assert!(e.contains("node.operations"), "{e}");
    let e = refusal(&|b| b.identity.msp_id.clear());
    assert!(e.contains("identity.msp_id"), "{e}");
    let e = refusal(&|b| b.node.request_threads = 0);
    assert!(e.contains("node.request_threads"), "{e}");
    let e = refusal(&|b| b.ledger.verify_threads = 0);
    assert!(e.contains("verify_threads"), "{e}");

    let e = Config::load(Path::new("/nonexistent/peer.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/peer.toml"), "{e}");
}
