//! The commerce contract's rules, natively against the in-memory ledger. Each call runs as a
//! transaction would: a call that fails leaves the ledger as it was.

mod flow;
mod rules;

use mercato_chaincode::MemContext;
use mercato_chaincode::abi::InvokeResult;
use mercato_commerce::Commerce;

/// A ledger with actors.
pub struct Market {
    pub ctx: MemContext,
    tx: u64,
}

pub const PLATFORM: (&str, &str, &str, &[(&str, &str)]) = ("PlatformMSP", "ops", "admin", &[]);
pub const ACME: (&str, &str, &str, &[(&str, &str)]) =
    ("Brand1MSP", "acme-ops", "client", &[("role", "brand")]);
pub const OTHER_BRAND: (&str, &str, &str, &[(&str, &str)]) =
    ("Brand2MSP", "zeta-ops", "client", &[("role", "brand")]);
pub const SELLER: (&str, &str, &str, &[(&str, &str)]) = ("SellersMSP", "sam", "client", &[]);
pub const BUYER: (&str, &str, &str, &[(&str, &str)]) = ("SellersMSP", "bob", "client", &[]);
pub const BUYER2: (&str, &str, &str, &[(&str, &str)]) = ("SellersMSP", "cat", "client", &[]);
pub const AUDITOR: (&str, &str, &str, &[(&str, &str)]) = ("AuditMSP", "eve", "auditor", &[]);

pub type Actor = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

impl Market {
    /// An empty ledger.
    pub fn empty() -> Self {
        let mut ctx = MemContext::new();
        ctx.timestamp = (1_800_000_000, 0);
        Market { ctx, tx: 0 }
    }

    /// A ledger with the platform set up (2 % fee), brands acme (Brand1MSP) and zeta
    /// (Brand2MSP), product acme/shoe at 100 coins with 10 % commission and 50 in stock, sam's
    /// shop listing it, and 1 000 coins each for bob and cat.
    pub fn new() -> Self {
        let mut m = Market::empty();
        m.ok(PLATFORM, &["init", "PlatformMSP", "200"]);
        m.ok(PLATFORM, &["register_brand", "acme", "Brand1MSP"]);
        m.ok(PLATFORM, &["register_brand", "zeta", "Brand2MSP"]);
        m.ok(
            ACME,
            &[
                "add_product",
                "acme",
                "shoe",
                "Trail shoe",
                r#"{"colour":"red","size":"42"}"#,
                "100",
                "1000",
                "50",
            ],
        );
        m.ok(SELLER, &["open_shop", "sams", "Sam's shoes"]);
        m.ok(SELLER, &["list_product", "sams", "acme", "shoe"]);
        m.ok(PLATFORM, &["mint", "SellersMSP:bob", "1000"]);
        m.ok(PLATFORM, &["mint", "SellersMSP:cat", "1000"]);
        m
    }

    /// Calls the contract as `who`; a failed call's writes are undone.
    pub fn call(&mut self, who: Actor, args: &[&str]) -> InvokeResult {
        self.tx += 1;
        self.ctx.txid = format!("tx{}", self.tx);
        self.ctx.as_creator(who.0, who.1, who.2, who.3);
        let before = (self.ctx.state.clone(), self.ctx.events.len());
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        let r = mercato_chaincode::dispatch::<Commerce>(&mut self.ctx, &args);
        if r.status >= 400 {
            self.ctx.state = before.0;
            self.ctx.events.truncate(before.1);
        }
        r
    }

    /// A call that must succeed; its payload.
    pub fn ok(&mut self, who: Actor, args: &[&str]) -> Vec<u8> {
        let r = self.call(who, args);
        assert_eq!(r.status, 200, "{args:?} by {}: {}", who.1, r.message);
        r.payload
    }

    /// A call that must fail with `status`, its message containing `says`.
    pub fn refused(&mut self, who: Actor, args: &[&str], status: i32, says: &str) {
        let before = self.ctx.state.clone();
        let r = self.call(who, args);
        assert_eq!(
            (r.status, r.message.contains(says)),
            (status, true),
            "{args:?} by {}: got {} {:?}, wanted {status} saying {says:?}",
            who.1,
            r.status,
            r.message
        );
        assert_eq!(self.ctx.state, before, "a refused call changed the ledger");
    }

    /// A JSON result.
    pub fn json(&mut self, who: Actor, args: &[&str]) -> serde_json::Value {
        serde_json::from_slice(&self.ok(who, args)).unwrap()
    }

    /// A number result.
    pub fn number(&mut self, who: Actor, args: &[&str]) -> i64 {
        String::from_utf8(self.ok(who, args))
            .unwrap()
            .parse()
            .unwrap()
    }

    pub fn balance(&mut self, account: &str) -> i64 {
        self.number(AUDITOR, &["balance", account])
    }
}
