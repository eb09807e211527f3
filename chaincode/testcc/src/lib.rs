//! A chaincode for the peer's tests and benchmarks. Besides ordinary calls it has functions that
//! misbehave on purpose — loop forever, grow memory without end, return a huge value, recurse
//! without end, panic — so the runtime can show that none of them escapes the sandbox.

use mercato_chaincode::{Context, Error, Json, composite, contract, export};

/// The test contract.
pub struct TestCc;

impl TestCc {
    fn put(ctx: &mut dyn Context, key: String, value: String) -> Result<(), Error> {
        ctx.put_state(&key, value.as_bytes())
    }

    fn get(ctx: &mut dyn Context, key: String) -> Result<Vec<u8>, Error> {
        ctx.get_state(&key)?
            .ok_or_else(|| Error::not_found(format!("no key {key}")))
    }

    fn del(ctx: &mut dyn Context, key: String) -> Result<(), Error> {
        ctx.delete_state(&key)
    }

    /// Reads two keys and writes both: the benchmark's unit of work.
    fn transfer(ctx: &mut dyn Context, from: String, to: String, amount: i64) -> Result<(), Error> {
        let read = |ctx: &mut dyn Context, k: &str| -> Result<i64, Error> {
            match ctx.get_state(k)? {
                None => Ok(0),
                Some(v) => String::from_utf8_lossy(&v)
                    .parse()
                    .map_err(|_| Error::conflict(format!("{k} is not a number"))),
            }
        };
        let a = read(ctx, &from)?;
        let b = read(ctx, &to)?;
        let a = a
            .checked_sub(amount)
            .ok_or_else(|| Error::conflict("overflow"))?;
        let b = b
            .checked_add(amount)
            .ok_or_else(|| Error::conflict("overflow"))?;
        ctx.put_state(&from, a.to_string().as_bytes())?;
        ctx.put_state(&to, b.to_string().as_bytes())
    }

    /// Writes then reads a key: the read sees the write.
    fn put_then_get(ctx: &mut dyn Context, key: String, value: String) -> Result<Vec<u8>, Error> {
        ctx.put_state(&key, value.as_bytes())?;
        ctx.get_state(&key)?
            .ok_or_else(|| Error::msg("own write not visible"))
    }

    fn credit(ctx: &mut dyn Context, key: String, amount: i64) -> Result<(), Error> {
        ctx.add(&key, amount, Some(0))
    }

    /// All keys of a range, following bookmarks page by page.
    fn scan(
        ctx: &mut dyn Context,
        start: String,
        end: String,
        page: u32,
    ) -> Result<Json<Vec<String>>, Error> {
        let mut keys = Vec::new();
        let mut bookmark = String::new();
        loop {
            let p = ctx.get_state_range(&start, &end, page, &bookmark)?;
            keys.extend(p.entries.into_iter().map(|(k, _)| k));
            if p.bookmark.is_empty() {
                return Ok(Json(keys));
            }
            bookmark = p.bookmark;
        }
    }

    fn order(ctx: &mut dyn Context, shop: String, id: String) -> Result<(), Error> {
        let key = composite::create("order", &[&shop, &id])?;
        ctx.put_state(&key, ctx.txid().to_owned().as_bytes())?;
        ctx.set_event("OrderPlaced", id.as_bytes())
    }

    /// Who called, as the chaincode sees it.
    fn whoami(ctx: &mut dyn Context) -> Result<String, Error> {
        let c = ctx.creator();
        Ok(format!(
            "{} {} {} role={}",
            c.msp_id,
            c.id,
            c.role,
            ctx.attribute("role").unwrap_or("-")
        ))
    }

    fn now(ctx: &mut dyn Context) -> Result<i64, Error> {
        Ok(ctx.timestamp().0)
    }

    /// Calls `get` of another chaincode.
    fn call_get(ctx: &mut dyn Context, chaincode: String, key: String) -> Result<Vec<u8>, Error> {
        let r = ctx.invoke_chaincode(&chaincode, &[b"get".to_vec(), key.into_bytes()])?;
        if r.status >= 400 {
            return Err(Error::with_status(r.status, r.message));
        }
        Ok(r.payload)
    }

    fn fail(_ctx: &mut dyn Context, message: String) -> Result<(), Error> {
        Err(Error::conflict(message))
    }

    // The hostile ones.

    fn spin(_ctx: &mut dyn Context) -> Result<(), Error> {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    fn grow(_ctx: &mut dyn Context) -> Result<(), Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }

    fn huge(_ctx: &mut dyn Context, mib: u32) -> Result<Vec<u8>, Error> {
        Ok(vec![7u8; (mib as usize) << 20])
    }

    // Recursion without end is the point: the runtime must stop it with a clean error.
    #[allow(unconditional_recursion, clippy::only_used_in_recursion)]
    fn recurse(ctx: &mut dyn Context, depth: u64) -> Result<u64, Error> {
        let below = std::hint::black_box(Self::recurse(ctx, depth + 1))?;
        Ok(below + 1)
    }

    fn panic(_ctx: &mut dyn Context, message: String) -> Result<(), Error> {
        panic!("{message}");
    }

    fn many_calls(ctx: &mut dyn Context, n: u32) -> Result<(), Error> {
        for i in 0..n {
            ctx.put_state(&format!("k{i}"), b"v")?;
        }
        Ok(())
    }
}

contract!(TestCc {
    "put" => put(key: String, value: String),
    "get" => get(key: String),
    "del" => del(key: String),
    "transfer" => transfer(from: String, to: String, amount: i64),
    "put_then_get" => put_then_get(key: String, value: String),
    "credit" => credit(key: String, amount: i64),
    "scan" => scan(start: String, end: String, page: u32),
    "order" => order(shop: String, id: String),
    "whoami" => whoami(),
    "now" => now(),
    "call_get" => call_get(chaincode: String, key: String),
    "fail" => fail(message: String),
    "spin" => spin(),
    "grow" => grow(),
    "huge" => huge(mib: u32),
    "recurse" => recurse(depth: u64),
    "panic" => panic(message: String),
    "many_calls" => many_calls(n: u32),
});

export!(TestCc);

#[cfg(test)]
mod tests {
    use mercato_chaincode::{MemContext, dispatch};

    use super::TestCc;

    fn call(ctx: &mut MemContext, args: &[&str]) -> mercato_chaincode::abi::InvokeResult {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        dispatch::<TestCc>(ctx, &args)
    }

    #[test]
    fn runs_natively_against_the_memory_context() {
        let mut ctx = MemContext::new();
        assert_eq!(call(&mut ctx, &["put", "a", "1"]).status, 200);
        assert_eq!(call(&mut ctx, &["get", "a"]).payload, b"1");
        assert_eq!(call(&mut ctx, &["get", "zz"]).status, 404);
        assert_eq!(call(&mut ctx, &["transfer", "a", "b", "5"]).status, 200);
        assert_eq!(ctx.state["a"], b"-4");
        assert_eq!(ctx.state["b"], b"5");
        let r = call(&mut ctx, &["transfer", "a", "b", "x"]);
        assert_eq!(r.status, 400);
        assert!(
            r.message.contains("argument amount is not a i64"),
            "{}",
            r.message
        );
        assert_eq!(call(&mut ctx, &["nope"]).status, 400);
        assert_eq!(call(&mut ctx, &["get"]).status, 400);
        assert_eq!(call(&mut ctx, &["get", "a", "extra"]).status, 400);
        ctx.as_creator("Brand1MSP", "acme", "client", &[("role", "brand")]);
        assert_eq!(
            call(&mut ctx, &["whoami"]).payload,
            b"Brand1MSP acme client role=brand"
        );
        for i in 0..5 {
            call(&mut ctx, &["put", &format!("r{i}"), "x"]);
        }
        assert_eq!(
            call(&mut ctx, &["scan", "r", "s", "2"]).payload,
            br#"["r0","r1","r2","r3","r4"]"#
        );
        assert_eq!(call(&mut ctx, &["credit", "fee", "5"]).status, 200);
        assert_eq!(call(&mut ctx, &["credit", "fee", "-6"]).status, 409);
    }
}
