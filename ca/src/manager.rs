//! The MSPs of a channel, and the cache that makes identity validation a once-per-certificate
//! cost instead of a per-signature one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use mercato_proto::Limits;
use mercato_proto::identity::parse_serialized_identity;

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::msp::Msp;

/// How many validated identities a manager remembers by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 16_384;

/// The MSPs of one channel. Validating a serialized identity walks its certificate chain and the
/// CRLs once; afterwards the identity comes from a bounded cache keyed by the serialized bytes.
/// The cache never changes a result: it holds only successes, and the MSPs are immutable (a new
/// channel config builds a new manager).
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
        if let Some(id) = self.cache.get(serialized) {
            return Ok(id);
        }
        let id = Arc::new(self.validate_uncached(serialized)?);
        self.cache.insert(Arc::clone(&id));
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

/// A bounded map from serialized identity to validated identity, evicting the oldest entry
/// first. An entry is found by a fingerprint of the bytes and confirmed by comparing them whole,
/// so a fingerprint shared by two identities costs a comparison, never a wrong answer. The
/// fingerprint is a fast keyed hash rather than a cryptographic one: three lookups per
/// transaction made the SHA-256 of each serialized identity (about 900 bytes) most of the lookup
/// cost. Lookups take a read lock; only a miss takes the write lock.
#[derive(Debug)]
struct IdentityCache {
    capacity: usize,
    /// The fingerprint's key, drawn per process, so that nobody can choose identities that share
    /// a fingerprint here.
    seed: u64,
    inner: RwLock<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    /// By fingerprint: the identities with it (one, but for a chance of about 2^-64 per pair).
    map: HashMap<u64, Vec<Arc<Identity>>>,
    /// Every cached identity with its fingerprint, oldest first.
    order: VecDeque<(u64, Arc<Identity>)>,
}

impl CacheInner {
    fn find(&self, print: u64, serialized: &[u8]) -> Option<&Arc<Identity>> {
        self.map
            .get(&print)?
            .iter()
            .find(|id| id.serialized() == serialized)
    }
}

/// A 64-bit keyed fingerprint of `bytes`: four independent multiply-rotate lanes over 32-byte
/// blocks, folded together. Not collision-resistant against someone who knows `seed`; the cache
/// compares the bytes whole, so a collision only costs time.
fn fingerprint(seed: u64, bytes: &[u8]) -> u64 {
    const K: [u64; 4] = [
        0x9e37_79b9_7f4a_7c15,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
        0xd6e8_feb8_6659_fd93,
    ];
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let mix = |h: u64, w: u64, k: u64| (h ^ w).wrapping_mul(k).rotate_left(29);
    let mut lanes = [
        seed,
        seed ^ K[0],
        seed.rotate_left(17) ^ K[1],
        seed.rotate_left(41) ^ K[2],
    ];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = mix(*lane, word(&block[8 * i..8 * i + 8]), K[i]);
        }
    }
    for (i, part) in blocks.remainder().chunks(8).enumerate() {
        lanes[i] = mix(lanes[i], word(part), K[i]);
    }
    let mut h = (bytes.len() as u64).wrapping_mul(K[3]);
    for (lane, k) in lanes.iter().zip(K) {
        h = mix(h, *lane, k);
    }
    h ^ (h >> 31)
}

impl IdentityCache {
    fn new(capacity: usize) -> Self {
        use std::hash::BuildHasher;
        IdentityCache {
            capacity,
            seed: std::hash::RandomState::new().hash_one(0x006d_6572_6361_746f_u64),
            inner: RwLock::new(CacheInner::default()),
        }
    }

    fn get(&self, serialized: &[u8]) -> Option<Arc<Identity>> {
        let print = fingerprint(self.seed, serialized);
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.find(print, serialized).cloned()
    }

    fn insert(&self, id: Arc<Identity>) {
        if self.capacity == 0 {
            return;
        }
        let print = fingerprint(self.seed, id.serialized());
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        // Two threads that missed at once both validate; the first one's entry stays.
        if inner.find(print, id.serialized()).is_some() {
            return;
        }
        inner.map.entry(print).or_default().push(Arc::clone(&id));
        inner.order.push_back((print, id));
        while inner.order.len() > self.capacity {
            let Some((old_print, old)) = inner.order.pop_front() else {
                break;
            };
            if let Some(bucket) = inner.map.get_mut(&old_print) {
                bucket.retain(|id| !Arc::ptr_eq(id, &old));
                if bucket.is_empty() {
                    inner.map.remove(&old_print);
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .order
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::PublicKey;
    use crate::identity::Role;

    fn identity(serialized: &[u8]) -> Arc<Identity> {
        Arc::new(Identity {
            msp_id: "Brand1MSP".into(),
            serialized: serialized.to_vec(),
            certificate: Vec::new(),
            cert_hash: [0; 32],
            common_name: String::from_utf8_lossy(serialized).into_owned(),
            serial: "1".into(),
            role: Role::Client,
            admin: false,
            attributes: BTreeMap::new(),
            public_key: PublicKey::EcdsaP256(vec![4; 65]),
            not_before: 0,
            not_after: 0,
        })
    }

    #[test]
    fn the_fingerprint_depends_on_every_byte_and_the_length() {
        let base: Vec<u8> = (0..900u32).map(|i| (i * 7) as u8).collect();
        let print = fingerprint(42, &base);
        assert_eq!(fingerprint(42, &base), print);
        assert_ne!(fingerprint(43, &base), print, "the seed");
        for at in [0, 1, 7, 8, 31, 32, 450, 895, 899] {
            let mut changed = base.clone();
            changed[at] ^= 1;
            assert_ne!(fingerprint(42, &changed), print, "byte {at}");
        }
        let mut longer = base.clone();
        longer.push(0);
        assert_ne!(fingerprint(42, &longer), print, "a trailing zero");
        assert_ne!(fingerprint(42, &[]), fingerprint(42, &[0]));
    }

    /// Two identities that share a fingerprint are told apart by their bytes, and evicting one
    /// keeps the other.
    #[test]
    fn identities_sharing_a_fingerprint_are_told_apart() {
        let cache = IdentityCache::new(2);
        let (a, b) = (identity(b"alice"), identity(b"bob"));
        {
            let mut inner = cache.inner.write().unwrap();
            let print = fingerprint(cache.seed, b"alice");
            inner
                .map
                .insert(print, vec![Arc::clone(&a), Arc::clone(&b)]);
            inner.order.push_back((print, Arc::clone(&a)));
            inner.order.push_back((print, Arc::clone(&b)));
            assert!(Arc::ptr_eq(inner.find(print, b"bob").unwrap(), &b));
            assert!(inner.find(print, b"carol").is_none());
        }
        assert!(Arc::ptr_eq(&cache.get(b"alice").unwrap(), &a));
        assert!(cache.get(b"bob").is_none(), "bob's own fingerprint differs");
        cache.insert(identity(b"carol"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(b"alice").is_none(), "the oldest went");
        let inner = cache.inner.read().unwrap();
        let print = fingerprint(cache.seed, b"alice");
        assert!(Arc::ptr_eq(inner.find(print, b"bob").unwrap(), &b));
    }

    #[test]
    fn an_identity_cached_twice_is_kept_once() {
        let cache = IdentityCache::new(4);
        let first = identity(b"alice");
        cache.insert(Arc::clone(&first));
        cache.insert(identity(b"alice"));
        assert_eq!(cache.len(), 1);
        assert!(Arc::ptr_eq(&cache.get(b"alice").unwrap(), &first));
    }
}
