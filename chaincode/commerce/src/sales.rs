//! The sales ledger: per brand and per shop, the totals of settled orders and the list of them,
//! page by page, for auditors, brands and shop owners.

use mercato_chaincode::{Context, Error, Json, composite};
use serde::Serialize;

use crate::Commerce;
use crate::store::{self, Sale};

/// One page of a brand's or a shop's sales.
#[derive(Debug, Serialize)]
pub struct SalesPage {
    /// Coins of all settled orders.
    pub total: i64,
    /// How many settled orders.
    pub count: i64,
    /// This page, in order id order.
    pub sales: Vec<Sale>,
    /// Where the next page starts; empty at the end.
    pub bookmark: String,
}

impl Commerce {
    /// `kind` is `brand` or `shop`; pages hold at most `page_size` (1 to 1000) sales.
    pub(crate) fn sales(
        ctx: &mut dyn Context,
        kind: String,
        name: String,
        page_size: u32,
        bookmark: String,
    ) -> Result<Json<SalesPage>, Error> {
        if kind != "brand" && kind != "shop" {
            return Err(Error::bad_request(format!(
                "sales of {kind:?}: brand or shop"
            )));
        }
        store::check_id(&kind, &name)?;
        let (start, end) = composite::range("sale", &[&kind, &name])?;
        let in_ledger = start.as_str() <= bookmark.as_str() && bookmark < end;
        if !bookmark.is_empty() && !in_ledger {
            return Err(Error::bad_request("the bookmark is not of this ledger"));
        }
        let page = ctx.get_state_range(&start, &end, page_size.clamp(1, 1000), &bookmark)?;
        let mut sales = Vec::with_capacity(page.entries.len());
        for (k, v) in &page.entries {
            sales.push(serde_json::from_slice(v).map_err(|e| store::corrupt(k, e))?);
        }
        Ok(Json(SalesPage {
            total: store::number(ctx, &store::key("sales_total", &[&kind, &name])?)?,
            count: store::number(ctx, &store::key("sales_count", &[&kind, &name])?)?,
            sales,
            bookmark: page.bookmark,
        }))
    }
}
