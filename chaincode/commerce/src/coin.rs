//! The platform's settings and the reward coin: mint, transfer, burn, balances and supply.
//!
//! Every balance is changed only by additions with a lower bound of zero: a spend never reads
//! the balance, so a member's concurrent payments never conflict, and one that would overdraw
//! makes its transaction invalid at commit (DELTA_BOUND_VIOLATION); in a native test the call
//! fails with 409 at once.

use mercato_chaincode::{Context, Error, Json};

use crate::Commerce;
use crate::access::{self, brand_account};
use crate::store::{self, Brand, Config, FEES_ACCOUNT, MAX_ARBITERS, Rewards, amount};

/// The key of an account's balance.
pub fn account_key(account: &str) -> Result<String, Error> {
    store::key("acct", &[account])
}

/// Credits `account` with `n` coins.
pub fn credit(ctx: &mut dyn Context, account: &str, n: u64) -> Result<(), Error> {
    if n == 0 {
        return Ok(());
    }
    ctx.add(&account_key(account)?, amount("amount", n)?, None)
}

/// Debits `account` by `n` coins; the transaction fails if that would overdraw it.
pub fn debit(ctx: &mut dyn Context, account: &str, n: u64) -> Result<(), Error> {
    ctx.add(&account_key(account)?, -amount("amount", n)?, Some(0))
}

fn supply_key() -> Result<String, Error> {
    store::key("supply", &[])
}

/// Checks an account name: a member (`MSP:NAME`), a brand (`brand:NAME`) or the fees.
fn check_account(account: &str) -> Result<(), Error> {
    store::check_id("account", account)?;
    if !account.contains(':') {
        return Err(Error::bad_request(format!(
            "account {account:?}: a member is MSPID:NAME, a brand brand:NAME"
        )));
    }
    Ok(())
}

impl Commerce {
    /// Sets up the contract once: the platform organisation and its fee.
    pub(crate) fn init(
        ctx: &mut dyn Context,
        platform_msp: String,
        fee_bps: u64,
    ) -> Result<(), Error> {
        access::writer(ctx)?;
        let key = store::key("config", &[])?;
        if ctx.get_state(&key)?.is_some() {
            return Err(Error::conflict(
                "the commerce contract is already initialised",
            ));
        }
        let c = ctx.creator();
        if c.msp_id != platform_msp || c.role != "admin" {
            return Err(Error::forbidden(format!(
                "init is called by an admin of the platform organisation {platform_msp}"
            )));
        }
        check_fee(fee_bps)?;
        store::put(
            ctx,
            &key,
            &Config {
                platform_msp,
                fee_bps,
            },
        )
    }

    pub(crate) fn set_fee(ctx: &mut dyn Context, fee_bps: u64) -> Result<(), Error> {
        let mut config = access::platform(ctx)?;
        check_fee(fee_bps)?;
        config.fee_bps = fee_bps;
        store::put(ctx, &store::key("config", &[])?, &config)
    }

    pub(crate) fn get_config(ctx: &mut dyn Context) -> Result<Json<Config>, Error> {
        access::config(ctx).map(Json)
    }

    /// Registers a brand and the organisation that acts for it.
    pub(crate) fn register_brand(
        ctx: &mut dyn Context,
        name: String,
        msp_id: String,
    ) -> Result<(), Error> {
        access::platform(ctx)?;
        store::check_id("brand", &name)?;
        store::check_id("MSP id", &msp_id)?;
        let key = store::key("brand", &[&name])?;
        if ctx.get_state(&key)?.is_some() {
            return Err(Error::conflict(format!(
                "brand {name} is already registered"
            )));
        }
        store::put(ctx, &key, &Brand { name, msp_id })
    }

    pub(crate) fn set_rewards(
        ctx: &mut dyn Context,
        purchase: u64,
        review: u64,
        sale: u64,
        daily_cap: u64,
    ) -> Result<(), Error> {
        access::platform(ctx)?;
        for (what, n) in [
            ("purchase", purchase),
            ("review", review),
            ("sale", sale),
            ("daily_cap", daily_cap),
        ] {
            if n > i64::MAX as u64 / 2 {
                return Err(Error::bad_request(format!(
                    "reward {what} {n} is too large"
                )));
            }
        }
        let rewards = Rewards {
            purchase,
            review,
            sale,
            daily_cap,
        };
        store::put(ctx, &store::key("rewards", &[])?, &rewards)
    }

    pub(crate) fn get_rewards(ctx: &mut dyn Context) -> Result<Json<Rewards>, Error> {
        Ok(Json(
            store::get(ctx, &store::key("rewards", &[])?)?.unwrap_or_default(),
        ))
    }

    /// Adds a member who votes on disputes.
    pub(crate) fn add_arbiter(ctx: &mut dyn Context, member: String) -> Result<(), Error> {
        access::platform(ctx)?;
        check_account(&member)?;
        let mut arbiters = arbiters(ctx)?;
        if arbiters.contains(&member) {
            return Err(Error::conflict(format!("{member} is already an arbiter")));
        }
        if arbiters.len() >= MAX_ARBITERS {
            return Err(Error::bad_request(format!(
                "at most {MAX_ARBITERS} arbiters"
            )));
        }
        arbiters.push(member);
        arbiters.sort();
        store::put(ctx, &store::key("arbiters", &[])?, &arbiters)
    }

    pub(crate) fn remove_arbiter(ctx: &mut dyn Context, member: String) -> Result<(), Error> {
        access::platform(ctx)?;
        let mut arbiters = arbiters(ctx)?;
        let before = arbiters.len();
        arbiters.retain(|a| *a != member);
        if arbiters.len() == before {
            return Err(Error::not_found(format!("{member} is not an arbiter")));
        }
        store::put(ctx, &store::key("arbiters", &[])?, &arbiters)
    }

    /// Creates coins (the platform only).
    pub(crate) fn mint(ctx: &mut dyn Context, account: String, n: u64) -> Result<(), Error> {
        access::platform(ctx)?;
        check_account(&account)?;
        let delta = amount("amount", n)?;
        ctx.add(&supply_key()?, delta, None)?;
        ctx.add(&account_key(&account)?, delta, None)
    }

    /// Moves coins from an account the caller acts for (its own, a brand it operates, or the
    /// fees for the platform).
    pub(crate) fn transfer(
        ctx: &mut dyn Context,
        from: String,
        to: String,
        n: u64,
    ) -> Result<(), Error> {
        access::writer(ctx)?;
        check_account(&to)?;
        let allowed = if from == FEES_ACCOUNT {
            access::platform(ctx).is_ok()
        } else {
            access::acts_as(ctx, &from)?
        };
        if !allowed {
            return Err(Error::forbidden(format!(
                "{} may not spend from {from}",
                access::member(ctx)
            )));
        }
        if from == to {
            return Err(Error::bad_request("a transfer to the same account"));
        }
        debit(ctx, &from, n)?;
        credit(ctx, &to, n)
    }

    /// Destroys the caller's own coins.
    pub(crate) fn burn(ctx: &mut dyn Context, n: u64) -> Result<(), Error> {
        let me = access::writer(ctx)?;
        debit(ctx, &me, n)?;
        ctx.add(&supply_key()?, -amount("amount", n)?, Some(0))
    }

    pub(crate) fn balance(ctx: &mut dyn Context, account: String) -> Result<i64, Error> {
        store::number(ctx, &account_key(&account)?)
    }

    pub(crate) fn my_account(ctx: &mut dyn Context) -> Result<String, Error> {
        Ok(access::member(ctx))
    }

    pub(crate) fn brand_account_of(_ctx: &mut dyn Context, brand: String) -> Result<String, Error> {
        Ok(brand_account(&brand))
    }

    pub(crate) fn supply(ctx: &mut dyn Context) -> Result<i64, Error> {
        store::number(ctx, &supply_key()?)
    }
}

fn check_fee(fee_bps: u64) -> Result<(), Error> {
    if fee_bps > 3_000 {
        return Err(Error::bad_request(format!(
            "fee of {fee_bps} basis points; at most 3000 (30 %)"
        )));
    }
    Ok(())
}

/// The current arbiters.
pub fn arbiters(ctx: &mut dyn Context) -> Result<Vec<String>, Error> {
    Ok(store::get(ctx, &store::key("arbiters", &[])?)?.unwrap_or_default())
}

/// Gives `member` up to `n` reward coins, within its daily cap. Returns what it gave.
pub fn reward(ctx: &mut dyn Context, member: &str, n: u64) -> Result<u64, Error> {
    if n == 0 {
        return Ok(0);
    }
    let rules: Rewards = store::get(ctx, &store::key("rewards", &[])?)?.unwrap_or_default();
    let day = store::day(ctx).to_string();
    let key = store::key("earned", &[member, &day])?;
    let earned = u64::try_from(store::number(ctx, &key)?).unwrap_or(0);
    let give = n.min(rules.daily_cap.saturating_sub(earned));
    if give == 0 {
        return Ok(0);
    }
    ctx.put_state(&key, (earned + give).to_string().as_bytes())?;
    ctx.add(&supply_key()?, amount("reward", give)?, None)?;
    credit(ctx, member, give)?;
    Ok(give)
}
