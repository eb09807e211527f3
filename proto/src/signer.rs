//! The signing interface the builders use. `mercato-ca` implements it for its signing identities;
//! this crate never holds a private key.

/// Something that signs as an identity: a client, a peer or an orderer.
pub trait Signer: Send + Sync {
    /// The signer's serialized `msp.SerializedIdentity` bytes (the "creator").
    fn creator(&self) -> &[u8];

    /// Signs `message` as Fabric does: ECDSA over SHA-256(message) in DER with low-S, or Ed25519
    /// over the message itself.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// A signer could not produce a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(pub String);
