//! A key-value chaincode with the functions of Fabric's usual asset samples, for benchmarks and
//! examples: `put` (a blind write), `get`, `del`, and `rmw` (read a key, write it back with
//! its value and a suffix: the read-modify-write workload, where two concurrent updates of one
//! key conflict).

use mercato_chaincode::{Context, Error, contract, export};

/// The largest value `put` accepts.
const MAX_VALUE: usize = 64 << 10;

/// The contract.
pub struct Kv;

impl Kv {
    fn put(ctx: &mut dyn Context, key: String, value: String) -> Result<(), Error> {
        if key.is_empty() || value.len() > MAX_VALUE {
            return Err(Error::msg(format!(
                "key must not be empty and the value at most {MAX_VALUE} bytes"
            )));
        }
        ctx.put_state(&key, value.as_bytes())
    }

    fn get(ctx: &mut dyn Context, key: String) -> Result<Vec<u8>, Error> {
        ctx.get_state(&key)?
            .ok_or_else(|| Error::not_found(format!("no key {key}")))
    }

    fn del(ctx: &mut dyn Context, key: String) -> Result<(), Error> {
        ctx.delete_state(&key)
    }

    /// Reads `key` (absent: empty) and writes it back as `value`, returning the old value's
    /// length: the read makes concurrent updates of one key conflict at commit.
    fn rmw(ctx: &mut dyn Context, key: String, value: String) -> Result<Vec<u8>, Error> {
        let old = ctx.get_state(&key)?.unwrap_or_default();
        if value.len() > MAX_VALUE {
            return Err(Error::msg(format!("the value is over {MAX_VALUE} bytes")));
        }
        ctx.put_state(&key, value.as_bytes())?;
        Ok(old.len().to_string().into_bytes())
    }
}

contract!(Kv {
    "put" => put(key: String, value: String),
    "get" => get(key: String),
    "del" => del(key: String),
    "rmw" => rmw(key: String, value: String),
});

export!(Kv);

#[cfg(test)]
mod tests {
    use super::*;
    use mercato_chaincode::MemContext;

    fn call(ctx: &mut MemContext, args: &[&str]) -> mercato_chaincode::abi::InvokeResult {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        mercato_chaincode::dispatch::<Kv>(ctx, &args)
    }

    #[test]
    fn put_get_rmw_del() {
        let mut ctx = MemContext::new();
        assert_eq!(call(&mut ctx, &["put", "a", "hello"]).status, 200);
        assert_eq!(call(&mut ctx, &["get", "a"]).payload, b"hello");
        let r = call(&mut ctx, &["rmw", "a", "bye"]);
        assert_eq!((r.status, r.payload.as_slice()), (200, b"5".as_slice()));
        assert_eq!(call(&mut ctx, &["get", "a"]).payload, b"bye");
        assert_eq!(call(&mut ctx, &["del", "a"]).status, 200);
        assert_eq!(call(&mut ctx, &["get", "a"]).status, 404);
        assert!(call(&mut ctx, &["put", "", "x"]).status >= 400);
        assert!(call(&mut ctx, &["nope"]).status >= 400);
    }
}
