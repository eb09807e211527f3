//! The catalogue: brands' products with immutable attributes, a price, a reseller commission and
//! stock.

use std::collections::BTreeMap;

use mercato_chaincode::{Context, Error, Json};
use sha2::{Digest, Sha256};

use crate::Commerce;
use crate::access;
use crate::store::{self, MAX_ATTRIBUTES, MAX_ID, Product, amount};

/// The key of a product.
pub fn product_key(brand: &str, sku: &str) -> Result<String, Error> {
    store::key("product", &[brand, sku])
}

/// The key of a product's stock (a number kept by additions).
pub fn stock_key(brand: &str, sku: &str) -> Result<String, Error> {
    store::key("stock", &[brand, sku])
}

/// A product, or 404.
pub fn product(ctx: &mut dyn Context, brand: &str, sku: &str) -> Result<Product, Error> {
    store::get(ctx, &product_key(brand, sku)?)?
        .ok_or_else(|| Error::not_found(format!("no product {sku} of brand {brand}")))
}

/// hex(SHA-256) of the attributes' canonical JSON (a `BTreeMap`: sorted keys, no spaces).
pub fn attributes_hash(attributes: &BTreeMap<String, String>) -> String {
    let json = serde_json::to_vec(attributes).unwrap_or_default();
    Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn check_attributes(attributes: &BTreeMap<String, String>) -> Result<(), Error> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(Error::bad_request(format!(
            "{} attributes; at most {MAX_ATTRIBUTES}",
            attributes.len()
        )));
    }
    for (k, v) in attributes {
        if k.is_empty() || k.len() > MAX_ID {
            return Err(Error::bad_request(format!(
                "attribute name {k:?}: 1 to {MAX_ID} bytes"
            )));
        }
        store::check_text(&format!("attribute {k}"), v, false)?;
    }
    Ok(())
}

fn check_commission(bps: u64) -> Result<(), Error> {
    if bps > 5_000 {
        return Err(Error::bad_request(format!(
            "commission of {bps} basis points; at most 5000 (50 %)"
        )));
    }
    Ok(())
}

impl Commerce {
    /// Registers a product. Its attributes are sealed by their hash and can never change.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_product(
        ctx: &mut dyn Context,
        brand: String,
        sku: String,
        name: String,
        attributes: Json<BTreeMap<String, String>>,
        price: u64,
        commission_bps: u64,
        stock: u64,
    ) -> Result<Json<Product>, Error> {
        access::brand_operator(ctx, &brand)?;
        store::check_id("sku", &sku)?;
        store::check_text("name", &name, true)?;
        let attributes = attributes.0;
        check_attributes(&attributes)?;
        amount("price", price)?;
        check_commission(commission_bps)?;
        let key = product_key(&brand, &sku)?;
        let hash = attributes_hash(&attributes);
        if let Some(existing) = store::get::<Product>(ctx, &key)? {
            return Err(Error::conflict(if existing.attributes_hash == hash {
                format!("product {sku} of brand {brand} already exists")
            } else {
                format!(
                    "product {sku} of brand {brand} exists with other attributes: a product's attributes are immutable"
                )
            }));
        }
        let p = Product {
            brand: brand.clone(),
            sku: sku.clone(),
            name,
            attributes,
            attributes_hash: hash,
            price,
            commission_bps,
        };
        store::put(ctx, &key, &p)?;
        if stock > 0 {
            ctx.add(&stock_key(&brand, &sku)?, amount("stock", stock)?, None)?;
        }
        Ok(Json(p))
    }

    /// Changes a product's price and commission (its attributes stay).
    pub(crate) fn update_product(
        ctx: &mut dyn Context,
        brand: String,
        sku: String,
        price: u64,
        commission_bps: u64,
    ) -> Result<(), Error> {
        access::brand_operator(ctx, &brand)?;
        let mut p = product(ctx, &brand, &sku)?;
        amount("price", price)?;
        check_commission(commission_bps)?;
        p.price = price;
        p.commission_bps = commission_bps;
        store::put(ctx, &product_key(&brand, &sku)?, &p)
    }

    /// Adds to (or, negative, takes from) a product's stock.
    pub(crate) fn restock(
        ctx: &mut dyn Context,
        brand: String,
        sku: String,
        delta: i64,
    ) -> Result<(), Error> {
        access::brand_operator(ctx, &brand)?;
        product(ctx, &brand, &sku)?;
        if delta == 0 {
            return Err(Error::bad_request("a restock of 0"));
        }
        ctx.add(&stock_key(&brand, &sku)?, delta, Some(0))
    }

    pub(crate) fn get_product(
        ctx: &mut dyn Context,
        brand: String,
        sku: String,
    ) -> Result<Json<Product>, Error> {
        product(ctx, &brand, &sku).map(Json)
    }

    pub(crate) fn stock(ctx: &mut dyn Context, brand: String, sku: String) -> Result<i64, Error> {
        product(ctx, &brand, &sku)?;
        store::number(ctx, &stock_key(&brand, &sku)?)
    }

    /// Whether `attributes` are exactly the ones recorded for the product.
    pub(crate) fn verify_product(
        ctx: &mut dyn Context,
        brand: String,
        sku: String,
        attributes: Json<BTreeMap<String, String>>,
    ) -> Result<bool, Error> {
        let p = product(ctx, &brand, &sku)?;
        Ok(attributes_hash(&attributes.0) == p.attributes_hash)
    }
}
