//! What a contract sees of the ledger and of the transaction.

use alloc::string::String;
use alloc::vec::Vec;

use crate::abi::{Creator, InvokeResult};
use crate::error::Error;

/// One page of a range query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Keys and values, in key order.
    pub entries: Vec<(String, Vec<u8>)>,
    /// Where the next page starts; empty when there is none.
    pub bookmark: String,
}

/// The transaction's view of the ledger. Reads see the transaction's own writes; writes take
/// effect only if the transaction commits.
pub trait Context {
    /// The channel.
    fn channel(&self) -> &str;
    /// The transaction id.
    fn txid(&self) -> &str;
    /// The proposal's timestamp, set by the client (seconds, nanoseconds): the only clock a
    /// contract has, identical on every endorser.
    fn timestamp(&self) -> (i64, i32);
    /// Who submitted the transaction.
    fn creator(&self) -> &Creator;
    /// A value of the transient map (private input, never written to the ledger).
    fn transient(&self, name: &str) -> Option<&[u8]>;

    /// A key's value.
    fn get_state(&mut self, key: &str) -> Result<Option<Vec<u8>>, Error>;
    /// Writes a key.
    fn put_state(&mut self, key: &str, value: &[u8]) -> Result<(), Error>;
    /// Deletes a key.
    fn delete_state(&mut self, key: &str) -> Result<(), Error>;
    /// Up to `page_size` keys in `[start, end)` (empty `end`: to the end of the namespace),
    /// starting at `bookmark` (empty: at `start`).
    fn get_state_range(
        &mut self,
        start: &str,
        end: &str,
        page_size: u32,
        bookmark: &str,
    ) -> Result<Page, Error>;
    /// Adds `amount` to the signed 64-bit decimal number at `key` (absent counts as 0) when the
    /// transaction commits, without reading it: concurrent additions to one key do not conflict.
    /// With `lower_bound`, a result below it makes the transaction invalid.
    fn add(&mut self, key: &str, amount: i64, lower_bound: Option<i64>) -> Result<(), Error>;
    /// Sets the transaction's chaincode event.
    fn set_event(&mut self, name: &str, payload: &[u8]) -> Result<(), Error>;
    /// Calls another chaincode on the same channel in this transaction.
    fn invoke_chaincode(
        &mut self,
        chaincode: &str,
        args: &[Vec<u8>],
    ) -> Result<InvokeResult, Error>;
    /// A line in the peer's log.
    fn log(&mut self, message: &str);

    /// One attribute of the creator's certificate (e.g. `role`).
    fn attribute(&self, name: &str) -> Option<&str> {
        self.creator()
            .attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
