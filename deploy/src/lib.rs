//! The Mercato network launcher: one command brings a whole network to life on this machine.
//!
//! `up` builds what is needed, starts each organisation's CA, registers and enrolls every node,
//! admin, seller and auditor through the CAs' API, writes the MSP folders, node configurations
//! and the channel's genesis block, starts orderers and peers as child processes (a log each),
//! defines the chaincodes through the lifecycle, and runs the commerce demo through the SDK.
//! Everything is recorded in `network.json` in the data directory, so `up` again resumes the
//! same network, and `down`, `status` and `restart` find its nodes.
//!
//! # Layout
//! - [`spec`]: the network spec (TOML; `deploy/network.toml` is the commented default).
//! - [`network`]: making the network (CAs, credentials, genesis, configurations), the node
//!   processes, readiness, and the record.
//! - [`demo`]: chaincode definition through the SDK, the commerce demo, the auditor's chain
//!   check.
//! - `main.rs`: the `mercato-deploy` command line.

pub mod demo;
pub mod network;
pub mod spec;
