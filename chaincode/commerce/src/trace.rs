//! Traceability: a brand registers item serials of a product; whoever holds an item appends its
//! custody events; anyone reads an item's provenance and whether its chain of custody is
//! unbroken.
//!
//! A handover is two events: the holder records `shipped`, `sold` or `returned` naming the next
//! party, and that party records `received`, becoming the holder. The chain is unbroken when it
//! starts with the brand's `made` and every handover was received by the party it named.

use mercato_chaincode::{Context, Error, Json};
use serde::Serialize;

use crate::Commerce;
use crate::access::{self, brand_account};
use crate::catalogue;
use crate::store::{self, Custody, Item, MAX_EVENTS};

fn item_key(serial: &str) -> Result<String, Error> {
    store::key("item", &[serial])
}

fn item(ctx: &mut dyn Context, serial: &str) -> Result<Item, Error> {
    store::get(ctx, &item_key(serial)?)?
        .ok_or_else(|| Error::not_found(format!("no item {serial}")))
}

/// An item's history and whether its chain of custody holds.
#[derive(Debug, Serialize)]
pub struct Provenance {
    #[serde(flatten)]
    pub item: Item,
    pub unbroken: bool,
}

/// Replays the events: the chain holds if it starts with the brand's `made`, and each event is
/// recorded by the party that held the item (or, for `received`, the party it was handed to).
fn unbroken(item: &Item) -> bool {
    let brand = brand_account(&item.brand);
    let mut events = item.events.iter();
    match events.next() {
        Some(e) if e.kind == "made" && e.by == brand => {}
        _ => return false,
    }
    let mut holder = brand;
    let mut pending: Option<&str> = None;
    for e in events {
        match (e.kind.as_str(), pending) {
            ("received", Some(to)) if e.by == to => {
                holder = to.to_owned();
                pending = None;
            }
            ("shipped" | "sold" | "returned", None) if e.by == holder => pending = Some(&e.to),
            _ => return false,
        }
    }
    true
}

impl Commerce {
    /// The brand registers a physical item of one of its products.
    pub(crate) fn register_item(
        ctx: &mut dyn Context,
        brand: String,
        sku: String,
        serial: String,
    ) -> Result<(), Error> {
        access::brand_operator(ctx, &brand)?;
        catalogue::product(ctx, &brand, &sku)?;
        store::check_id("serial", &serial)?;
        let key = item_key(&serial)?;
        if ctx.get_state(&key)?.is_some() {
            return Err(Error::conflict(format!(
                "item {serial} is already registered"
            )));
        }
        let holder = brand_account(&brand);
        let made = Custody {
            kind: "made".into(),
            by: holder.clone(),
            to: String::new(),
            at: ctx.timestamp().0,
            txid: ctx.txid().to_owned(),
        };
        store::put(
            ctx,
            &key,
            &Item {
                serial,
                brand,
                sku,
                holder,
                pending: None,
                events: vec![made],
            },
        )
    }

    /// Appends a custody event: `shipped`, `sold` or `returned` by the holder (naming `to`), or
    /// `received` by the party it was handed to.
    pub(crate) fn custody(
        ctx: &mut dyn Context,
        serial: String,
        kind: String,
        to: String,
    ) -> Result<(), Error> {
        access::writer(ctx)?;
        let mut it = item(ctx, &serial)?;
        if it.events.len() >= MAX_EVENTS {
            return Err(Error::bad_request(format!(
                "item {serial} has {MAX_EVENTS} events, the most it records"
            )));
        }
        let by = match kind.as_str() {
            "shipped" | "sold" | "returned" => {
                if it.pending.is_some() {
                    return Err(Error::with_status(
                        412,
                        format!(
                            "item {serial} is on its way to {}: it must be received first",
                            it.pending.unwrap_or_default()
                        ),
                    ));
                }
                if !access::acts_as(ctx, &it.holder)? {
                    return Err(Error::forbidden(format!(
                        "{} does not hold item {serial} ({} does)",
                        access::member(ctx),
                        it.holder
                    )));
                }
                store::check_id("recipient", &to)?;
                if to == it.holder {
                    return Err(Error::bad_request("an item handed over to its own holder"));
                }
                it.pending = Some(to.clone());
                it.holder.clone()
            }
            "received" => {
                let Some(pending) = it.pending.clone() else {
                    return Err(Error::with_status(
                        412,
                        format!("item {serial} is not on its way to anyone"),
                    ));
                };
                if !access::acts_as(ctx, &pending)? {
                    return Err(Error::forbidden(format!(
                        "item {serial} was handed to {pending}, not {}",
                        access::member(ctx)
                    )));
                }
                if !to.is_empty() {
                    return Err(Error::bad_request("received names no recipient"));
                }
                it.holder = pending.clone();
                it.pending = None;
                pending
            }
            other => {
                return Err(Error::bad_request(format!(
                    "custody event {other:?}: shipped, sold, returned or received"
                )));
            }
        };
        it.events.push(Custody {
            kind,
            by,
            to,
            at: ctx.timestamp().0,
            txid: ctx.txid().to_owned(),
        });
        store::put(ctx, &item_key(&serial)?, &it)
    }

    pub(crate) fn provenance(
        ctx: &mut dyn Context,
        serial: String,
    ) -> Result<Json<Provenance>, Error> {
        let it = item(ctx, &serial)?;
        let unbroken = unbroken(&it);
        Ok(Json(Provenance { item: it, unbroken }))
    }
}
