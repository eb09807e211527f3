//! Mercato's identity root: the MSP library every node uses to decide who signed what, and the
//! certificate authority server (with its client) that issues the credentials.
//!
//! Identities are X.509 certificates signed by an organisation's CA, carrying their role in an OU
//! (Fabric's NodeOUs: client, peer, orderer, admin, plus Mercato's auditor) and attributes in Fabric
//! CA's extension. Signatures are ECDSA P-256 with SHA-256 and low-S (Fabric's default), or Ed25519
//! (Fabric 3; much faster to verify, more so batched). `ring` is the only crypto provider;
//! Ed25519 is verified with `curve25519-dalek` under one cofactored rule, single or batched, so a
//! verdict never depends on which other signatures share a batch.
//!
//! The CA server (`mercato-ca start`) serves `mercato.CertificateAuthority` over TLS from a CA home
//! made by `mercato-ca init`: registration, enrollment with a locally generated key's CSR,
//! re-enrollment, revocation and CRLs, with a sled registry. Its client writes members' MSP
//! folders in the layout [`Msp::load`] and [`SigningIdentity::load`] read.
//!
//! # Layout
//! - [`crypto`]: keys, signing with low-S normalisation, verification, Ed25519 batches, PEM.
//! - [`identity`]: [`Role`], validated [`Identity`], [`SigningIdentity`].
//! - [`msp`]: one organisation's [`Msp`]: loading its folder, validating a member certificate.
//! - [`manager`]: a channel's [`MspManager`] with the bounded cache of validated identities.
//! - [`policy`]: signature policies (`AND`, `OR`, `OutOf`, `MAJORITY Endorsement`) and their
//!   evaluation.
//! - [`channel`]: a channel's configuration from its genesis block: organisations, MSPs,
//!   policies, consenters, batch settings.
//! - [`authority`]: the issuing core (root and intermediate CAs, member and TLS certificates,
//!   CRLs).
//! - [`csr`]: PKCS#10 requests: made by clients, verified by the CA.
//! - [`password`]: enrollment secrets and their PBKDF2 hashes.
//! - [`registry`]: the CA's store of registrations, issued certificates and revocations
//!   ([`registry::SledRegistry`], [`registry::MemRegistry`]).
//! - [`server`]: the CA server: configuration, logic, authentication and the gRPC service.
//! - [`home`]: the CA home (`init`, keys 0600, loading).
//! - [`client`]: the CA client and the MSP folder writer.
//! - [`error`]: [`Error`] (MSP library), [`RegistryError`], [`CaError`] (CA server),
//!   [`ClientError`], and [`Result`].
//! - `bin/mercato-ca.rs`: the `mercato-ca` binary (`init`, `start`, and the client commands).
//! - `testing` (feature `testing`): organisations with real CAs for other crates' tests.

pub mod authority;
pub mod channel;
pub mod client;
pub mod crypto;
pub mod csr;
pub mod error;
pub mod home;
pub mod identity;
pub mod manager;
pub mod msp;
pub mod password;
pub mod policy;
pub mod registry;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

pub use crypto::{KeyAlgorithm, PublicKey, SigningKey};
pub use error::{CaError, ClientError, Error, RegistryError, Result};
pub use identity::{Identity, Role, SigningIdentity};
pub use manager::MspManager;
pub use msp::Msp;
