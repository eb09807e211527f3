//! An in-memory ledger for native unit tests of contracts.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::abi::{Creator, InvokeResult};
use crate::{Context, Error, Page};

/// A native chaincode another contract may call in tests.
pub type NativeChaincode = fn(&mut dyn Context, &[Vec<u8>]) -> InvokeResult;

/// A ledger in memory with a settable creator, txid and timestamp. Writes apply at once (there
/// is no block); [`Context::add`] checks its bound at once and fails the call, where on a real
/// peer the transaction would be marked invalid at commit.
#[derive(Debug, Clone, Default)]
pub struct MemContext {
    /// The state (the contract's namespace).
    pub state: BTreeMap<String, Vec<u8>>,
    /// Events set, in order.
    pub events: Vec<(String, Vec<u8>)>,
    /// Log lines.
    pub logs: Vec<String>,
    /// The creator.
    pub creator: Creator,
    /// The txid.
    pub txid: String,
    /// The channel.
    pub channel: String,
    /// The timestamp.
    pub timestamp: (i64, i32),
    /// The transient map.
    pub transient: BTreeMap<String, Vec<u8>>,
    /// Other chaincodes callable by name.
    pub chaincodes: BTreeMap<String, NativeChaincode>,
}

impl MemContext {
    /// An empty ledger; the creator is `Org1MSP`'s client `user`.
    pub fn new() -> Self {
        MemContext {
            creator: Creator {
                msp_id: "Org1MSP".into(),
                id: "user".into(),
                role: "client".into(),
                attributes: Vec::new(),
            },
            txid: "tx0".into(),
            channel: "channel".into(),
            ..Default::default()
        }
    }

    /// Sets who calls next (MSP id, name, role, attributes).
    pub fn as_creator(
        &mut self,
        msp_id: &str,
        id: &str,
        role: &str,
        attributes: &[(&str, &str)],
    ) -> &mut Self {
        let mut attributes: Vec<(String, String)> = attributes
            .iter()
            .map(|(k, v)| (String::from(*k), String::from(*v)))
            .collect();
        attributes.sort();
        self.creator = Creator {
            msp_id: msp_id.into(),
            id: id.into(),
            role: role.into(),
            attributes,
        };
        self
    }
}

impl Context for MemContext {
    fn channel(&self) -> &str {
        &self.channel
    }
    fn txid(&self) -> &str {
        &self.txid
    }
    fn timestamp(&self) -> (i64, i32) {
        self.timestamp
    }
    fn creator(&self) -> &Creator {
        &self.creator
    }
    fn transient(&self, name: &str) -> Option<&[u8]> {
        self.transient.get(name).map(Vec::as_slice)
    }
    fn get_state(&mut self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.state.get(key).cloned())
    }
    fn put_state(&mut self, key: &str, value: &[u8]) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::bad_request("empty key"));
        }
        self.state.insert(key.into(), value.to_vec());
        Ok(())
    }
    fn delete_state(&mut self, key: &str) -> Result<(), Error> {
        self.state.remove(key);
        Ok(())
    }
    fn get_state_range(
        &mut self,
        start: &str,
        end: &str,
        page_size: u32,
        bookmark: &str,
    ) -> Result<Page, Error> {
        let from = if bookmark.is_empty() { start } else { bookmark };
        let page_size = page_size.clamp(1, 1000) as usize;
        let mut entries: Vec<(String, Vec<u8>)> = self
            .state
            .range::<str, _>((
                core::ops::Bound::Included(from),
                core::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| end.is_empty() || k.as_str() < end)
            .take(page_size + 1)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let bookmark = if entries.len() > page_size {
            entries.pop().map(|(k, _)| k).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Page { entries, bookmark })
    }
    fn add(&mut self, key: &str, amount: i64, lower_bound: Option<i64>) -> Result<(), Error> {
        let current = match self.state.get(key) {
            None => 0,
            Some(v) => core::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| Error::conflict(alloc::format!("{key} does not hold a number")))?,
        };
        let next = current
            .checked_add(amount)
            .ok_or_else(|| Error::conflict(alloc::format!("{key} would overflow")))?;
        if lower_bound.is_some_and(|b| next < b) {
            return Err(Error::conflict(alloc::format!(
                "{key} would go below its bound"
            )));
        }
        self.state
            .insert(key.into(), alloc::format!("{next}").into_bytes());
        Ok(())
    }
    fn set_event(&mut self, name: &str, payload: &[u8]) -> Result<(), Error> {
        self.events.push((name.into(), payload.to_vec()));
        Ok(())
    }
    fn invoke_chaincode(
        &mut self,
        chaincode: &str,
        args: &[Vec<u8>],
    ) -> Result<InvokeResult, Error> {
        let f = *self
            .chaincodes
            .get(chaincode)
            .ok_or_else(|| Error::not_found(alloc::format!("no chaincode {chaincode}")))?;
        Ok(f(self, args))
    }
    fn log(&mut self, message: &str) {
        self.logs.push(message.into());
    }
}
