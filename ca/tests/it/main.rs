//! Integration tests of the MSP library with real certificates issued by the authority core.

mod fixture;
mod msp;

mod policy;
