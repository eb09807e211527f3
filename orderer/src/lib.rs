//! The Mercato ordering service: Broadcast, block cutting, Raft replication (openraft) and Deliver.
//!
//! Nothing is built here yet: this crate is a placeholder in the workspace so that the layout of
//! `ARCHITECTURE.md` holds from the start. The ordering service is issue "Ordering service on Raft".
//!
//! # Layout
//! Empty.
