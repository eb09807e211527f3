//! The guest SDK for Mercato chaincode: Rust compiled to `wasm32-unknown-unknown`.
//!
//! Nothing is built here yet (issue "Rust WASM chaincode"). This crate will depend on nothing of
//! ours, and never on tokio or sled.
//!
//! # Layout
//! Empty.
#![no_std]
