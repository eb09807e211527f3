//! Shops: any member opens one and lists brands' products in it; a buyer who reviews a purchase
//! gets a personal shop, from which what they bought can be resold.

use mercato_chaincode::{Context, Error, Json};
use serde::Serialize;

use crate::Commerce;
use crate::access;
use crate::catalogue;
use crate::store::{self, Shop};

/// The key of a shop.
pub fn shop_key(id: &str) -> Result<String, Error> {
    store::key("shop", &[id])
}

/// The key of a product listed in a shop.
pub fn listing_key(shop: &str, brand: &str, sku: &str) -> Result<String, Error> {
    store::key("listing", &[shop, brand, sku])
}

/// The key that records that `member` bought a product.
pub fn bought_key(member: &str, brand: &str, sku: &str) -> Result<String, Error> {
    store::key("bought", &[member, brand, sku])
}

/// The id of a member's personal shop.
pub fn personal_shop_id(member: &str) -> String {
    format!("@{member}")
}

/// A shop, or 404.
pub fn shop(ctx: &mut dyn Context, id: &str) -> Result<Shop, Error> {
    store::get(ctx, &shop_key(id)?)?.ok_or_else(|| Error::not_found(format!("no shop {id}")))
}

/// The caller and its shop `id`, or 403 if the shop is someone else's.
fn own_shop(ctx: &mut dyn Context, id: &str) -> Result<(String, Shop), Error> {
    let me = access::writer(ctx)?;
    let s = shop(ctx, id)?;
    if s.owner != me {
        return Err(Error::forbidden(format!("shop {id} is not {me}'s")));
    }
    Ok((me, s))
}

/// Gives `member` its personal shop (if it has none) and lists the product in it.
pub fn ensure_personal_shop(
    ctx: &mut dyn Context,
    member: &str,
    brand: &str,
    sku: &str,
) -> Result<String, Error> {
    let id = personal_shop_id(member);
    let key = shop_key(&id)?;
    if ctx.get_state(&key)?.is_none() {
        store::put(
            ctx,
            &key,
            &Shop {
                id: id.clone(),
                name: format!("{member}'s picks"),
                owner: member.to_owned(),
                personal: true,
            },
        )?;
    }
    ctx.put_state(&listing_key(&id, brand, sku)?, b"1")?;
    Ok(id)
}

/// A shop with its listed products.
#[derive(Debug, Serialize)]
pub struct ShopView {
    #[serde(flatten)]
    pub shop: Shop,
    /// (brand, sku) of each listed product, the first 200.
    pub listings: Vec<(String, String)>,
}

impl Commerce {
    /// Opens a shop owned by the caller.
    pub(crate) fn open_shop(
        ctx: &mut dyn Context,
        id: String,
        name: String,
    ) -> Result<Json<Shop>, Error> {
        let me = access::writer(ctx)?;
        store::check_id("shop", &id)?;
        if id.starts_with('@') {
            return Err(Error::bad_request(
                "shop ids starting with '@' are personal shops, given for reviews",
            ));
        }
        store::check_text("name", &name, true)?;
        let key = shop_key(&id)?;
        if ctx.get_state(&key)?.is_some() {
            return Err(Error::conflict(format!("shop {id} already exists")));
        }
        let s = Shop {
            id,
            name,
            owner: me,
            personal: false,
        };
        store::put(ctx, &key, &s)?;
        Ok(Json(s))
    }

    /// Lists a product in one of the caller's shops. A personal shop lists only what its owner
    /// bought.
    pub(crate) fn list_product(
        ctx: &mut dyn Context,
        shop_id: String,
        brand: String,
        sku: String,
    ) -> Result<(), Error> {
        let (me, s) = own_shop(ctx, &shop_id)?;
        catalogue::product(ctx, &brand, &sku)?;
        if s.personal && ctx.get_state(&bought_key(&me, &brand, &sku)?)?.is_none() {
            return Err(Error::forbidden(format!(
                "a personal shop resells only what its owner bought; {me} has not bought {sku} of {brand}"
            )));
        }
        ctx.put_state(&listing_key(&shop_id, &brand, &sku)?, b"1")
    }

    pub(crate) fn unlist_product(
        ctx: &mut dyn Context,
        shop_id: String,
        brand: String,
        sku: String,
    ) -> Result<(), Error> {
        own_shop(ctx, &shop_id)?;
        let key = listing_key(&shop_id, &brand, &sku)?;
        if ctx.get_state(&key)?.is_none() {
            return Err(Error::not_found(format!(
                "shop {shop_id} does not list {sku} of {brand}"
            )));
        }
        ctx.delete_state(&key)
    }

    pub(crate) fn get_shop(ctx: &mut dyn Context, id: String) -> Result<Json<ShopView>, Error> {
        let s = shop(ctx, &id)?;
        let (start, end) = mercato_chaincode::composite::range("listing", &[&id])?;
        let page = ctx.get_state_range(&start, &end, 200, "")?;
        let listings = page
            .entries
            .iter()
            .filter_map(|(k, _)| {
                let (_, parts) = mercato_chaincode::composite::split(k)?;
                Some((parts.get(1)?.clone(), parts.get(2)?.clone()))
            })
            .collect();
        Ok(Json(ShopView { shop: s, listings }))
    }
}
