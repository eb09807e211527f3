//! The MSPs of a channel, and the cache that makes identity validation a once-per-certificate
//! cost instead of a per-signature one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use mercato_proto::Limits;
use mercato_proto::hash::sha256;
use mercato_proto::identity::parse_serialized_identity;

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::msp::Msp;

/// How many validated identities a manager remembers by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 16_384;

/// The MSPs of one channel. Validating a serialized identity walks its certificate chain and the
/// CRLs once; afterwards the identity comes from a bounded cache keyed by the SHA-256 of the
/// serialized bytes. The cache never changes a result: it holds only successes, and the MSPs are
/// immutable (a new channel config builds a new manager).
#[derive(Debug)]
pub struct MspManager {
    msps: BTreeMap<String, Arc<Msp>>,
    limits: Limits,
    cache: IdentityCache,
}

impl MspManager {
    /// A manager over `msps` with the default cache capacity.
    pub fn new(msps: impl IntoIterator<Item = Msp>) -> Self {
        Self::with_capacity(msps, DEFAULT_CACHE_CAPACITY)
    }

    /// A manager whose cache holds at most `capacity` identities.
    pub fn with_capacity(msps: impl IntoIterator<Item = Msp>, capacity: usize) -> Self {
        MspManager {
            msps: msps
                .into_iter()
                .map(|m| (m.id().to_owned(), Arc::new(m)))
                .collect(),
            limits: Limits::default(),
            cache: IdentityCache::new(capacity),
        }
    }

    /// The MSP with this id.
    pub fn msp(&self, id: &str) -> Option<&Arc<Msp>> {
        self.msps.get(id)
    }

    /// The MSP ids, sorted.
    pub fn msp_ids(&self) -> impl Iterator<Item = &str> {
        self.msps.keys().map(String::as_str)
    }

    /// Parses and validates serialized identity bytes (a creator or an endorser), from the cache
    /// when this exact identity was validated before.
    pub fn identity(&self, serialized: &[u8]) -> Result<Arc<Identity>> {
        let key = sha256(serialized);
        if let Some(id) = self.cache.get(&key) {
            return Ok(id);
        }
        let id = Arc::new(self.validate_uncached(serialized)?);
        self.cache.insert(key, Arc::clone(&id));
        Ok(id)
    }

    /// Like [`MspManager::identity`], and also checks the certificate's validity period at
    /// `unix_seconds` (endorsers and orderers pass their clock; block validation passes none).
    pub fn identity_at(&self, serialized: &[u8], unix_seconds: i64) -> Result<Arc<Identity>> {
        let id = self.identity(serialized)?;
        id.check_valid_at(unix_seconds)?;
        Ok(id)
    }

    /// [`MspManager::identity_at`] the system clock: for requests (proposals, broadcasts, seeks,
    /// queries), where Fabric refuses an expired certificate. Never for block validation, which
    /// reads no clock.
    pub fn identity_now(&self, serialized: &[u8]) -> Result<Arc<Identity>> {
        self.identity_at(serialized, mercato_proto::deliver::unix_now())
    }

    /// Validates serialized identity bytes without the cache.
    pub fn validate_uncached(&self, serialized: &[u8]) -> Result<Identity> {
        let sid = parse_serialized_identity(serialized, &self.limits)?;
        let msp = self
            .msps
            .get(&sid.mspid)
            .ok_or_else(|| Error::UnknownMsp(sid.mspid.clone()))?;
        msp.validate(&sid.id_bytes, serialized)
    }

    /// Validates `serialized` and verifies its signature over `message`.
    pub fn verify(
        &self,
        serialized: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<Arc<Identity>> {
        let id = self.identity(serialized)?;
        id.verify(message, signature)?;
        Ok(id)
    }

    /// How many identities the cache holds now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// A bounded map from identity hash to validated identity, evicting the oldest entry first.
/// Lookups take a read lock; only a miss takes the write lock.
#[derive(Debug)]
struct IdentityCache {
    capacity: usize,
    inner: RwLock<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    map: HashMap<[u8; 32], Arc<Identity>>,
    order: VecDeque<[u8; 32]>,
}

impl IdentityCache {
    fn new(capacity: usize) -> Self {
        IdentityCache {
            capacity,
            inner: RwLock::new(CacheInner::default()),
        }
    }

    fn get(&self, key: &[u8; 32]) -> Option<Arc<Identity>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.map.get(key).cloned()
    }

    fn insert(&self, key: [u8; 32], id: Arc<Identity>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.map.insert(key, id).is_none() {
            inner.order.push_back(key);
        }
        while inner.map.len() > self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.map.remove(&old);
                }
                None => break,
            }
        }
    }

    fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }
}
