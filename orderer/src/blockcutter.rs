//! Block cutting, as Fabric's orderer does it (`orderer/common/blockcutter`), and the batch timer.
//!
//! The [`BlockCutter`] decides, envelope by envelope, where blocks end:
//! - an envelope larger than `preferred_max_bytes` goes into a block of its own (after the pending
//!   envelopes are cut into theirs);
//! - an envelope that would take the pending batch past `preferred_max_bytes` first cuts the
//!   pending batch;
//! - a batch is cut as soon as it holds `max_message_count` envelopes.
//!
//! Envelopes larger than `absolute_max_bytes` never get here: Broadcast refuses them.
//!
//! The [`Batcher`] adds the batch timeout: a pending batch is cut `batch_timeout` after its first
//! envelope arrived. It never reads a clock: it asks its driver to arm a timer and is told when a
//! timer fires; a timer armed for a batch that was since cut is stale and ignored.

use std::time::Duration;

use crate::error::{Error, Result};

/// The largest `absolute_max_bytes` accepted: what every node's parser accepts.
pub const MAX_BLOCK_BYTES: u32 = mercato_ca::channel::MAX_BLOCK_BYTES;

/// Fabric's batch settings (`BatchSize` and `BatchTimeout` of the channel config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// The most envelopes in a block.
    pub max_message_count: u32,
    /// The largest envelope Broadcast accepts, and so the largest block content.
    pub absolute_max_bytes: u32,
    /// The size a block aims not to exceed.
    pub preferred_max_bytes: u32,
    /// How long a pending batch waits for more envelopes.
    pub batch_timeout: Duration,
}

impl Default for BatchConfig {
    /// Fabric's defaults, with a 100 ms timeout (Fabric's is 2 s; 100 ms keeps commit latency low).
    fn default() -> Self {
        BatchConfig {
            max_message_count: 500,
            absolute_max_bytes: 10 << 20,
            preferred_max_bytes: 2 << 20,
            batch_timeout: Duration::from_millis(100),
        }
    }
}

impl From<&mercato_ca::channel::BatchSettings> for BatchConfig {
    fn from(b: &mercato_ca::channel::BatchSettings) -> Self {
        BatchConfig {
            max_message_count: b.max_message_count,
            absolute_max_bytes: b.absolute_max_bytes,
            preferred_max_bytes: b.preferred_max_bytes,
            batch_timeout: Duration::from_millis(b.batch_timeout_ms),
        }
    }
}

impl BatchConfig {
    /// Checks the settings: at least one message, preferred ≤ absolute ≤ 100 MiB, a timeout from
    /// 1 ms to 60 s.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.max_message_count == 0
            || self.max_message_count > mercato_ca::channel::MAX_BLOCK_MESSAGES
        {
            return bad(format!(
                "batch max_message_count {} must be from 1 to {}",
                self.max_message_count,
                mercato_ca::channel::MAX_BLOCK_MESSAGES
            ));
        }
        if self.preferred_max_bytes == 0 || self.preferred_max_bytes > self.absolute_max_bytes {
            return bad(format!(
                "batch preferred_max_bytes {} must be from 1 to absolute_max_bytes {}",
                self.preferred_max_bytes, self.absolute_max_bytes
            ));
        }
        if self.absolute_max_bytes > MAX_BLOCK_BYTES {
            return bad(format!(
                "batch absolute_max_bytes {} is over the limit of {MAX_BLOCK_BYTES}",
                self.absolute_max_bytes
            ));
        }
        if self.batch_timeout < Duration::from_millis(1)
            || self.batch_timeout > Duration::from_secs(60)
        {
            return bad(format!(
                "batch timeout {:?} must be from 1 ms to 60 s",
                self.batch_timeout
            ));
        }
        Ok(())
    }
}

/// What ordering one envelope produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ordered {
    /// The batches cut, each the envelopes of one block, in order.
    pub batches: Vec<Vec<Vec<u8>>>,
    /// Whether envelopes are left waiting in the pending batch.
    pub pending: bool,
}

/// Fabric's block cutter over encoded envelopes.
#[derive(Debug)]
pub struct BlockCutter {
    config: BatchConfig,
    pending: Vec<Vec<u8>>,
    pending_bytes: u64,
}

impl BlockCutter {
    /// A cutter with these settings (validated by the caller).
    pub fn new(config: BatchConfig) -> Self {
        BlockCutter {
            config,
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// Adds an envelope; returns the batches this cut and whether some envelopes still wait.
    pub fn ordered(&mut self, envelope: Vec<u8>) -> Ordered {
        let mut out = Ordered::default();
        let size = envelope.len() as u64;
        let preferred = u64::from(self.config.preferred_max_bytes);
        if size > preferred {
            if !self.pending.is_empty() {
                out.batches.push(self.cut());
            }
            out.batches.push(vec![envelope]);
            return out;
        }
        if self.pending_bytes + size > preferred && !self.pending.is_empty() {
            out.batches.push(self.cut());
        }
        self.pending.push(envelope);
        self.pending_bytes += size;
        if self.pending.len() >= self.config.max_message_count as usize {
            out.batches.push(self.cut());
        }
        out.pending = !self.pending.is_empty();
        out
    }

    /// Cuts the pending batch (empty when nothing waits).
    pub fn cut(&mut self) -> Vec<Vec<u8>> {
        self.pending_bytes = 0;
        std::mem::take(&mut self.pending)
    }

    /// How many envelopes wait.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// What the driver of a [`Batcher`] must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make a block of these envelopes.
    Cut(Vec<Vec<u8>>),
    /// Call [`Batcher::timer_fired`] with `generation` after `after`.
    ArmTimer { generation: u64, after: Duration },
}

/// The block cutter with its batch timeout, driven by events.
#[derive(Debug)]
pub struct Batcher {
    cutter: BlockCutter,
    /// The timer armed for the current pending batch, if any.
    armed: Option<u64>,
    next_generation: u64,
}

impl Batcher {
    /// A batcher with these settings (validated by the caller).
    pub fn new(config: BatchConfig) -> Self {
        Batcher {
            cutter: BlockCutter::new(config),
            armed: None,
            next_generation: 0,
        }
    }

    /// An envelope arrived.
    pub fn envelope(&mut self, envelope: Vec<u8>) -> Vec<Action> {
        let ordered = self.cutter.ordered(envelope);
        let cut_any = !ordered.batches.is_empty();
        let mut actions: Vec<Action> = ordered.batches.into_iter().map(Action::Cut).collect();
        if cut_any {
            // Whatever timer ran belonged to a batch that is now cut.
            self.armed = None;
        }
        if ordered.pending && self.armed.is_none() {
            let generation = self.next_generation;
            self.next_generation += 1;
            self.armed = Some(generation);
            actions.push(Action::ArmTimer {
                generation,
                after: self.cutter.config().batch_timeout,
            });
        }
        actions
    }

    /// A timer armed by an [`Action::ArmTimer`] fired.
    pub fn timer_fired(&mut self, generation: u64) -> Vec<Action> {
        if self.armed != Some(generation) {
            return Vec::new();
        }
        self.armed = None;
        let batch = self.cutter.cut();
        if batch.is_empty() {
            Vec::new()
        } else {
            vec![Action::Cut(batch)]
        }
    }

    /// How many envelopes wait.
    pub fn pending(&self) -> usize {
        self.cutter.pending()
    }
}
