//! Typed arguments and results: Fabric passes every argument as bytes.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::error::Error;

/// Decodes one argument.
pub trait FromArg: Sized {
    /// Decodes `bytes`; `name` is for the error message.
    fn from_arg(name: &str, bytes: &[u8]) -> Result<Self, Error>;
}

/// Encodes a method's result as the response payload.
pub trait IntoPayload {
    /// The payload bytes.
    fn into_payload(self) -> Result<Vec<u8>, Error>;
}

/// A JSON argument or result, through serde.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json<T>(pub T);

fn utf8<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a str, Error> {
    core::str::from_utf8(bytes)
        .map_err(|_| Error::bad_request(alloc::format!("argument {name} is not UTF-8")))
}

impl FromArg for String {
    fn from_arg(name: &str, bytes: &[u8]) -> Result<Self, Error> {
        utf8(name, bytes).map(String::from)
    }
}

impl FromArg for Vec<u8> {
    fn from_arg(_: &str, bytes: &[u8]) -> Result<Self, Error> {
        Ok(bytes.to_vec())
    }
}

macro_rules! numeric_arg {
    ($($t:ty),*) => {$(
        impl FromArg for $t {
            fn from_arg(name: &str, bytes: &[u8]) -> Result<Self, Error> {
                utf8(name, bytes)?.parse().map_err(|_| {
                    Error::bad_request(alloc::format!(
                        "argument {name} is not a {}: {:?}",
                        stringify!($t),
                        String::from_utf8_lossy(bytes)
                    ))
                })
            }
        }
        impl IntoPayload for $t {
            fn into_payload(self) -> Result<Vec<u8>, Error> {
                Ok(self.to_string().into_bytes())
            }
        }
    )*};
}
numeric_arg!(i64, u64, i32, u32, bool);

impl<T: serde::de::DeserializeOwned> FromArg for Json<T> {
    fn from_arg(name: &str, bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map(Json).map_err(|e| {
            Error::bad_request(alloc::format!("argument {name} is not valid JSON: {e}"))
        })
    }
}

impl IntoPayload for () {
    fn into_payload(self) -> Result<Vec<u8>, Error> {
        Ok(Vec::new())
    }
}

impl IntoPayload for Vec<u8> {
    fn into_payload(self) -> Result<Vec<u8>, Error> {
        Ok(self)
    }
}

impl IntoPayload for String {
    fn into_payload(self) -> Result<Vec<u8>, Error> {
        Ok(self.into_bytes())
    }
}

impl<T: serde::Serialize> IntoPayload for Json<T> {
    fn into_payload(self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&self.0)
            .map_err(|e| Error::msg(alloc::format!("cannot encode the result: {e}")))
    }
}

/// Walks a function's arguments in order (used by [`crate::contract!`]).
#[derive(Debug)]
pub struct Args<'a> {
    function: &'a str,
    args: &'a [Vec<u8>],
    next: usize,
}

impl<'a> Args<'a> {
    /// The arguments of `function`.
    pub fn new(function: &'a str, args: &'a [Vec<u8>]) -> Self {
        Args {
            function,
            args,
            next: 0,
        }
    }

    /// Decodes the next argument.
    pub fn next<T: FromArg>(&mut self, name: &str) -> Result<T, Error> {
        let bytes = self.args.get(self.next).ok_or_else(|| {
            Error::bad_request(alloc::format!(
                "{} needs argument {} ({name})",
                self.function,
                self.next + 1
            ))
        })?;
        self.next += 1;
        T::from_arg(name, bytes)
    }

    /// Fails if arguments are left over.
    pub fn finish(&self) -> Result<(), Error> {
        if self.next < self.args.len() {
            return Err(Error::bad_request(alloc::format!(
                "{} takes {} arguments, got {}",
                self.function,
                self.next,
                self.args.len()
            )));
        }
        Ok(())
    }
}
