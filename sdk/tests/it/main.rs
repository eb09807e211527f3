//! Integration tests of the SDK against an in-process network of real nodes.

mod cli;
mod gateway;
mod interop;
mod net;
