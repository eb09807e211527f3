//! Integration tests of the SDK against an in-process network of real nodes.

mod gateway;
mod interop;
mod net;
