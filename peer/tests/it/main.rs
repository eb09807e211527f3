//! Integration tests of the ledger and the committer, with real identities, signatures and
//! blocks.

mod fixture;
mod validation;
