//! Stage 2 of validation: in block order, against the committed state plus the writes of the
//! block's earlier valid transactions. Produces the final codes and the block's state updates.
//!
//! The same code replays a stored block (with its recorded codes) when the state is rebuilt from
//! the blocks alone, so replay and validation can never disagree on what a valid transaction
//! writes — deltas included.

use std::collections::{BTreeMap, BTreeSet};

use mercato_proto::{TxValidationCode, ValidationCode};

use super::verify::CheckedTx;
use super::{StateReader, ValidationContext, endorsement};
use crate::error::{Error, Result};
use crate::ledger::{LedgerStore, StateUpdate, TxLocation, Version, VersionedValue};
use crate::rwset::{NsRwSet, RangeRead, TxRwSet};

/// How a block is applied.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// Validate: check duplicates, endorsement policies, reads, ranges and delta bounds.
    Validate(&'a ValidationContext),
    /// Replay a stored block: its codes are already decided; apply the valid transactions.
    Replay,
}

impl Mode<'_> {
    fn validates(&self) -> bool {
        matches!(self, Mode::Validate(_))
    }
}

/// What stage 2 decided for a block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The final code of each transaction.
    pub codes: Vec<ValidationCode>,
    /// The state updates of the valid transactions, in order.
    pub updates: Vec<StateUpdate>,
    /// The txids to index.
    pub txids: Vec<(String, TxLocation)>,
}

/// Applies a block's transactions in order. In [`Mode::Replay`] the `code` of each [`CheckedTx`]
/// is the recorded one and only VALID transactions are applied.
pub fn apply_block(
    store: &dyn LedgerStore,
    number: u64,
    txs: &[CheckedTx],
    mode: Mode,
) -> Result<Applied> {
    let mut block = BlockState {
        store,
        overlay: BTreeMap::new(),
        updates: Vec::new(),
    };
    let mut out = Applied::default();
    let mut block_txids: BTreeSet<&str> = BTreeSet::new();
    for (i, tx) in txs.iter().enumerate() {
        let version = Version {
            block: number,
            tx: i as u64,
        };
        let mut code = tx.code;
        if let Mode::Validate(ctx) = mode {
            // A genuine txid seen before is a duplicate whatever else is wrong with the
            // transaction (Fabric checks duplicates before endorsements), so that a re-signed
            // variant of a committed transaction can never replace its entry in the index.
            if let Some(txid) = &tx.txid
                && (block_txids.contains(txid.as_str()) || store.tx_location(txid)?.is_some())
            {
                code = TxValidationCode::DuplicateTxid.into();
            } else if code.is_valid()
                && let Err(failure) = endorsement::check(&block, tx, ctx)?
            {
                code = failure;
            }
        }
        let mut staged = Vec::new();
        if code.is_valid() {
            let rwset = tx.rwset.as_ref().ok_or_else(|| {
                Error::Corrupt(format!(
                    "valid transaction {i} of block {number} has no read/write set"
                ))
            })?;
            match block.check_and_stage(rwset, mode)? {
                Ok(writes) => staged = writes,
                Err(failure) => {
                    if !mode.validates() {
                        return Err(Error::Corrupt(format!(
                            "replaying block {number}: valid transaction {i} now fails with {failure}"
                        )));
                    }
                    code = failure;
                }
            }
        }
        if let Some(txid) = &tx.txid
            && code != ValidationCode::from(TxValidationCode::DuplicateTxid)
            && block_txids.insert(txid.as_str())
        {
            out.txids.push((
                txid.clone(),
                TxLocation {
                    block: number,
                    tx: i as u64,
                    code: code.0,
                },
            ));
        }
        for w in staged {
            block
                .overlay
                .insert((w.namespace, w.key), block.updates.len());
            block.updates.push(StateUpdate {
                namespace: w.namespace.to_owned(),
                key: w.key.to_owned(),
                value: w.value,
                version,
            });
        }
        out.codes.push(code);
    }
    out.updates = block.updates;
    Ok(out)
}

/// One write a valid transaction makes, named by the read/write set it comes from.
struct Staged<'t> {
    namespace: &'t str,
    key: &'t str,
    /// `None`: deleted.
    value: Option<Vec<u8>>,
}

/// The committed state seen through the writes of the block's earlier valid transactions.
struct BlockState<'s, 't> {
    store: &'s dyn LedgerStore,
    /// The last write of each key so far in the block: its index in `updates`. The names are
    /// borrowed from the block's read/write sets, so that looking a key up copies nothing.
    overlay: BTreeMap<(&'t str, &'t str), usize>,
    /// The valid transactions' writes so far, in block order.
    updates: Vec<StateUpdate>,
}

impl StateReader for BlockState<'_, '_> {
    fn state(&self, ns: &str, key: &str) -> Result<Option<VersionedValue>> {
        self.get(ns, key)
    }
}

impl<'t> BlockState<'_, 't> {
    /// The block's last write of a key so far: `Some(None)` when it deleted the key, `None`
    /// when the block has not written it.
    fn written(&self, ns: &str, key: &str) -> Option<Option<VersionedValue>> {
        let u = &self.updates[*self.overlay.get(&(ns, key))?];
        Some(u.value.clone().map(|value| VersionedValue {
            value,
            version: u.version,
        }))
    }

    fn get(&self, ns: &str, key: &str) -> Result<Option<VersionedValue>> {
        match self.written(ns, key) {
            Some(v) => Ok(v),
            None => self.store.state(ns, key),
        }
    }

    /// The version of a key now: what [`BlockState::get`] would give, without its value.
    fn version(&self, ns: &str, key: &str) -> Result<Option<Version>> {
        match self.overlay.get(&(ns, key)) {
            Some(&i) => {
                let u = &self.updates[i];
                Ok(u.value.as_ref().map(|_| u.version))
            }
            None => Ok(self.store.state(ns, key)?.map(|v| v.version)),
        }
    }

    /// Checks one transaction's reads (in Validate mode) and computes its writes. The outer
    /// `Result` is a storage fault; the inner one the transaction's failure code.
    fn check_and_stage(
        &self,
        rwset: &'t TxRwSet,
        mode: Mode,
    ) -> Result<std::result::Result<Vec<Staged<'t>>, ValidationCode>> {
        if mode.validates() {
            for ns in &rwset.namespaces {
                for r in &ns.reads {
                    if self.version(&ns.namespace, &r.key)? != r.version {
                        return Ok(Err(TxValidationCode::MvccReadConflict.into()));
                    }
                }
                for range in &ns.range_reads {
                    if !self.range_unchanged(&ns.namespace, range)? {
                        return Ok(Err(TxValidationCode::PhantomReadConflict.into()));
                    }
                }
            }
        }
        let mut staged = Vec::new();
        for ns in &rwset.namespaces {
            match self.stage_namespace(ns)? {
                Ok(writes) => staged.extend(writes),
                Err(code) => return Ok(Err(code)),
            }
        }
        Ok(Ok(staged))
    }

    fn stage_namespace(
        &self,
        ns: &'t NsRwSet,
    ) -> Result<std::result::Result<Vec<Staged<'t>>, ValidationCode>> {
        let mut staged: Vec<Staged<'t>> = ns
            .writes
            .iter()
            .map(|w| Staged {
                namespace: &ns.namespace,
                key: &w.key,
                value: w.value.clone(),
            })
            .collect();
        // Deltas of one key within the transaction accumulate; each intermediate result must
        // respect its own bound.
        let mut sums: BTreeMap<&'t str, i64> = BTreeMap::new();
        for d in &ns.deltas {
            let current = match sums.get(d.key.as_str()) {
                Some(v) => *v,
                None => match self.get(&ns.namespace, &d.key)? {
                    None => 0,
                    Some(v) => match std::str::from_utf8(&v.value)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                    {
                        Some(n) => n,
                        None => return Ok(Err(ValidationCode::DELTA_INVALID_VALUE)),
                    },
                },
            };
            let Some(next) = current.checked_add(d.amount) else {
                return Ok(Err(ValidationCode::DELTA_INVALID_VALUE));
            };
            if d.lower_bound.is_some_and(|bound| next < bound) {
                return Ok(Err(ValidationCode::DELTA_BOUND_VIOLATION));
            }
            sums.insert(&d.key, next);
        }
        staged.extend(sums.into_iter().map(|(key, value)| Staged {
            namespace: &ns.namespace,
            key,
            value: Some(value.to_string().into_bytes()),
        }));
        Ok(Ok(staged))
    }

    /// Re-runs a range query against the current state and compares keys and versions with what
    /// the chaincode saw. A range the chaincode stopped reading early is compared up to the last
    /// key it read.
    fn range_unchanged(&self, ns: &str, range: &RangeRead) -> Result<bool> {
        let end: String = if range.exhausted {
            range.end.clone()
        } else {
            match range.reads.last() {
                // The smallest key after the last one read: the range up to it, inclusive.
                Some(last) => format!("{}\u{0}", last.key),
                None => return Ok(true),
            }
        };
        let in_range = |k: &str| k >= range.start.as_str() && (end.is_empty() || k < end.as_str());
        let overlay: Vec<(&str, &StateUpdate)> = self
            .overlay
            .range((ns, range.start.as_str())..)
            .take_while(|((n, k), _)| *n == ns && in_range(k))
            .map(|((_, k), &i)| (*k, &self.updates[i]))
            .collect();
        let limit = range.reads.len() + overlay.len() + 1;
        let mut current: BTreeMap<String, Version> = self
            .store
            .state_range_versions(ns, &range.start, &end, limit)?
            .into_iter()
            .collect();
        for (k, u) in overlay {
            match u.value {
                Some(_) => current.insert(k.to_owned(), u.version),
                None => current.remove(k),
            };
        }
        let seen = range.reads.iter().map(|r| (r.key.as_str(), r.version));
        let now = current.iter().map(|(k, v)| (k.as_str(), Some(*v)));
        Ok(seen.eq(now))
    }
}
