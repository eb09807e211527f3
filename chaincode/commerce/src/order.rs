//! Orders through shops, paid into escrow; shipping, delivery and settlement; cancellation,
//! refunds and disputes decided by arbiters; reviews.
//!
//! An order touches only keys of its own (the order, and per-order sales entries) plus
//! additions: stock, the buyer's balance, and at settlement the brand's revenue, the shop owner's
//! commission, the platform's fee and the sales totals. Concurrent orders through one shop, of
//! one product, therefore never conflict.

use mercato_chaincode::{Context, Error, Json};
use serde::Serialize;

use crate::Commerce;
use crate::access::{self, brand_account};
use crate::catalogue;
use crate::coin;
use crate::shop;
use crate::store::{
    self, Dispute, FEES_ACCOUNT, Order, Review, Rewards, Sale, Status, amount, share,
};

/// The key of an order.
pub fn order_key(id: &str) -> Result<String, Error> {
    store::key("order", &[id])
}

fn order(ctx: &mut dyn Context, id: &str) -> Result<Order, Error> {
    store::get(ctx, &order_key(id)?)?.ok_or_else(|| Error::not_found(format!("no order {id}")))
}

fn save(ctx: &mut dyn Context, o: &Order) -> Result<(), Error> {
    store::put(ctx, &order_key(&o.id)?, o)
}

#[derive(Serialize)]
struct OrderEvent<'a> {
    order: &'a str,
    status: Status,
    shop: &'a str,
    brand: &'a str,
    total: u64,
}

/// The order's chaincode event: `order.<status>`.
fn event(ctx: &mut dyn Context, o: &Order) -> Result<(), Error> {
    let name = match o.status {
        Status::Placed => "order.placed",
        Status::Shipped => "order.shipped",
        Status::Settled => "order.settled",
        Status::Cancelled => "order.cancelled",
        Status::Disputed => "order.disputed",
        Status::Refunded => "order.refunded",
    };
    let payload = serde_json::to_vec(&OrderEvent {
        order: &o.id,
        status: o.status,
        shop: &o.shop,
        brand: &o.brand,
        total: o.total,
    })
    .map_err(|e| Error::msg(e.to_string()))?;
    ctx.set_event(name, &payload)
}

fn wrong_status(o: &Order, action: &str, want: &str) -> Error {
    Error::with_status(
        412,
        format!("order {} is {:?}: {action} needs it {want}", o.id, o.status).to_lowercase(),
    )
}

/// Pays out the escrow: the brand's revenue, the shop owner's commission, the platform's fee;
/// records the sale and gives the rewards.
fn settle(ctx: &mut dyn Context, o: &mut Order) -> Result<(), Error> {
    let fee = share(o.total, o.fee_bps);
    let commission = share(o.total, o.commission_bps);
    let brand_revenue = o.total - fee - commission;
    coin::credit(ctx, &brand_account(&o.brand), brand_revenue)?;
    coin::credit(ctx, &o.shop_owner, commission)?;
    coin::credit(ctx, FEES_ACCOUNT, fee)?;
    let now = ctx.timestamp().0;
    let sale = Sale {
        order: o.id.clone(),
        shop: o.shop.clone(),
        brand: o.brand.clone(),
        sku: o.sku.clone(),
        buyer: o.buyer.clone(),
        quantity: o.quantity,
        total: o.total,
        brand_revenue,
        commission,
        fee,
        settled_at: now,
    };
    let total = amount("total", o.total)?;
    for (kind, name) in [("brand", o.brand.as_str()), ("shop", o.shop.as_str())] {
        store::put(ctx, &store::key("sale", &[kind, name, &o.id])?, &sale)?;
        ctx.add(&store::key("sales_total", &[kind, name])?, total, None)?;
        ctx.add(&store::key("sales_count", &[kind, name])?, 1, None)?;
    }
    ctx.put_state(&shop::bought_key(&o.buyer, &o.brand, &o.sku)?, b"1")?;
    let rules: Rewards = store::get(ctx, &store::key("rewards", &[])?)?.unwrap_or_default();
    coin::reward(ctx, &o.buyer, rules.purchase)?;
    // A per-sale reward reads the owner's daily counter: with a non-zero one, settlements
    // through one shop in one block conflict on it.
    coin::reward(ctx, &o.shop_owner, rules.sale)?;
    o.status = Status::Settled;
    Ok(())
}

/// Returns the escrow to the buyer.
fn refund(
    ctx: &mut dyn Context,
    o: &mut Order,
    restock: bool,
    status: Status,
) -> Result<(), Error> {
    coin::credit(ctx, &o.buyer, o.total)?;
    if restock {
        ctx.add(
            &catalogue::stock_key(&o.brand, &o.sku)?,
            amount("quantity", o.quantity)?,
            None,
        )?;
    }
    o.status = status;
    Ok(())
}

impl Commerce {
    /// Orders `quantity` of a product listed in a shop: reserves the stock and moves
    /// price × quantity from the buyer's account into escrow.
    pub(crate) fn place_order(
        ctx: &mut dyn Context,
        id: String,
        shop_id: String,
        brand: String,
        sku: String,
        quantity: u64,
    ) -> Result<Json<Order>, Error> {
        let buyer = access::writer(ctx)?;
        let config = access::config(ctx)?;
        store::check_id("order", &id)?;
        let key = order_key(&id)?;
        if ctx.get_state(&key)?.is_some() {
            return Err(Error::conflict(format!("order {id} already exists")));
        }
        let s = shop::shop(ctx, &shop_id)?;
        if s.owner == buyer {
            return Err(Error::forbidden(format!(
                "{buyer} owns shop {shop_id}: buying from your own shop earns no commission"
            )));
        }
        if ctx
            .get_state(&shop::listing_key(&shop_id, &brand, &sku)?)?
            .is_none()
        {
            return Err(Error::not_found(format!(
                "shop {shop_id} does not list {sku} of {brand}"
            )));
        }
        let p = catalogue::product(ctx, &brand, &sku)?;
        let qty = amount("quantity", quantity)?;
        let total = p
            .price
            .checked_mul(quantity)
            .filter(|t| *t <= i64::MAX as u64)
            .ok_or_else(|| Error::bad_request(format!("{quantity} × {} overflows", p.price)))?;
        ctx.add(&catalogue::stock_key(&brand, &sku)?, -qty, Some(0))?;
        coin::debit(ctx, &buyer, total)?;
        let o = Order {
            id,
            buyer,
            shop: shop_id,
            shop_owner: s.owner,
            brand,
            sku,
            quantity,
            unit_price: p.price,
            total,
            commission_bps: p.commission_bps,
            fee_bps: config.fee_bps,
            status: Status::Placed,
            tracking: String::new(),
            reviewed: false,
            placed_at: ctx.timestamp().0,
            dispute: None,
        };
        save(ctx, &o)?;
        event(ctx, &o)?;
        Ok(Json(o))
    }

    /// The brand ships an order.
    pub(crate) fn ship_order(
        ctx: &mut dyn Context,
        id: String,
        tracking: String,
    ) -> Result<(), Error> {
        let mut o = order(ctx, &id)?;
        access::brand_operator(ctx, &o.brand)?;
        store::check_text("tracking", &tracking, true)?;
        if o.status != Status::Placed {
            return Err(wrong_status(&o, "shipping", "placed"));
        }
        o.status = Status::Shipped;
        o.tracking = tracking;
        save(ctx, &o)?;
        event(ctx, &o)
    }

    /// The buyer or the brand cancels an order before it ships; escrow and stock return.
    pub(crate) fn cancel_order(ctx: &mut dyn Context, id: String) -> Result<(), Error> {
        let me = access::writer(ctx)?;
        let mut o = order(ctx, &id)?;
        let brand = access::brand_record(ctx, &o.brand)?;
        if me != o.buyer && !access::operates(ctx, &brand) {
            return Err(Error::forbidden(format!(
                "only the buyer or brand {} cancels order {id}",
                o.brand
            )));
        }
        if o.status != Status::Placed {
            return Err(wrong_status(&o, "cancelling", "placed (not yet shipped)"));
        }
        refund(ctx, &mut o, true, Status::Cancelled)?;
        save(ctx, &o)?;
        event(ctx, &o)
    }

    /// The buyer confirms delivery; the escrow is settled in the same transaction.
    pub(crate) fn confirm_delivery(
        ctx: &mut dyn Context,
        id: String,
    ) -> Result<Json<Order>, Error> {
        let me = access::writer(ctx)?;
        let mut o = order(ctx, &id)?;
        if me != o.buyer {
            return Err(Error::forbidden(format!(
                "only the buyer confirms order {id}"
            )));
        }
        if o.status != Status::Shipped {
            return Err(wrong_status(&o, "confirming delivery", "shipped"));
        }
        settle(ctx, &mut o)?;
        save(ctx, &o)?;
        event(ctx, &o)?;
        Ok(Json(o))
    }

    /// The buyer disputes a shipped order; the platform's arbiters vote on it.
    pub(crate) fn open_dispute(
        ctx: &mut dyn Context,
        id: String,
        reason: String,
    ) -> Result<(), Error> {
        let me = access::writer(ctx)?;
        let mut o = order(ctx, &id)?;
        if me != o.buyer {
            return Err(Error::forbidden(format!(
                "only the buyer disputes order {id}"
            )));
        }
        if o.status != Status::Shipped {
            return Err(wrong_status(&o, "a dispute", "shipped"));
        }
        store::check_text("reason", &reason, true)?;
        let arbiters = coin::arbiters(ctx)?;
        let mut arbiters: Vec<String> = arbiters
            .into_iter()
            .filter(|a| *a != o.buyer && *a != o.shop_owner)
            .collect();
        // An odd panel always reaches a majority: with an even number, the last sits out.
        if arbiters.len().is_multiple_of(2) {
            arbiters.pop();
        }
        if arbiters.is_empty() {
            return Err(Error::with_status(
                412,
                "no arbiters are appointed to decide a dispute",
            ));
        }
        o.dispute = Some(Dispute {
            reason,
            arbiters,
            votes: Default::default(),
        });
        o.status = Status::Disputed;
        save(ctx, &o)?;
        event(ctx, &o)
    }

    /// An arbiter votes to refund the buyer (true) or release the escrow (false); a majority of
    /// the dispute's arbiters decides.
    pub(crate) fn vote(
        ctx: &mut dyn Context,
        id: String,
        refund_buyer: bool,
    ) -> Result<Json<Order>, Error> {
        let me = access::writer(ctx)?;
        let mut o = order(ctx, &id)?;
        if o.status != Status::Disputed {
            return Err(wrong_status(&o, "a vote", "disputed"));
        }
        let Some(mut d) = o.dispute.take() else {
            return Err(store::corrupt(&id, "disputed without a dispute"));
        };
        if !d.arbiters.contains(&me) {
            return Err(Error::forbidden(format!(
                "{me} is not an arbiter of order {id}"
            )));
        }
        if d.votes.contains_key(&me) {
            return Err(Error::conflict(format!("{me} already voted on order {id}")));
        }
        d.votes.insert(me, refund_buyer);
        let majority = d.arbiters.len() / 2 + 1;
        let refunds = d.votes.values().filter(|v| **v).count();
        let releases = d.votes.len() - refunds;
        o.dispute = Some(d);
        if refunds >= majority {
            // The goods were shipped: the stock does not come back.
            refund(ctx, &mut o, false, Status::Refunded)?;
        } else if releases >= majority {
            settle(ctx, &mut o)?;
        }
        save(ctx, &o)?;
        event(ctx, &o)?;
        Ok(Json(o))
    }

    /// The buyer of a settled order reviews it, once; this earns the review reward and a
    /// personal shop that lists the product.
    pub(crate) fn review(
        ctx: &mut dyn Context,
        id: String,
        rating: u32,
        text: String,
    ) -> Result<String, Error> {
        let me = access::writer(ctx)?;
        let mut o = order(ctx, &id)?;
        if me != o.buyer {
            return Err(Error::forbidden(format!(
                "only the buyer of order {id} may review it (a verified purchase)"
            )));
        }
        if o.status != Status::Settled {
            return Err(wrong_status(&o, "a review", "settled"));
        }
        if o.reviewed {
            return Err(Error::conflict(format!("order {id} is already reviewed")));
        }
        if !(1..=5).contains(&rating) {
            return Err(Error::bad_request(format!("rating {rating}: 1 to 5")));
        }
        store::check_text("review", &text, true)?;
        o.reviewed = true;
        save(ctx, &o)?;
        let r = Review {
            order: id.clone(),
            reviewer: me.clone(),
            brand: o.brand.clone(),
            sku: o.sku.clone(),
            rating,
            text,
        };
        store::put(ctx, &store::key("review", &[&o.brand, &o.sku, &id])?, &r)?;
        let rules: Rewards = store::get(ctx, &store::key("rewards", &[])?)?.unwrap_or_default();
        coin::reward(ctx, &me, rules.review)?;
        shop::ensure_personal_shop(ctx, &me, &o.brand, &o.sku)
    }

    pub(crate) fn get_order(ctx: &mut dyn Context, id: String) -> Result<Json<Order>, Error> {
        order(ctx, &id).map(Json)
    }
}
