//! placeholder, being written
pub mod policy;
