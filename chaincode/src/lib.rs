//! The guest SDK for Mercato chaincode: contracts are Rust compiled to `wasm32-unknown-unknown`
//! and run inside the peer's sandbox (no clock, no randomness, no I/O but the ledger).
//!
//! A contract is a type whose methods are exported by name with [`contract!`], and made the
//! module's entry point with [`export!`]:
//!
//! ```
//! use mercato_chaincode::{Context, Error, contract};
//!
//! pub struct Notes;
//!
//! impl Notes {
//!     fn put(ctx: &mut dyn Context, key: String, text: String) -> Result<(), Error> {
//!         ctx.put_state(&key, text.as_bytes())
//!     }
//!     fn get(ctx: &mut dyn Context, key: String) -> Result<Vec<u8>, Error> {
//!         ctx.get_state(&key)?.ok_or_else(|| Error::not_found(format!("no note {key}")))
//!     }
//! }
//!
//! contract!(Notes {
//!     "put" => put(key: String, text: String),
//!     "get" => get(key: String),
//! });
//! // In the chaincode crate: mercato_chaincode::export!(Notes);
//! ```
//!
//! The same contract runs natively against [`MemContext`] in unit tests.
//!
//! # Layout
//! - [`abi`]: the host/guest boundary (messages and their codec), shared with the peer.
//! - [`Context`] and [`Error`]: what a contract sees (`context.rs`, `error.rs`).
//! - [`args`]: typed decoding of arguments ([`FromArg`]) and encoding of results ([`IntoPayload`]).
//! - [`composite`]: Fabric-style composite keys.
//! - [`mem`]: [`MemContext`], an in-memory ledger for native tests.
//! - `guest` (wasm32 only): the exports and imports behind [`export!`].
//!
//! This crate depends on nothing of Mercato's, and never on tokio or sled.

extern crate alloc;

pub mod abi;
pub mod args;
pub mod composite;
mod context;
mod error;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;
pub mod mem;

pub use abi::Creator;
pub use args::{Args, FromArg, IntoPayload, Json};
pub use context::{Context, Page};
pub use error::Error;
pub use mem::MemContext;

/// A contract: dispatches a function name and its arguments. Implemented by [`contract!`].
pub trait Contract {
    /// Runs `function` with `args` (the arguments after the function name).
    fn invoke(ctx: &mut dyn Context, function: &str, args: &[Vec<u8>]) -> Result<Vec<u8>, Error>;
}

/// Exports methods of a contract type by name, decoding each argument with [`FromArg`] and the
/// result with [`IntoPayload`]. Each method takes `&mut dyn Context` first and returns
/// `Result<T, Error>`.
#[macro_export]
macro_rules! contract {
    ($ty:ident { $( $name:literal => $method:ident ( $( $arg:ident : $argty:ty ),* $(,)? ) ),* $(,)? }) => {
        impl $crate::Contract for $ty {
            fn invoke(
                ctx: &mut dyn $crate::Context,
                function: &str,
                args: &[::std::vec::Vec<u8>],
            ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::Error> {
                match function {
                    $( $name => {
                        #[allow(unused_mut)]
                        let mut it = $crate::Args::new(function, args);
                        $( let $arg: $argty = it.next(stringify!($arg))?; )*
                        it.finish()?;
                        $crate::IntoPayload::into_payload($ty::$method(ctx $(, $arg)*)?)
                    } )*
                    other => ::core::result::Result::Err($crate::Error::unknown_function(other)),
                }
            }
        }
    };
}

/// Makes a [`Contract`] the entry point of the wasm module (the exports of [`abi`]).
#[macro_export]
macro_rules! export {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[unsafe(no_mangle)]
        pub extern "C" fn mercato_invoke(ptr: u32, len: u32) -> i64 {
            $crate::guest::invoke::<$ty>(ptr, len)
        }
        #[cfg(target_arch = "wasm32")]
        #[unsafe(no_mangle)]
        pub extern "C" fn mercato_alloc(len: u32) -> u32 {
            $crate::guest::alloc(len)
        }
        #[cfg(target_arch = "wasm32")]
        #[unsafe(no_mangle)]
        pub extern "C" fn mercato_abi_version() -> i32 {
            $crate::guest::abi_version()
        }
    };
}

/// Runs a contract over a context as the host would: `args[0]` is the function name. Returns
/// Fabric's response (status 200 with the payload, or the error's status and message).
pub fn dispatch<C: Contract>(ctx: &mut dyn Context, args: &[Vec<u8>]) -> abi::InvokeResult {
    let outcome = match args.split_first() {
        None => Err(Error::bad_request("no function name in args[0]")),
        Some((f, rest)) => match core::str::from_utf8(f) {
            Ok(function) => C::invoke(ctx, function, rest),
            Err(_) => Err(Error::bad_request("the function name is not UTF-8")),
        },
    };
    match outcome {
        Ok(payload) => abi::InvokeResult {
            status: 200,
            message: String::new(),
            payload,
        },
        Err(e) => abi::InvokeResult {
            status: e.status(),
            message: e.message().to_owned(),
            payload: Vec::new(),
        },
    }
}
