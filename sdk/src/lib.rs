//! The Mercato client SDK (identities, Gateway client, ledger queries) and the `mercato` CLI.
//!
//! Nothing is built here yet (issue "The peer node, Fabric-compatible Gateway, Rust SDK and seller
//! CLI"). Identities can already be loaded and used through `mercato_ca::msp`.
//!
//! # Layout
//! Empty.
