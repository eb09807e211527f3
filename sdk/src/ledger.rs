//! The ledger query service (`mercato.Ledger`) for auditors and channel members: chain info,
//! blocks, decoded transactions, key history and world-state reads. Every request is signed by
//! the gateway's identity; the peer serves it to readers of the channel only.
//!
//! ```no_run
//! # async fn demo(gateway: mercato_sdk::Gateway) -> mercato_sdk::Result<()> {
//! let ledger = gateway.network("commerce").ledger();
//! let info = ledger.chain_info().await?;
//! println!("height {} commit hash {}", info.height, hex::encode(&info.commit_hash));
//! let history = ledger.history("commerce", "account~bob").await?;
//! # let _ = history; Ok(()) }
//! ```

use mercato_proto::pb::mercato::block_query::By;
use mercato_proto::pb::mercato::ledger_client::LedgerClient;
use mercato_proto::pb::mercato::ledger_request::Query;
use mercato_proto::pb::mercato::{
    BlockQuery, ChainInfoQuery, HistoryQuery, SignedLedgerRequest, StateQuery, StateRangeQuery,
    TransactionQuery,
};
use mercato_proto::query::sign_ledger_request;
use tonic::transport::Channel;

use crate::{Error, Network, Result, now};

/// The answers, as the service defines them.
pub use mercato_proto::pb::mercato::{
    BlockInfo, ChainInfo, HistoryEntry, HistoryPage, KeyDelta, KeyRead, KeyWrite, Member,
    RangeRead, StateEntry, StatePage, TransactionInfo, Version,
};

/// The most history entries [`Ledger::history`] gathers before it stops with an error: page
/// with [`Ledger::history_page`] beyond that.
const MAX_HISTORY: usize = 100_000;

/// A channel's ledger on the gateway's peer.
#[derive(Debug, Clone)]
pub struct Ledger {
    network: Network,
    client: LedgerClient<Channel>,
}

impl Network {
    /// The ledger query service of this channel on the gateway's peer.
    pub fn ledger(&self) -> Ledger {
        Ledger {
            client: LedgerClient::new(self.gateway.transport.clone())
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_RESPONSE_BYTES),
            network: self.clone(),
        }
    }
}

impl Ledger {
    fn request(&self, query: Query) -> Result<tonic::Request<SignedLedgerRequest>> {
        let g = &self.network.gateway;
        let signed = sign_ledger_request(g.identity.as_ref(), &self.network.channel, now(), query)
            .map_err(|e| Error::Config(e.to_string()))?;
        let mut r = tonic::Request::new(signed);
        r.set_timeout(g.options.timeout);
        Ok(r)
    }

    /// Height, the last block's hash, its predecessor's and the last commit hash.
    pub async fn chain_info(&self) -> Result<ChainInfo> {
        let r = self.request(Query::ChainInfo(ChainInfoQuery {}))?;
        call("GetChainInfo", self.client.clone().get_chain_info(r).await)
    }

    async fn block_by(&self, by: By) -> Result<BlockInfo> {
        let r = self.request(Query::Block(BlockQuery { by: Some(by) }))?;
        call("GetBlock", self.client.clone().get_block(r).await)
    }

    /// The block with this number, exactly as stored, with its commit hash.
    pub async fn block(&self, number: u64) -> Result<BlockInfo> {
        self.block_by(By::Number(number)).await
    }

    /// The block with this header hash.
    pub async fn block_by_hash(&self, hash: &[u8]) -> Result<BlockInfo> {
        self.block_by(By::Hash(hash.to_vec())).await
    }

    /// The block holding this transaction.
    pub async fn block_by_txid(&self, txid: &str) -> Result<BlockInfo> {
        self.block_by(By::Txid(txid.to_owned())).await
    }

    /// A transaction, decoded: creator, endorsers, call, read/write set, code, block, time.
    pub async fn transaction(&self, txid: &str) -> Result<TransactionInfo> {
        let r = self.request(Query::Transaction(TransactionQuery {
            txid: txid.to_owned(),
        }))?;
        call(
            "GetTransaction",
            self.client.clone().get_transaction(r).await,
        )
    }

    /// One page of a key's history, after `after` (0 for `limit`: the peer's default page).
    pub async fn history_page(
        &self,
        namespace: &str,
        key: &str,
        after: Option<Version>,
        limit: u32,
    ) -> Result<HistoryPage> {
        let r = self.request(Query::History(HistoryQuery {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            limit,
            after,
        }))?;
        call("GetHistory", self.client.clone().get_history(r).await)
    }

    /// A key's whole history, oldest first, page by page (at most 100,000 entries).
    pub async fn history(&self, namespace: &str, key: &str) -> Result<Vec<HistoryEntry>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.history_page(namespace, key, after, 0).await?;
            after = page.entries.last().and_then(|e| e.version);
            all.extend(page.entries);
            if !page.more || after.is_none() {
                return Ok(all);
            }
            if all.len() > MAX_HISTORY {
                return Err(Error::Malformed(format!(
                    "the history of {key:?} has more than {MAX_HISTORY} entries; page with \
                     history_page"
                )));
            }
        }
    }

    /// A key's current value and version, or `None`.
    pub async fn state(&self, namespace: &str, key: &str) -> Result<Option<StateEntry>> {
        let r = self.request(Query::State(StateQuery {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
        }))?;
        let found = call("GetState", self.client.clone().get_state(r).await)?;
        Ok(found.entry.filter(|_| found.found))
    }

    /// One page of the keys in `[start, end)` of a namespace (an empty `end`: to its end); ask
    /// again from `next_start_key` while `more`.
    pub async fn state_range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: u32,
    ) -> Result<StatePage> {
        let r = self.request(Query::StateRange(StateRangeQuery {
            namespace: namespace.to_owned(),
            start_key: start.to_owned(),
            end_key: end.to_owned(),
            limit,
        }))?;
        call(
            "GetStateRange",
            self.client.clone().get_state_range(r).await,
        )
    }
}

fn call<T>(
    name: &'static str,
    r: std::result::Result<tonic::Response<T>, tonic::Status>,
) -> Result<T> {
    r.map(tonic::Response::into_inner)
        .map_err(|s| Error::Status {
            call: name,
            code: s.code(),
            message: s.message().to_owned(),
        })
}
