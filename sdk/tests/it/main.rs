//! Integration tests of the SDK against an in-process network of real nodes.

mod audit;
mod cli;
mod gateway;
mod interop;
mod net;
