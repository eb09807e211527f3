//! The actors and the assertions of the commerce scenarios, shared by the native harness
//! (`chaincode/commerce/tests/it`, over `MemContext`) and the peer's (`peer/tests/it/commerce`,
//! the compiled module endorsed by two peers and committed in blocks). A harness provides
//! `Market::empty`, `call`, `snapshot`, `last_event` and `next_day`.

use mercato_chaincode::abi::InvokeResult;

use super::Market;

/// (MSP id, name, NodeOU role, certificate attributes).
pub type Actor = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

pub const PLATFORM: Actor = ("PlatformMSP", "ops", "admin", &[]);
pub const ACME: Actor = ("Brand1MSP", "acme-ops", "client", &[("role", "brand")]);
pub const OTHER_BRAND: Actor = ("Brand2MSP", "zeta-ops", "client", &[("role", "brand")]);
pub const SELLER: Actor = ("SellersMSP", "sam", "client", &[]);
pub const BUYER: Actor = ("SellersMSP", "bob", "client", &[]);
pub const BUYER2: Actor = ("SellersMSP", "cat", "client", &[]);
pub const AUDITOR: Actor = ("AuditMSP", "eve", "auditor", &[]);

impl Default for Market {
    fn default() -> Self {
        Self::new()
    }
}

impl Market {
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

    /// A call that must succeed; its payload.
    pub fn ok(&mut self, who: Actor, args: &[&str]) -> Vec<u8> {
        let r: InvokeResult = self.call(who, args);
        assert_eq!(r.status, 200, "{args:?} by {}: {}", who.1, r.message);
        r.payload
    }

    /// A call that must fail with `status`, its message containing `says`, changing nothing.
    pub fn refused(&mut self, who: Actor, args: &[&str], status: i32, says: &str) {
        let before = self.snapshot();
        let r = self.call(who, args);
        assert_eq!(
            (r.status, r.message.contains(says)),
            (status, true),
            "{args:?} by {}: got {} {:?}, wanted {status} saying {says:?}",
            who.1,
            r.status,
            r.message
        );
        assert!(
            self.snapshot() == before,
            "a refused call changed the ledger"
        );
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

    /// An account's balance, as an auditor reads it.
    pub fn balance(&mut self, account: &str) -> i64 {
        self.number(AUDITOR, &["balance", account])
    }
}
