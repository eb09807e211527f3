//! The chaincode lifecycle, after Fabric 2's `_lifecycle`: packages are installed on peers, each
//! organisation's admin approves a definition, and once a majority of the channel's organisations
//! approved it, a transaction commits it and it is live from that transaction on every peer.
//!
//! - A **package** (`mercato.ChaincodePackage`: a wasm module with a label, name and version) is
//!   installed on one peer by [`PackageStore::install`], which compiles it (refusing a module the
//!   sandbox would refuse) and keeps it on disk. Its package id is `label:hex(SHA-256(wasm))`;
//!   definitions name the module by the hash alone.
//! - **Approve** (`ApproveChaincodeDefinitionForMyOrg`): sent by an admin of the org to the org's
//!   own peer; the transaction writes `approval/{name}/{sequence}/{msp}` = SHA-256 of the encoded
//!   definition in the `_lifecycle` namespace.
//! - **Commit** (`CommitChaincodeDefinition`): once a majority of the channel's application orgs
//!   approved exactly this definition at the next sequence, writes `definition/{name}`.
//!   A higher sequence upgrades the chaincode.
//! - Validation judges `_lifecycle` writes by these rules again ([`check_writes`]): an approval
//!   needs an admin of its org as creator and that org's peer as endorser; a commit needs the
//!   peers of a majority of orgs and the approvals in the state. A colluding endorser cannot
//!   approve for another org.
//! - A chaincode's endorsement policy is read from its committed definition by validation
//!   ([`LifecycleDefinitions`]), and every simulation of it records a read of that definition
//!   ([`LifecycleResolver`]): a transaction endorsed under an older definition fails MVCC once an
//!   upgrade commits, so no peer ever judges it by a policy it was not endorsed under.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mercato_ca::policy::{MspRole, Policy, Principal, SignaturePolicy};
use mercato_ca::{Identity, Role};
use mercato_chaincode::abi::{Invocation, InvokeResult};
use mercato_proto::hash::sha256;
use mercato_proto::pb::mercato as pb;
use mercato_proto::{TxValidationCode, ValidationCode};
use prost::Message;

use crate::chaincode::{
    ChaincodeResolver, ChaincodeRuntime, CodeHash, ExecError, NativeChaincode, Resolved, Simulation,
};
use crate::error::{Error, Result};
use crate::ledger::Version;
use crate::rwset::{NsRwSet, valid_namespace};
use crate::validator::verify::CheckedTx;
use crate::validator::{ChaincodeDefinitions, StateReader, ValidationContext};

/// The namespace, and the name of the system chaincode, of the lifecycle.
pub const LIFECYCLE: &str = "_lifecycle";
/// The largest package a peer installs.
pub const MAX_PACKAGE_BYTES: usize = 32 << 20;
/// The largest encoded definition.
pub const MAX_DEFINITION_BYTES: usize = 16 << 10;
/// The longest endorsement policy text.
pub const MAX_POLICY_LEN: usize = 4096;

/// The `_lifecycle` functions.
pub const APPROVE: &str = "ApproveChaincodeDefinitionForMyOrg";
/// Commits an approved definition.
pub const COMMIT: &str = "CommitChaincodeDefinition";
/// Which orgs approved a definition.
pub const CHECK_COMMIT_READINESS: &str = "CheckCommitReadiness";
/// The committed definition of a chaincode.
pub const QUERY_DEFINITION: &str = "QueryChaincodeDefinition";

/// Why a package or definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// The package is malformed, too large, or its module is refused by the sandbox.
    #[error("invalid chaincode package: {0}")]
    InvalidPackage(String),
    /// The definition is malformed.
    #[error("invalid chaincode definition: {0}")]
    InvalidDefinition(String),
    /// Reading or writing the package store failed.
    #[error("package store: {0}")]
    Storage(String),
}

/// The state key of a chaincode's committed definition.
pub fn definition_key(name: &str) -> String {
    format!("definition/{name}")
}

/// The state key of an org's approval of a definition at a sequence.
pub fn approval_key(name: &str, sequence: u64, msp_id: &str) -> String {
    format!("approval/{name}/{sequence}/{msp_id}")
}

/// A chaincode definition on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaincodeDefinition {
    /// The chaincode's name: its namespace in the world state.
    pub name: String,
    /// The version, informational.
    pub version: String,
    /// 1 for the first definition, one more for each upgrade.
    pub sequence: u64,
    /// SHA-256 of the wasm module.
    pub package_hash: CodeHash,
    /// The endorsement policy, as text (`AND('Org1MSP.peer', 'Org2MSP.peer')`,
    /// `MAJORITY Endorsement`).
    pub endorsement_policy: String,
}

impl ChaincodeDefinition {
    /// The definition's wire form (`mercato.ChaincodeDefinition`): what approvals hash and the
    /// state holds.
    pub fn encode(&self) -> Vec<u8> {
        pb::ChaincodeDefinition {
            name: self.name.clone(),
            version: self.version.clone(),
            sequence: self.sequence,
            package_hash: self.package_hash.to_vec(),
            endorsement_policy: self.endorsement_policy.clone(),
        }
        .encode_to_vec()
    }

    /// Decodes and validates a definition.
    pub fn decode(bytes: &[u8]) -> Result<Self, LifecycleError> {
        let bad = |m: String| LifecycleError::InvalidDefinition(m);
        if bytes.len() > MAX_DEFINITION_BYTES {
            return Err(bad(format!(
                "{} bytes, over the limit of {MAX_DEFINITION_BYTES}",
                bytes.len()
            )));
        }
        let d = pb::ChaincodeDefinition::decode(bytes).map_err(|e| bad(e.to_string()))?;
        let package_hash: CodeHash = d.package_hash.as_slice().try_into().map_err(|_| {
            bad(format!(
                "package hash of {} bytes; a SHA-256 hash has 32",
                d.package_hash.len()
            ))
        })?;
        let def = ChaincodeDefinition {
            name: d.name,
            version: d.version,
            sequence: d.sequence,
            package_hash,
            endorsement_policy: d.endorsement_policy,
        };
        def.validate()?;
        Ok(def)
    }

    /// Checks the fields: a chaincode name (not a system one), a version, a sequence of at least
    /// 1 and an endorsement policy that parses.
    pub fn validate(&self) -> Result<(), LifecycleError> {
        let bad = |m: String| LifecycleError::InvalidDefinition(m);
        if !valid_namespace(&self.name) || self.name.starts_with('_') {
            return Err(bad(format!(
                "name {:?}: 1 to 128 letters, digits, '_', '-' or '.', not starting with '_'",
                self.name
            )));
        }
        if self.version.is_empty()
            || self.version.len() > 128
            || self.version.chars().any(char::is_control)
        {
            return Err(bad(format!(
                "version {:?}: 1 to 128 printable characters",
                self.version
            )));
        }
        if self.sequence == 0 {
            return Err(bad("sequence 0: sequences start at 1".into()));
        }
        self.policy()?;
        Ok(())
    }

    /// The parsed endorsement policy.
    pub fn policy(&self) -> Result<Policy, LifecycleError> {
        if self.endorsement_policy.len() > MAX_POLICY_LEN {
            return Err(LifecycleError::InvalidDefinition(format!(
                "endorsement policy of {} bytes, over the limit of {MAX_POLICY_LEN}",
                self.endorsement_policy.len()
            )));
        }
        self.endorsement_policy.parse().map_err(|e| {
            LifecycleError::InvalidDefinition(format!(
                "endorsement policy {:?}: {e}",
                self.endorsement_policy
            ))
        })
    }

    /// What an approval records: SHA-256 of the encoded definition.
    pub fn digest(&self) -> [u8; 32] {
        sha256(&self.encode())
    }
}

/// How many of `orgs` make a majority.
pub fn majority(orgs: usize) -> usize {
    orgs / 2 + 1
}

// ---------------------------------------------------------------------------------------------
// Packages.

/// A package installed on this peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    /// `label:hex(hash)`.
    pub package_id: String,
    /// The label given at packaging.
    pub label: String,
    /// The chaincode name given at packaging (informational).
    pub name: String,
    /// The version given at packaging (informational).
    pub version: String,
    /// SHA-256 of the wasm module: what definitions name.
    pub hash: CodeHash,
}

/// Builds a package's bytes (what `install` takes).
pub fn new_package(label: &str, name: &str, version: &str, wasm: &[u8]) -> Vec<u8> {
    pb::ChaincodePackage {
        label: label.to_owned(),
        wasm: wasm.to_vec(),
        name: name.to_owned(),
        version: version.to_owned(),
    }
    .encode_to_vec()
}

/// The packages installed on a peer, one file each (`{hex hash}.pkg`) in a folder.
#[derive(Debug)]
pub struct PackageStore {
    dir: PathBuf,
}

impl PackageStore {
    /// Opens (creating) the package folder.
    pub fn open(dir: &Path) -> Result<Self, LifecycleError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LifecycleError::Storage(format!("{}: {e}", dir.display())))?;
        Ok(PackageStore {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, hash: &CodeHash) -> PathBuf {
        self.dir.join(format!("{}.pkg", hex::encode(hash)))
    }

    /// Installs a package: checks it, compiles its module (so a module the sandbox refuses is
    /// refused now, with the reason), and stores it durably. Installing the same module again
    /// is harmless and returns the same hash.
    pub fn install(
        &self,
        package: &[u8],
        runtime: &ChaincodeRuntime,
    ) -> Result<InstalledPackage, LifecycleError> {
        let (info, wasm) = decode_package(package)?;
        let hash = runtime
            .load(&wasm)
            .map_err(|e| LifecycleError::InvalidPackage(e.to_string()))?;
        debug_assert_eq!(hash, info.hash);
        let path = self.path(&hash);
        if !path.exists() {
            let storage =
                |e: std::io::Error| LifecycleError::Storage(format!("{}: {e}", path.display()));
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp).map_err(storage)?;
            f.write_all(package).map_err(storage)?;
            f.sync_all().map_err(storage)?;
            std::fs::rename(&tmp, &path).map_err(storage)?;
            if let Ok(d) = std::fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(info)
    }

    /// The module of an installed package, checked against its hash (the disk is not trusted).
    pub fn wasm(&self, hash: &CodeHash) -> Result<Option<Vec<u8>>, LifecycleError> {
        let path = self.path(hash);
        let bytes = match read_package_file(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LifecycleError::Storage(format!("{}: {e}", path.display()))),
        };
        let (info, wasm) = decode_package(&bytes)
            .map_err(|e| LifecycleError::Storage(format!("{}: {e}", path.display())))?;
        if info.hash != *hash {
            return Err(LifecycleError::Storage(format!(
                "{}: holds a module of another hash",
                path.display()
            )));
        }
        Ok(Some(wasm))
    }

    /// Every installed package, by package id.
    pub fn list(&self) -> Result<Vec<InstalledPackage>, LifecycleError> {
        let storage =
            |e: std::io::Error| LifecycleError::Storage(format!("{}: {e}", self.dir.display()));
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(storage)? {
            let path = entry.map_err(storage)?.path();
            if path.extension().is_some_and(|e| e == "pkg") {
                let bytes = read_package_file(&path).map_err(storage)?;
                if let Ok((info, _)) = decode_package(&bytes) {
                    out.push(info);
                }
            }
        }
        out.sort_by(|a, b| a.package_id.cmp(&b.package_id));
        Ok(out)
    }
}

/// Reads a package file, refusing one larger than any package (the disk is not trusted).
fn read_package_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_PACKAGE_BYTES as u64 {
        return Err(std::io::Error::other(format!(
            "{len} bytes, over the limit of {MAX_PACKAGE_BYTES}"
        )));
    }
    std::fs::read(path)
}

fn decode_package(bytes: &[u8]) -> Result<(InstalledPackage, Vec<u8>), LifecycleError> {
    let bad = |m: String| LifecycleError::InvalidPackage(m);
    if bytes.len() > MAX_PACKAGE_BYTES {
        return Err(bad(format!(
            "{} bytes, over the limit of {MAX_PACKAGE_BYTES}",
            bytes.len()
        )));
    }
    let p = pb::ChaincodePackage::decode(bytes).map_err(|e| bad(e.to_string()))?;
    let label_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'))
    };
    if !label_ok(&p.label) {
        return Err(bad(format!(
            "label {:?}: 1 to 64 letters, digits, '_', '-', '.' or '+'",
            p.label
        )));
    }
    if p.wasm.is_empty() {
        return Err(bad("no wasm module".into()));
    }
    if p.name.len() > 128 || p.version.len() > 128 {
        return Err(bad("name or version longer than 128 bytes".into()));
    }
    let hash = sha256(&p.wasm);
    let info = InstalledPackage {
        package_id: format!("{}:{}", p.label, hex::encode(hash)),
        label: p.label,
        name: p.name,
        version: p.version,
        hash,
    };
    Ok((info, p.wasm))
}

// ---------------------------------------------------------------------------------------------
// The `_lifecycle` system chaincode, run by endorsers.

/// The `_lifecycle` system chaincode as one peer runs it.
#[derive(Debug, Clone)]
pub struct LifecycleContract {
    /// The endorsing peer's organisation: the one `ApproveChaincodeDefinitionForMyOrg` approves
    /// for.
    pub msp_id: String,
    /// The channel's application organisations.
    pub orgs: Vec<String>,
}

fn reply(status: i32, message: impl Into<String>, payload: Vec<u8>) -> InvokeResult {
    InvokeResult {
        status,
        message: message.into(),
        payload,
    }
}

fn ok(payload: Vec<u8>) -> InvokeResult {
    reply(200, "", payload)
}

/// Reads a committed definition through a simulation (recording the read).
fn read_definition(
    sim: &mut Simulation,
    name: &str,
) -> std::result::Result<Option<ChaincodeDefinition>, String> {
    match sim.get(LIFECYCLE, &definition_key(name))? {
        None => Ok(None),
        Some(bytes) => ChaincodeDefinition::decode(&bytes)
            .map(Some)
            .map_err(|e| format!("the committed definition of {name} is corrupt: {e}")),
    }
}

impl LifecycleContract {
    /// The definition in `args[1]`, checked to be at the next sequence.
    fn next_definition(
        sim: &mut Simulation,
        invocation: &Invocation,
    ) -> std::result::Result<ChaincodeDefinition, InvokeResult> {
        let arg = invocation.args.get(1).ok_or_else(|| {
            reply(
                400,
                "expected an encoded ChaincodeDefinition in args[1]",
                Vec::new(),
            )
        })?;
        let def =
            ChaincodeDefinition::decode(arg).map_err(|e| reply(400, e.to_string(), Vec::new()))?;
        let current = read_definition(sim, &def.name).map_err(|e| reply(500, e, Vec::new()))?;
        let next = current.map_or(1, |c| c.sequence.saturating_add(1));
        if def.sequence != next {
            return Err(reply(
                400,
                format!(
                    "{} at sequence {}: the next sequence of {} is {next}",
                    def.name, def.sequence, def.name
                ),
                Vec::new(),
            ));
        }
        Ok(def)
    }

    fn approvals(
        &self,
        sim: &mut Simulation,
        def: &ChaincodeDefinition,
    ) -> std::result::Result<BTreeMap<String, bool>, InvokeResult> {
        let digest = def.digest();
        let mut out = BTreeMap::new();
        for org in &self.orgs {
            let v = sim
                .get(LIFECYCLE, &approval_key(&def.name, def.sequence, org))
                .map_err(|e| reply(500, e, Vec::new()))?;
            out.insert(org.clone(), v.is_some_and(|v| v == digest));
        }
        Ok(out)
    }
}

impl NativeChaincode for LifecycleContract {
    fn invoke(&self, sim: &mut Simulation, invocation: &Invocation) -> InvokeResult {
        let function = invocation
            .args
            .first()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_default();
        let creator = &invocation.creator;
        let mut run = || -> std::result::Result<InvokeResult, InvokeResult> {
            match function.as_str() {
                APPROVE => {
                    if creator.msp_id != self.msp_id || creator.role != Role::Admin.as_str() {
                        return Err(reply(
                            403,
                            format!(
                                "only an admin of {} approves for {} on this peer; the creator is a {} of {}",
                                self.msp_id, self.msp_id, creator.role, creator.msp_id
                            ),
                            Vec::new(),
                        ));
                    }
                    let def = Self::next_definition(sim, invocation)?;
                    sim.put(
                        LIFECYCLE,
                        &approval_key(&def.name, def.sequence, &self.msp_id),
                        Some(def.digest().to_vec()),
                    )
                    .map_err(|e| reply(500, e, Vec::new()))?;
                    Ok(ok(Vec::new()))
                }
                COMMIT => {
                    if !self.orgs.contains(&creator.msp_id) || creator.role != Role::Admin.as_str()
                    {
                        return Err(reply(
                            403,
                            format!(
                                "only an admin of one of the channel's organisations commits a definition; the creator is a {} of {}",
                                creator.role, creator.msp_id
                            ),
                            Vec::new(),
                        ));
                    }
                    let def = Self::next_definition(sim, invocation)?;
                    let approvals = self.approvals(sim, &def)?;
                    let yes = approvals.values().filter(|a| **a).count();
                    let need = majority(self.orgs.len());
                    if yes < need {
                        let missing: Vec<&str> = approvals
                            .iter()
                            .filter(|(_, a)| !**a)
                            .map(|(o, _)| o.as_str())
                            .collect();
                        return Err(reply(
                            400,
                            format!(
                                "{} sequence {} is approved by {yes} of {} organisations and needs {need}; not approved by {}",
                                def.name,
                                def.sequence,
                                self.orgs.len(),
                                missing.join(", ")
                            ),
                            Vec::new(),
                        ));
                    }
                    sim.put(LIFECYCLE, &definition_key(&def.name), Some(def.encode()))
                        .map_err(|e| reply(500, e, Vec::new()))?;
                    Ok(ok(Vec::new()))
                }
                CHECK_COMMIT_READINESS => {
                    let def = Self::next_definition(sim, invocation)?;
                    let approvals = self.approvals(sim, &def)?;
                    Ok(ok(pb::CommitReadiness { approvals }.encode_to_vec()))
                }
                QUERY_DEFINITION => {
                    let name = invocation
                        .args
                        .get(1)
                        .map(|n| String::from_utf8_lossy(n).into_owned())
                        .unwrap_or_default();
                    match read_definition(sim, &name).map_err(|e| reply(500, e, Vec::new()))? {
                        Some(def) => Ok(ok(def.encode())),
                        None => Err(reply(
                            404,
                            format!("chaincode {name:?} is not defined on this channel"),
                            Vec::new(),
                        )),
                    }
                }
                other => Err(reply(
                    400,
                    format!(
                        "_lifecycle has no function {other:?} (it has {APPROVE}, {COMMIT}, {CHECK_COMMIT_READINESS}, {QUERY_DEFINITION})"
                    ),
                    Vec::new(),
                )),
            }
        };
        run().unwrap_or_else(|e| e)
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution for endorsement, and definitions for validation.

/// Resolves chaincode names through the committed definitions to installed packages; `_lifecycle`
/// to the system chaincode.
#[derive(Debug)]
pub struct LifecycleResolver {
    packages: Arc<PackageStore>,
    contract: Arc<LifecycleContract>,
}

impl LifecycleResolver {
    /// A resolver over this peer's packages.
    pub fn new(packages: Arc<PackageStore>, contract: LifecycleContract) -> Self {
        LifecycleResolver {
            packages,
            contract: Arc::new(contract),
        }
    }
}

impl ChaincodeResolver for LifecycleResolver {
    fn resolve(
        &self,
        sim: &mut Simulation,
        runtime: &ChaincodeRuntime,
        name: &str,
    ) -> Result<Resolved, ExecError> {
        if name == LIFECYCLE {
            return Ok(Resolved::Native(Arc::clone(&self.contract) as _));
        }
        let def = read_definition(sim, name)
            .map_err(ExecError::Ledger)?
            .ok_or_else(|| ExecError::NotDefined(name.to_owned()))?;
        let hash = def.package_hash;
        if runtime.is_loaded(&hash) {
            return Ok(Resolved::Wasm(hash));
        }
        let not_installed = || ExecError::NotInstalled {
            name: name.to_owned(),
            package: hex::encode(hash),
        };
        let wasm = self
            .packages
            .wasm(&hash)
            .map_err(|e| ExecError::Ledger(e.to_string()))?
            .ok_or_else(not_installed)?;
        Ok(Resolved::Wasm(runtime.load(&wasm)?))
    }
}

/// How many parsed policies validation keeps.
const POLICY_CACHE: usize = 1024;

/// The endorsement policies of the committed definitions, read from the world state as stage 2
/// sees it; parsed policies are cached by the version of the definition they came from.
#[derive(Debug, Default)]
pub struct LifecycleDefinitions {
    // Lookups by exact key only; iteration order never matters.
    cache: Mutex<BTreeMap<(String, Version), Arc<Policy>>>,
}

impl LifecycleDefinitions {
    /// Definitions read from the state.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ChaincodeDefinitions for LifecycleDefinitions {
    fn endorsement_policy(
        &self,
        state: &dyn StateReader,
        chaincode: &str,
    ) -> Result<Option<Arc<Policy>>> {
        let Some(value) = state.state(LIFECYCLE, &definition_key(chaincode))? else {
            return Ok(None);
        };
        let key = (chaincode.to_owned(), value.version);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(policy) = cache.get(&key) {
            return Ok(Some(Arc::clone(policy)));
        }
        // Only a definition that passed [`check_writes`] is ever committed.
        let policy = ChaincodeDefinition::decode(&value.value)
            .and_then(|d| d.policy())
            .map_err(|e| Error::Corrupt(format!("the definition of {chaincode}: {e}")))?;
        let policy = Arc::new(policy);
        if cache.len() >= POLICY_CACHE {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&policy));
        Ok(Some(policy))
    }
}

// ---------------------------------------------------------------------------------------------
// Validation of `_lifecycle` writes.

enum LifecycleKey<'a> {
    Approval {
        name: &'a str,
        sequence: u64,
        msp_id: &'a str,
    },
    Definition {
        name: &'a str,
    },
}

fn parse_key(key: &str) -> Option<LifecycleKey<'_>> {
    if let Some(name) = key.strip_prefix("definition/") {
        return Some(LifecycleKey::Definition { name });
    }
    let rest = key.strip_prefix("approval/")?;
    let mut parts = rest.splitn(3, '/');
    let name = parts.next()?;
    let sequence = parts.next()?.parse().ok()?;
    let msp_id = parts.next()?;
    Some(LifecycleKey::Approval {
        name,
        sequence,
        msp_id,
    })
}

fn current_sequence(state: &dyn StateReader, name: &str) -> Result<Option<u64>> {
    Ok(match state.state(LIFECYCLE, &definition_key(name))? {
        None => Some(0),
        Some(v) => ChaincodeDefinition::decode(&v.value)
            .ok()
            .map(|d| d.sequence),
    })
}

fn is_admin_of(creator: Option<&Arc<Identity>>, msp_id: &str) -> bool {
    creator.is_some_and(|c| c.msp_id() == msp_id && c.is_admin())
}

/// Judges a transaction's writes to `_lifecycle` (see the module doc). The outer `Result` is a
/// storage fault, the inner one the transaction's failure code.
pub fn check_writes(
    state: &dyn StateReader,
    writes: &NsRwSet,
    tx: &CheckedTx,
    ctx: &ValidationContext,
) -> Result<std::result::Result<(), ValidationCode>> {
    use TxValidationCode as C;
    let fail = |c: C| Ok(Err(c.into()));
    if !writes.deltas.is_empty() {
        return fail(C::IllegalWriteset);
    }
    let orgs = &ctx.application_orgs;
    for w in &writes.writes {
        let Some(value) = &w.value else {
            return fail(C::IllegalWriteset);
        };
        match parse_key(&w.key) {
            None => return fail(C::IllegalWriteset),
            Some(LifecycleKey::Approval {
                name,
                sequence,
                msp_id,
            }) => {
                if !orgs.iter().any(|o| o == msp_id) || value.len() != 32 {
                    return fail(C::InvalidWriteset);
                }
                let endorsed_by_org = tx
                    .endorsers
                    .iter()
                    .any(|e| e.msp_id() == msp_id && e.role() == Role::Peer);
                if !is_admin_of(tx.creator.as_ref(), msp_id) || !endorsed_by_org {
                    return fail(C::EndorsementPolicyFailure);
                }
                if current_sequence(state, name)? != Some(sequence.saturating_sub(1)) {
                    return fail(C::InvalidWriteset);
                }
            }
            Some(LifecycleKey::Definition { name }) => {
                let Ok(def) = ChaincodeDefinition::decode(value) else {
                    return fail(C::InvalidWriteset);
                };
                if def.name != name
                    || current_sequence(state, name)? != Some(def.sequence.saturating_sub(1))
                {
                    return fail(C::InvalidWriteset);
                }
                let need = majority(orgs.len());
                let lifecycle_endorsement = SignaturePolicy::out_of(
                    need,
                    orgs.iter()
                        .map(|o| SignaturePolicy::signed_by(Principal::new(o, MspRole::Peer)))
                        .collect(),
                );
                let creator_ok = orgs.iter().any(|o| is_admin_of(tx.creator.as_ref(), o));
                if !creator_ok || !lifecycle_endorsement.evaluate(&tx.endorsers) {
                    return fail(C::EndorsementPolicyFailure);
                }
                let digest = def.digest();
                let mut approved = 0;
                for org in orgs {
                    if state
                        .state(LIFECYCLE, &approval_key(name, def.sequence, org))?
                        .is_some_and(|v| v.value == digest)
                    {
                        approved += 1;
                    }
                }
                if approved < need {
                    return fail(C::InvalidWriteset);
                }
            }
        }
    }
    Ok(Ok(()))
}
