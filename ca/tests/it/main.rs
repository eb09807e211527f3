//! Integration tests of the MSP library with real certificates issued by the authority core, and
//! of the CA server end to end.

mod channel;
mod fixture;
mod msp;

mod policy;
mod server;
