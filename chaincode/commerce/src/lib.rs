//! The commerce chaincode: a Likr-style social-commerce network on the ledger.
//!
//! Brands list products whose attributes never change once recorded; any member opens a shop and
//! resells them for a commission; a buyer who receives an order and reviews it gets a personal
//! shop for what they bought. Orders are paid in the platform's reward coin into escrow, shipped
//! by the brand, confirmed by the buyer and settled in one transaction (brand revenue, shop
//! commission, platform fee), or cancelled, refunded, or disputed before arbiters. Activity earns
//! coins by the platform's rule table within a daily cap. Physical items carry serials with a
//! chain of custody anyone can check. Brands and shops have a sales ledger for auditors.
//!
//! Hot accounts (fees, brand revenue, a busy shop's commissions, stock) change only by
//! commutative additions, so hundreds of concurrent orders commit in one block.
//!
//! # Layout
//! - [`access`]: who the caller is and what it may do (platform, brand operator, member,
//!   auditor).
//! - [`store`]: keys, records, limits and checks.
//! - `coin`: settings, brands, rewards, arbiters; mint, transfer, burn, balances, supply.
//! - `catalogue`: products, prices, commissions, stock, attribute verification.
//! - `shop`: shops, listings, personal shops.
//! - `order`: orders, escrow, shipping, settlement, cancellation, disputes, reviews.
//! - `trace`: item serials and their custody.
//! - `sales`: the sales ledger.
//!
//! Every function and its arguments (`args[0]` is the name; numbers are decimal, attributes a
//! JSON object of strings) are listed in the [`contract!`] below.

pub mod access;
mod catalogue;
mod coin;
mod order;
mod sales;
mod shop;
pub mod store;
mod trace;

use mercato_chaincode::{Json, contract, export};
use std::collections::BTreeMap;

/// The commerce contract.
pub struct Commerce;

contract!(Commerce {
    // The platform.
    "init" => init(platform_msp: String, fee_bps: u64),
    "set_fee" => set_fee(fee_bps: u64),
    "get_config" => get_config(),
    "register_brand" => register_brand(name: String, msp_id: String),
    "set_rewards" => set_rewards(purchase: u64, review: u64, sale: u64, daily_cap: u64),
    "get_rewards" => get_rewards(),
    "add_arbiter" => add_arbiter(member: String),
    "remove_arbiter" => remove_arbiter(member: String),
    // The coin.
    "mint" => mint(account: String, amount: u64),
    "transfer" => transfer(from: String, to: String, amount: u64),
    "burn" => burn(amount: u64),
    "balance" => balance(account: String),
    "my_account" => my_account(),
    "brand_account" => brand_account_of(brand: String),
    "supply" => supply(),
    // The catalogue.
    "add_product" => add_product(brand: String, sku: String, name: String, attributes: Json<BTreeMap<String, String>>, price: u64, commission_bps: u64, stock: u64),
    "update_product" => update_product(brand: String, sku: String, price: u64, commission_bps: u64),
    "restock" => restock(brand: String, sku: String, delta: i64),
    "get_product" => get_product(brand: String, sku: String),
    "stock" => stock(brand: String, sku: String),
    "verify_product" => verify_product(brand: String, sku: String, attributes: Json<BTreeMap<String, String>>),
    // Shops.
    "open_shop" => open_shop(id: String, name: String),
    "list_product" => list_product(shop: String, brand: String, sku: String),
    "unlist_product" => unlist_product(shop: String, brand: String, sku: String),
    "get_shop" => get_shop(id: String),
    // Orders.
    "place_order" => place_order(id: String, shop: String, brand: String, sku: String, quantity: u64),
    "ship_order" => ship_order(id: String, tracking: String),
    "cancel_order" => cancel_order(id: String),
    "confirm_delivery" => confirm_delivery(id: String),
    "open_dispute" => open_dispute(id: String, reason: String),
    "vote" => vote(id: String, refund: bool),
    "review" => review(id: String, rating: u32, text: String),
    "get_order" => get_order(id: String),
    // Traceability.
    "register_item" => register_item(brand: String, sku: String, serial: String),
    "custody" => custody(serial: String, kind: String, to: String),
    "provenance" => provenance(serial: String),
    // The sales ledger.
    "sales" => sales(kind: String, name: String, page_size: u32, bookmark: String),
});

export!(Commerce);
