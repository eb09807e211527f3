//! Who may do what, from the caller's certificate: its MSP id, its NodeOU role and its
//! attributes (`role=brand`, `role=platform`, …), which the organisation's CA issued.
//!
//! - A **member** is `MSPID:NAME` (the certificate's common name); it owns its coin account, its
//!   shops and its orders.
//! - The **platform** is any admin of the platform organisation named at `init`, or a member of
//!   it with `role=platform`.
//! - A **brand operator** of brand B is an admin of B's organisation, or a member of it with
//!   `role=brand` (and, if it carries a `brand` attribute, `brand=B`). It acts for `brand:B`.
//! - An **auditor** (NodeOU `auditor`, or `role=auditor`) only reads: every function that writes
//!   refuses it.

use mercato_chaincode::{Context, Error};

use crate::store::{self, Brand, Config};

/// The caller's member id.
pub fn member(ctx: &dyn Context) -> String {
    let c = ctx.creator();
    format!("{}:{}", c.msp_id, c.id)
}

/// The account of a brand's revenue.
pub fn brand_account(brand: &str) -> String {
    format!("brand:{brand}")
}

/// Whether the caller is an auditor.
pub fn is_auditor(ctx: &dyn Context) -> bool {
    ctx.creator().role == "auditor" || ctx.attribute("role") == Some("auditor")
}

/// The caller's member id, refusing auditors, and organisations whose MSP id would make member
/// ids ambiguous or pass for a reserved account (`brand:…`, `platform:…`): every writing
/// function starts here.
pub fn writer(ctx: &dyn Context) -> Result<String, Error> {
    let msp = &ctx.creator().msp_id;
    if msp.is_empty() || msp.contains(':') || msp == "brand" || msp == "platform" {
        return Err(Error::forbidden(format!(
            "MSP id {msp:?} is reserved or ambiguous in member ids"
        )));
    }
    if is_auditor(ctx) {
        return Err(Error::forbidden(format!(
            "{} is an auditor: auditors are read-only",
            member(ctx)
        )));
    }
    Ok(member(ctx))
}

/// The contract's settings.
pub fn config(ctx: &mut dyn Context) -> Result<Config, Error> {
    store::get(ctx, &store::key("config", &[])?)?.ok_or_else(|| {
        Error::with_status(
            412,
            "the commerce contract is not initialised: the platform calls init first",
        )
    })
}

/// The settings, if the caller is the platform.
pub fn platform(ctx: &mut dyn Context) -> Result<Config, Error> {
    let me = writer(ctx)?;
    let config = config(ctx)?;
    let c = ctx.creator();
    let operator = c.msp_id == config.platform_msp
        && (c.role == "admin" || ctx.attribute("role") == Some("platform"));
    if !operator {
        return Err(Error::forbidden(format!(
            "{me} is not the platform (an admin of {}, or a member of it with role=platform)",
            config.platform_msp
        )));
    }
    Ok(config)
}

/// A registered brand.
pub fn brand_record(ctx: &mut dyn Context, brand: &str) -> Result<Brand, Error> {
    store::get(ctx, &store::key("brand", &[brand])?)?
        .ok_or_else(|| Error::not_found(format!("no brand {brand:?}")))
}

/// Whether the caller operates `brand`.
pub fn operates(ctx: &dyn Context, brand: &Brand) -> bool {
    let c = ctx.creator();
    let role_ok = c.role == "admin" || ctx.attribute("role") == Some("brand");
    let brand_ok = ctx.attribute("brand").is_none_or(|b| b == brand.name);
    c.msp_id == brand.msp_id && role_ok && brand_ok && !is_auditor(ctx)
}

/// The brand, if the caller operates it.
pub fn brand_operator(ctx: &mut dyn Context, brand: &str) -> Result<Brand, Error> {
    writer(ctx)?;
    let b = brand_record(ctx, brand)?;
    if !operates(ctx, &b) {
        return Err(Error::forbidden(format!(
            "{} does not act for brand {brand} (an admin of {}, or a member of it with role=brand)",
            member(ctx),
            b.msp_id
        )));
    }
    Ok(b)
}

/// Whether the caller may act as `party`: itself, or a brand it operates (`brand:NAME`).
pub fn acts_as(ctx: &mut dyn Context, party: &str) -> Result<bool, Error> {
    if party == member(ctx) {
        return Ok(true);
    }
    match party.strip_prefix("brand:") {
        Some(name) => match store::get::<Brand>(ctx, &store::key("brand", &[name])?)? {
            Some(b) => Ok(operates(ctx, &b)),
            None => Ok(false),
        },
        None => Ok(false),
    }
}
