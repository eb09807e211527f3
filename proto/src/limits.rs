//! Size limits on everything decoded from the network or disk.

/// Limits applied when parsing. The defaults suit a production network; a node's config may lower
/// them. Each parser checks sizes before it allocates for a collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest single encoded message (envelope, proposal, block) accepted.
    pub max_message_bytes: usize,
    /// The most chaincode arguments in one proposal.
    pub max_args: usize,
    /// The most transient-map entries in one proposal.
    pub max_transient_entries: usize,
    /// The most endorsements on one transaction.
    pub max_endorsements: usize,
    /// The most transactions in one block.
    pub max_block_transactions: usize,
    /// The most namespaces in one read/write set.
    pub max_namespaces: usize,
    /// The longest channel id, chaincode name, txid or MSP id.
    pub max_name_len: usize,
}

impl Limits {
    /// The defaults: 16 MiB messages (Fabric's gRPC default is 100 MiB, its block limit 10 MiB),
    /// 1,024 args, 64 endorsements, 10,000 transactions a block.
    pub const DEFAULT: Limits = Limits {
        max_message_bytes: 16 * 1024 * 1024,
        max_args: 1024,
        max_transient_entries: 256,
        max_endorsements: 64,
        max_block_transactions: 10_000,
        max_namespaces: 64,
        max_name_len: 256,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
