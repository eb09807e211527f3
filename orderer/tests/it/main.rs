//! The orderer's logic cores: block cutting with its timer, and Broadcast's checks with real
//! identities and signatures.

mod blockcutter;
mod broadcast;
mod cluster;
mod run;
mod store;
