//! Keys, records and the checks every function shares.
//!
//! Every record is JSON under a composite key (`\0type\0part\0…\0`), so that all records of a
//! kind, or of one brand or shop, form one range. Balances, stock, supply and sales totals are
//! decimal numbers changed only by commutative additions ([`Context::add`]): concurrent orders
//! never conflict on them, and a bound (a balance or stock below zero) makes only the offending
//! transaction invalid at commit.

use std::collections::BTreeMap;

use mercato_chaincode::{Context, Error, composite};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Basis points: 10 000 is 100 %.
pub const BPS: u64 = 10_000;
/// The longest id (order, shop, sku, serial, brand).
pub const MAX_ID: usize = 64;
/// The longest name or free text.
pub const MAX_TEXT: usize = 2_000;
/// The most attributes a product has.
pub const MAX_ATTRIBUTES: usize = 64;
/// The most custody events an item records.
pub const MAX_EVENTS: usize = 1_000;
/// The most arbiters.
pub const MAX_ARBITERS: usize = 25;

/// The account that collects the platform's fees.
pub const FEES_ACCOUNT: &str = "platform:fees";

/// A storage or encoding fault: the ledger holds something this contract never wrote.
pub fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::with_status(500, format!("stored {what} is corrupt: {e}"))
}

/// A composite key.
pub fn key(kind: &str, parts: &[&str]) -> Result<String, Error> {
    composite::create(kind, parts)
}

/// Reads a JSON record.
pub fn get<T: DeserializeOwned>(ctx: &mut dyn Context, key: &str) -> Result<Option<T>, Error> {
    match ctx.get_state(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(key, e)),
    }
}

/// Writes a JSON record.
pub fn put<T: Serialize>(ctx: &mut dyn Context, key: &str, value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::msg(e.to_string()))?;
    ctx.put_state(key, &bytes)
}

/// Reads a number kept by additions (absent: 0).
pub fn number(ctx: &mut dyn Context, key: &str) -> Result<i64, Error> {
    match ctx.get_state(key)? {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt(key, "not a number")),
    }
}

/// A positive amount of coins (or items) as a delta.
pub fn amount(name: &str, n: u64) -> Result<i64, Error> {
    if n == 0 {
        return Err(Error::bad_request(format!("{name} must be positive")));
    }
    i64::try_from(n).map_err(|_| Error::bad_request(format!("{name} {n} is too large")))
}

/// `part` basis points of `total`, rounded down.
pub fn share(total: u64, bps: u64) -> u64 {
    // total < 2^63 and bps <= 10 000: the product fits in u128, the quotient in u64.
    ((total as u128 * bps as u128) / BPS as u128) as u64
}

/// Checks an id: 1 to 64 of letters, digits and `. _ - : @`.
pub fn check_id(what: &str, id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "{what} {id:?}: 1 to {MAX_ID} letters, digits, '.', '_', '-', ':' or '@'"
        )))
    }
}

/// Checks free text (names, reviews, reasons): at most 2 000 bytes, no control characters but
/// newlines.
pub fn check_text(what: &str, text: &str, required: bool) -> Result<(), Error> {
    if required && text.trim().is_empty() {
        return Err(Error::bad_request(format!("{what} is empty")));
    }
    if text.len() > MAX_TEXT {
        return Err(Error::bad_request(format!(
            "{what} of {} bytes, over the limit of {MAX_TEXT}",
            text.len()
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::bad_request(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

/// The day of a timestamp (UTC), for daily caps.
pub fn day(ctx: &dyn Context) -> i64 {
    ctx.timestamp().0.div_euclid(86_400)
}

/// The contract's settings, made by `init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The platform organisation: it mints coins and sets the rules.
    pub platform_msp: String,
    /// The platform's fee on every settled order, in basis points.
    pub fee_bps: u64,
}

/// Coins given for activity, each capped per member per day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewards {
    /// Per verified purchase (a settled order), to the buyer.
    pub purchase: u64,
    /// Per review of a settled order, to the reviewer.
    pub review: u64,
    /// Per sale through a shop, to its owner.
    pub sale: u64,
    /// The most reward coins one member earns in one day.
    pub daily_cap: u64,
}

/// A brand and the organisation that acts for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brand {
    /// The brand's name.
    pub name: String,
    /// The organisation whose brand operators act for it.
    pub msp_id: String,
}

/// A product in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub brand: String,
    pub sku: String,
    pub name: String,
    /// Immutable once recorded.
    pub attributes: BTreeMap<String, String>,
    /// hex(SHA-256) of the attributes' canonical JSON: what authenticity checks compare.
    pub attributes_hash: String,
    /// Coins per unit.
    pub price: u64,
    /// What a reseller's shop earns of each sale, in basis points.
    pub commission_bps: u64,
}

/// A shop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shop {
    pub id: String,
    pub name: String,
    /// The member who owns it and earns its commissions.
    pub owner: String,
    /// Given automatically to a buyer who reviewed a purchase: lists only what its owner bought.
    pub personal: bool,
}

/// Where an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Paid into escrow, stock reserved.
    Placed,
    /// Shipped by the brand.
    Shipped,
    /// Escrow released: brand, shop and platform paid.
    Settled,
    /// Cancelled before shipping; escrow and stock returned.
    Cancelled,
    /// The buyer disputes it; arbiters vote.
    Disputed,
    /// Refunded after a dispute.
    Refunded,
}

/// A dispute and its votes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    pub reason: String,
    /// The arbiters when it was opened; a majority of them decides.
    pub arbiters: Vec<String>,
    /// Arbiter → refund (true) or release (false).
    pub votes: BTreeMap<String, bool>,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub buyer: String,
    pub shop: String,
    pub shop_owner: String,
    pub brand: String,
    pub sku: String,
    pub quantity: u64,
    pub unit_price: u64,
    /// Coins in escrow.
    pub total: u64,
    pub commission_bps: u64,
    pub fee_bps: u64,
    pub status: Status,
    pub tracking: String,
    pub reviewed: bool,
    pub placed_at: i64,
    pub dispute: Option<Dispute>,
}

/// One settled sale, as the sales ledger lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    pub order: String,
    pub shop: String,
    pub brand: String,
    pub sku: String,
    pub buyer: String,
    pub quantity: u64,
    pub total: u64,
    pub brand_revenue: u64,
    pub commission: u64,
    pub fee: u64,
    pub settled_at: i64,
}

/// A review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub order: String,
    pub reviewer: String,
    pub brand: String,
    pub sku: String,
    pub rating: u32,
    pub text: String,
}

/// One custody event of an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Custody {
    /// made, shipped, received, sold, returned.
    pub kind: String,
    /// Who recorded it.
    pub by: String,
    /// Who the item goes to (shipped, sold, returned).
    pub to: String,
    pub at: i64,
    pub txid: String,
}

/// A physical item with a serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub serial: String,
    pub brand: String,
    pub sku: String,
    /// Who holds it now (a member, or `brand:NAME`).
    pub holder: String,
    /// Who it was handed to and has not yet acknowledged receiving it.
    pub pending: Option<String>,
    pub events: Vec<Custody>,
}
