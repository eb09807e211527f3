//! The commerce contract's rules, natively against the in-memory ledger. Each call runs as a
//! transaction would: a call that fails leaves the ledger as it was. The same scenarios run
//! against the compiled module in real peers in `peer/tests/it/commerce`.

mod common;
mod flow;
mod rules;

pub use common::*;

use mercato_chaincode::MemContext;
use mercato_chaincode::abi::InvokeResult;
use mercato_commerce::Commerce;

/// A ledger in memory.
pub struct Market {
    pub ctx: MemContext,
    tx: u64,
}

impl Market {
    /// An empty ledger.
    pub fn empty() -> Self {
        let mut ctx = MemContext::new();
        ctx.timestamp = (1_800_000_000, 0);
        Market { ctx, tx: 0 }
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

    /// The whole state.
    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        self.ctx.state.clone().into_iter().collect()
    }

    /// The name of the last event set.
    pub fn last_event(&self) -> String {
        self.ctx
            .events
            .last()
            .map(|e| e.0.clone())
            .unwrap_or_default()
    }

    /// Moves the clock on by a day.
    pub fn next_day(&mut self) {
        self.ctx.timestamp.0 += 86_400;
    }
}

// Native only: a real channel's configuration refuses such MSP ids before any chaincode runs
// (`mercato_ca::channel`), so the peer harness has no such organisation to issue from.

#[test]
fn organisations_that_would_pass_for_reserved_accounts_cannot_write() {
    let mut m = Market::new();
    for msp in ["brand", "platform", "Sellers:MSP"] {
        let who: common::Actor = (
            Box::leak(msp.to_string().into_boxed_str()),
            "acme",
            "client",
            &[],
        );
        m.refused(who, &["open_shop", "x", "X"], 403, "reserved or ambiguous");
    }
}
