//! Mercato's identity root: the MSP library every node uses to decide who signed what, and (later)
//! the certificate authority server that issues the credentials.
//!
//! Identities are X.509 certificates signed by an organisation's CA, carrying their role in an OU
//! (Fabric's NodeOUs: client, peer, orderer, admin, plus Mercato's auditor) and attributes in Fabric
//! CA's extension. Signatures are ECDSA P-256 with SHA-256 and low-S (Fabric's default), or Ed25519
//! (Fabric 3; much faster to verify, more so batched). `ring` is the only crypto provider;
//! `ed25519-dalek` does batch verification.
//!
//! # Layout
//! - [`crypto`]: keys, signing with low-S normalisation, verification, Ed25519 batches, PEM.
//! - [`identity`]: [`Role`], validated [`Identity`], [`SigningIdentity`].
//! - [`msp`]: one organisation's [`Msp`]: loading its folder, validating a member certificate.
//! - [`manager`]: a channel's [`MspManager`] with the bounded cache of validated identities.
//! - [`policy`]: signature policies (`AND`, `OR`, `OutOf`, `MAJORITY Endorsement`) and their
//!   evaluation.
//! - [`authority`]: the issuing core (root and intermediate CAs, member certificates, CRLs).
//! - [`error`]: [`Error`] and [`Result`].
//! - `testing` (feature `testing`): organisations with real CAs for other crates' tests.

pub mod authority;
pub mod crypto;
pub mod error;
pub mod identity;
pub mod manager;
pub mod msp;
pub mod policy;
#[cfg(feature = "testing")]
pub mod testing;

pub use crypto::{KeyAlgorithm, PublicKey, SigningKey};
pub use error::{Error, Result};
pub use identity::{Identity, Role, SigningIdentity};
pub use manager::MspManager;
pub use msp::Msp;
