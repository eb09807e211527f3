//! The crypto floor: what signing, verifying and identity validation cost on this machine.
//! Every later throughput figure is held against these numbers.
//!
//! Run: `cargo bench -p mercato-ca --bench crypto`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use mercato_ca::authority::{Authority, MemberRequest, SubjectKey, Validity};
use mercato_ca::crypto::{Ed25519Item, to_pem, verify_ed25519_batch};
use mercato_ca::msp::MspMaterial;
use mercato_ca::{KeyAlgorithm, Msp, MspManager, PublicKey, Role, SigningIdentity, SigningKey};
use mercato_proto::Signer;

const NOW: i64 = 1_800_000_000;
/// How long each measurement runs.
const BUDGET: Duration = Duration::from_millis(700);

/// Runs `f` repeatedly for about [`BUDGET`]; returns microseconds per call.
fn per_call_us(mut f: impl FnMut()) -> f64 {
    for _ in 0..10 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < BUDGET {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn member(
    ca: &Authority,
    msp: &str,
    algorithm: KeyAlgorithm,
    serial: u32,
    name: &str,
) -> SigningIdentity {
    let (key, _) = SigningKey::generate(algorithm).unwrap();
    let der = ca
        .issue(&MemberRequest {
            common_name: name.into(),
            role: Role::Client,
            attributes: BTreeMap::from([("role".to_string(), "seller".to_string())]),
            key: SubjectKey {
                algorithm,
                bytes: key.public_key_bytes().to_vec(),
            },
            validity: Validity::days_from(NOW - 86_400, 365),
            serial: (serial | 0x0100_0000).to_be_bytes().to_vec(),
            hosts: Vec::new(),
        })
        .unwrap();
    SigningIdentity::new(msp, to_pem("CERTIFICATE", &der).as_bytes(), key).unwrap()
}

/// Peak resident memory of this process, from /proc (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Verifications per second with every core verifying the same kind of signature.
fn all_cores_per_sec(threads: usize, verify: impl Fn() + Sync) -> f64 {
    let start = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < BUDGET {
                        verify();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    counts.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo test --benches` runs this too; keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("Mercato crypto floor ({cores} cores)");
    println!();

    let root = Authority::new_root(
        "ca.bench",
        "BenchOrg",
        Validity::days_from(NOW - 86_400, 3650),
    )
    .unwrap();
    let ica = root
        .new_intermediate("ica.bench", Validity::days_from(NOW - 86_400, 3650))
        .unwrap();
    let msp = || {
        Msp::new(
            "BenchMSP",
            MspMaterial {
                root_certs: vec![root.certificate_der().to_vec()],
                intermediate_certs: vec![ica.certificate_der().to_vec()],
                ..MspMaterial::default()
            },
        )
        .unwrap()
    };
    let message = vec![0x5au8; 1024];

    println!("{:<44} {:>10}", "operation", "µs/op");
    let mut rows: Vec<(String, f64)> = Vec::new();
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let signer = member(&ica, "BenchMSP", algorithm, 1, "alice");
        let manager = MspManager::new([msp()]);
        let identity = manager.identity(signer.creator()).unwrap();
        let public = identity.public_key().clone();
        let sig = signer.sign(&message).unwrap();
        rows.push((
            format!("{algorithm} sign (1 KiB message)"),
            per_call_us(|| {
                black_box(signer.sign(black_box(&message)).unwrap());
            }),
        ));
        rows.push((
            format!("{algorithm} verify"),
            per_call_us(|| {
                public.verify(black_box(&message), black_box(&sig)).unwrap();
            }),
        ));
        rows.push((
            format!("{algorithm} identity validation, cold"),
            per_call_us(|| {
                black_box(
                    manager
                        .validate_uncached(black_box(signer.creator()))
                        .unwrap(),
                );
            }),
        ));
        rows.push((
            format!("{algorithm} identity validation, cached"),
            per_call_us(|| {
                black_box(manager.identity(black_box(signer.creator())).unwrap());
            }),
        ));
    }
    // Ed25519 batches: many signers, as in a block.
    let signers: Vec<(SigningKey, Vec<u8>)> = (0..500u32)
        .map(|i| {
            let (k, _) = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
            let msg = [&message[..], &i.to_be_bytes()].concat();
            (k, msg)
        })
        .collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = signers
        .iter()
        .map(|(k, _)| match k.public_key().unwrap() {
            PublicKey::Ed25519(vk) => vk,
            _ => unreachable!("generated Ed25519"),
        })
        .collect();
    let sigs: Vec<Vec<u8>> = signers.iter().map(|(k, m)| k.sign(m).unwrap()).collect();
    for batch in [64usize, 500] {
        let items: Vec<Ed25519Item<'_>> = (0..batch)
            .map(|i| Ed25519Item {
                key: &keys[i],
                message: &signers[i].1,
                signature: &sigs[i],
            })
            .collect();
        let us = per_call_us(|| {
            let r = verify_ed25519_batch(black_box(&items));
            assert!(r.iter().all(Result::is_ok));
        });
        rows.push((
            format!("ed25519 verify, batch of {batch} (per signature)"),
            us / batch as f64,
        ));
    }
    for (name, us) in &rows {
        println!("{name:<44} {us:>10.1}");
    }

    println!();
    println!("{:<44} {:>10}", "all cores", "verifies/s");
    let p256 = member(&ica, "BenchMSP", KeyAlgorithm::EcdsaP256, 2, "bob");
    let p256_pub = MspManager::new([msp()])
        .identity(p256.creator())
        .unwrap()
        .public_key()
        .clone();
    let p256_sig = p256.sign(&message).unwrap();
    let rate = all_cores_per_sec(cores, || p256_pub.verify(&message, &p256_sig).unwrap());
    println!(
        "{:<44} {:>10.0}",
        format!("P-256 verify x {cores} threads"),
        rate
    );
    let ed = member(&ica, "BenchMSP", KeyAlgorithm::Ed25519, 3, "carol");
    let ed_pub = MspManager::new([msp()])
        .identity(ed.creator())
        .unwrap()
        .public_key()
        .clone();
    let ed_sig = ed.sign(&message).unwrap();
    let rate = all_cores_per_sec(cores, || ed_pub.verify(&message, &ed_sig).unwrap());
    println!(
        "{:<44} {:>10.0}",
        format!("Ed25519 verify x {cores} threads"),
        rate
    );
    let items: Vec<Ed25519Item<'_>> = (0..64)
        .map(|i| Ed25519Item {
            key: &keys[i],
            message: &signers[i].1,
            signature: &sigs[i],
        })
        .collect();
    let batches = all_cores_per_sec(cores, || {
        black_box(verify_ed25519_batch(&items));
    });
    println!(
        "{:<44} {:>10.0}",
        format!("Ed25519 batch-64 verify x {cores} threads"),
        batches * 64.0
    );

    println!();
    match peak_rss_mib() {
        Some(mib) => println!("peak RSS (this process): {mib:.1} MiB"),
        None => println!("peak RSS (this process): unavailable"),
    }
}
