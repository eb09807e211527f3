//! Compiles the `.proto` files with protox (pure Rust), so a fresh machine needs no `protoc`.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "common/common.proto",
    "msp/identities.proto",
    "ledger/rwset/rwset.proto",
    "ledger/rwset/kvrwset.proto",
    "peer/chaincode.proto",
    "peer/chaincode_event.proto",
    "peer/proposal.proto",
    "peer/proposal_response.proto",
    "peer/transaction.proto",
    "peer/peer.proto",
    "peer/events.proto",
    "orderer/ab.proto",
    "gateway/gateway.proto",
    "mercato/ca.proto",
    "mercato/lifecycle.proto",
    "mercato/channel.proto",
    "mercato/raft.proto",
    "mercato/ledger.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from("protos");
    println!("cargo:rerun-if-changed=protos");
    let files: Vec<PathBuf> = FILES.iter().map(|f| root.join(f)).collect();
    let fds = protox::compile(&files, [&root])?;
    // Maps decode into BTreeMaps: whatever iterates them (hashing, validation) sees one order.
    tonic_prost_build::configure()
        .build_transport(false)
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}
