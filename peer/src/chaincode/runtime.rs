//! The sandbox: chaincode modules run in wasmtime with no WASI (no clock, no randomness, no I/O),
//! a fuel budget per invocation, a memory cap, a stack limit and canonical NaNs. A compiled
//! module is cached per code hash (in memory, and on disk when a cache directory is given); each
//! invocation gets a fresh instance from a pre-instantiated template in a pooling allocator.
//!
//! Whatever a module does — trap, panic, loop, exhaust memory, return garbage — ends as a
//! [`ChaincodeError`] naming the cause; the peer keeps serving.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mercato_chaincode::abi::{self, HostRequest, HostResponse, Invocation, InvokeResult};
use wasmtime::{
    Caller, Config, Engine, Extern, InstanceAllocationStrategy, InstancePre, Linker, Memory,
    Module, PoolingAllocationConfig, ResourceLimiter, Store, Trap,
};

/// SHA-256 of a module's bytes.
pub type CodeHash = [u8; 32];

/// The sandbox's limits.
#[derive(Debug, Clone)]
pub struct RuntimeLimits {
    /// Fuel per invocation (about one unit per WebAssembly instruction).
    pub fuel: u64,
    /// The most linear memory a module may have.
    pub memory_bytes: usize,
    /// The deepest WebAssembly stack.
    pub stack_bytes: usize,
    /// The largest result a call may return.
    pub max_result_bytes: usize,
    /// The largest single request to the host.
    pub max_request_bytes: usize,
    /// The most host calls in one invocation.
    pub max_host_calls: u32,
    /// The largest module accepted.
    pub max_module_bytes: usize,
    /// How many instances may exist at once (the pool's size).
    pub max_instances: u32,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            fuel: 200_000_000,
            memory_bytes: 64 << 20,
            stack_bytes: 512 << 10,
            max_result_bytes: 4 << 20,
            max_request_bytes: 4 << 20,
            max_host_calls: 100_000,
            max_module_bytes: 16 << 20,
            max_instances: 64,
        }
    }
}

/// Why a chaincode call failed in the sandbox (a chaincode's own error is an [`InvokeResult`]
/// with a status of 400 or more instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChaincodeError {
    /// The module is not valid WebAssembly, or not a Mercato chaincode.
    #[error("invalid chaincode module: {0}")]
    InvalidModule(String),
    /// No module with this code hash has been loaded.
    #[error("chaincode code {0} is not loaded")]
    NotLoaded(String),
    /// The call used up its fuel.
    #[error("chaincode ran out of fuel (budget {0})")]
    OutOfFuel(u64),
    /// The module tried to grow its memory past the cap.
    #[error("chaincode exceeded its memory limit of {0} bytes")]
    OutOfMemory(usize),
    /// The call stack overflowed.
    #[error("chaincode exhausted its stack")]
    StackOverflow,
    /// The chaincode panicked.
    #[error("chaincode panicked: {0}")]
    Panicked(String),
    /// Another trap.
    #[error("chaincode trapped: {0}")]
    Trapped(String),
    /// The module broke the ABI (bad pointers, malformed messages, oversized results).
    #[error("chaincode broke the ABI: {0}")]
    Abi(String),
    /// No instance could be made now (the pool is full); try again.
    #[error("chaincode runtime busy: {0}")]
    Busy(String),
}

/// What the host does for a running chaincode: the simulator implements it.
pub trait HostCalls: Send {
    /// Performs one request.
    fn call(&mut self, request: HostRequest) -> HostResponse;
}

/// The data of one invocation's store.
struct HostState {
    host: Box<dyn HostCalls>,
    pending: Option<Vec<u8>>,
    calls: u32,
    limits: Arc<RuntimeLimits>,
    memory_denied: bool,
    panic_message: Option<String>,
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.limits.memory_bytes;
        if !ok {
            self.memory_denied = true;
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// How much of each linear memory stays resident between invocations.
const KEEP_RESIDENT_BYTES: usize = 256 << 10;

/// The chaincode runtime of a peer: one engine, one linker, the compiled modules.
pub struct ChaincodeRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    modules: Mutex<HashMap<CodeHash, Arc<InstancePre<HostState>>>>,
    /// Held while a module compiles: concurrent first calls of one chaincode wait for one
    /// compile instead of each compiling it (a burst of them once took seconds of CPU).
    loading: Mutex<()>,
    cache_dir: Option<PathBuf>,
    limits: Arc<RuntimeLimits>,
}

impl std::fmt::Debug for ChaincodeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaincodeRuntime")
            .field("limits", &self.limits)
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> ChaincodeError {
    ChaincodeError::InvalidModule(e.to_string())
}

impl ChaincodeRuntime {
    /// A runtime with these limits, caching compiled modules in `cache_dir` when given.
    pub fn new(limits: RuntimeLimits, cache_dir: Option<&Path>) -> Result<Self, ChaincodeError> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(limits.max_instances)
            .total_memories(limits.max_instances)
            .total_tables(limits.max_instances)
            .max_memories_per_module(1)
            .max_memory_size(limits.memory_bytes)
            // Resetting the low 256 KiB of a memory (where a module built by this workspace keeps
            // its 128 KiB stack, its data and its first heap) with memset instead of madvise
            // spares every invocation the page faults, the page-table zapping and the TLB
            // shootdowns: about half the cost of a warm call here (see `benches/chaincode.rs`).
            // Bounded: at most 256 KiB stays resident per pool slot.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 << 10);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .cranelift_nan_canonicalization(true)
            .max_wasm_stack(limits.stack_bytes)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(|e| ChaincodeError::InvalidModule(format!("engine: {e}")))?;
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap(abi::IMPORT_MODULE, abi::IMPORT_CALL, host_call)
            .and_then(|l| l.func_wrap(abi::IMPORT_MODULE, abi::IMPORT_TAKE, host_take))
            .map_err(err)?;
        if let Some(dir) = cache_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cache directory {}: {e}", dir.display())))?;
        }
        Ok(ChaincodeRuntime {
            engine,
            linker,
            modules: Mutex::new(HashMap::new()),
            loading: Mutex::new(()),
            cache_dir: cache_dir.map(Path::to_owned),
            limits: Arc::new(limits),
        })
    }

    /// The limits.
    pub fn limits(&self) -> &RuntimeLimits {
        &self.limits
    }

    /// Whether a module with this code hash is ready to run.
    pub fn is_loaded(&self, code: &CodeHash) -> bool {
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(code)
    }

    /// Validates and compiles a module (or takes it from the cache), checking that it imports
    /// nothing but the Mercato ABI and exports what the ABI needs. Returns its code hash.
    pub fn load(&self, wasm: &[u8]) -> Result<CodeHash, ChaincodeError> {
        if wasm.len() > self.limits.max_module_bytes {
            return Err(err(format!(
                "{} bytes, over the limit of {}",
                wasm.len(),
                self.limits.max_module_bytes
            )));
        }
        let code = mercato_proto::hash::sha256(wasm);
        if self.is_loaded(&code) {
            return Ok(code);
        }
        let _loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_loaded(&code) {
            return Ok(code);
        }
        let module = self.compile(&code, wasm)?;
        for import in module.imports() {
            if import.module() != abi::IMPORT_MODULE
                || ![abi::IMPORT_CALL, abi::IMPORT_TAKE].contains(&import.name())
            {
                return Err(err(format!(
                    "unknown import {}.{}",
                    import.module(),
                    import.name()
                )));
            }
        }
        for (name, want) in [
            (abi::EXPORT_ALLOC, "function"),
            (abi::EXPORT_INVOKE, "function"),
            (abi::EXPORT_VERSION, "function"),
            ("memory", "memory"),
        ] {
            if module.get_export(name).is_none() {
                return Err(err(format!("it does not export the {want} {name:?}")));
            }
        }
        let pre = self.linker.instantiate_pre(&module).map_err(err)?;
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(code, Arc::new(pre));
        Ok(code)
    }

    /// Compiles, or loads the compiled artifact from the disk cache.
    fn compile(&self, code: &CodeHash, wasm: &[u8]) -> Result<Module, ChaincodeError> {
        let cached = self
            .cache_dir
            .as_ref()
            .map(|d| d.join(format!("{}.cwasm", hex::encode(code))));
        if let Some(path) = &cached
            && path.exists()
        {
            // The artifact is read into memory rather than mapped: a mapped file that someone
            // truncates would crash the peer with SIGBUS.
            let bytes =
                std::fs::read(path).map_err(|e| err(format!("cache {}: {e}", path.display())))?;
            // SAFETY: the cache directory belongs to this peer and holds only artifacts it
            // compiled itself, named by the hash of their source; wasmtime checks that an
            // artifact matches this engine's version and configuration and refuses others.
            match unsafe { Module::deserialize(&self.engine, &bytes) } {
                Ok(m) => return Ok(m),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "recompiling a stale cached module")
                }
            }
        }
        let module = Module::new(&self.engine, wasm).map_err(|e| err(format!("{e:#}")))?;
        if let Some(path) = &cached {
            match module.serialize() {
                Ok(bytes) => {
                    let tmp = path.with_extension("tmp");
                    if std::fs::write(&tmp, bytes)
                        .and_then(|_| std::fs::rename(&tmp, path))
                        .is_err()
                    {
                        tracing::warn!(path = %path.display(), "could not cache a compiled module");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not serialize a compiled module"),
            }
        }
        Ok(module)
    }

    /// Runs one invocation of a loaded module with `host` serving its requests.
    pub fn invoke(
        &self,
        code: &CodeHash,
        invocation: &Invocation,
        host: Box<dyn HostCalls>,
    ) -> Result<InvokeResult, ChaincodeError> {
        let pre = self
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(code)
            .cloned()
            .ok_or_else(|| ChaincodeError::NotLoaded(hex::encode(code)))?;
        let mut store = Store::new(
            &self.engine,
            HostState {
                host,
                pending: None,
                calls: 0,
                limits: Arc::clone(&self.limits),
                memory_denied: false,
                panic_message: None,
            },
        );
        store.limiter(|s| s);
        store
            .set_fuel(self.limits.fuel)
            .map_err(|e| ChaincodeError::Trapped(e.to_string()))?;
        let outcome = run(&mut store, &pre, invocation, &self.limits);
        outcome.map_err(|e| self.classify(e, store.data()))
    }

    /// Names the cause of a failed call.
    fn classify(&self, e: wasmtime::Error, state: &HostState) -> ChaincodeError {
        if let Some(abi_error) = e.downcast_ref::<AbiViolation>() {
            return ChaincodeError::Abi(abi_error.0.clone());
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => ChaincodeError::OutOfFuel(self.limits.fuel),
            Some(Trap::StackOverflow) => ChaincodeError::StackOverflow,
            Some(_) if state.memory_denied => ChaincodeError::OutOfMemory(self.limits.memory_bytes),
            Some(Trap::UnreachableCodeReached) => match &state.panic_message {
                Some(m) => ChaincodeError::Panicked(m.clone()),
                None => {
                    ChaincodeError::Trapped("unreachable executed (the chaincode aborted)".into())
                }
            },
            Some(trap) => ChaincodeError::Trapped(trap.to_string()),
            None if e.to_string().contains("instance") || e.to_string().contains("pool") => {
                ChaincodeError::Busy(e.to_string())
            }
            None => ChaincodeError::Trapped(format!("{e:#}")),
        }
    }
}

/// A breach of the ABI by the guest, raised as a trap from a host function.
#[derive(Debug)]
struct AbiViolation(String);

impl std::fmt::Display for AbiViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AbiViolation {}

fn violation(msg: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(AbiViolation(msg.into()))
}

fn run(
    store: &mut Store<HostState>,
    pre: &InstancePre<HostState>,
    invocation: &Invocation,
    limits: &RuntimeLimits,
) -> wasmtime::Result<InvokeResult> {
    let instance = pre.instantiate(&mut *store)?;
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| violation("no exported memory"))?;
    let version = instance.get_typed_func::<(), i32>(&mut *store, abi::EXPORT_VERSION)?;
    let alloc = instance.get_typed_func::<i32, i32>(&mut *store, abi::EXPORT_ALLOC)?;
    let invoke = instance.get_typed_func::<(i32, i32), i64>(&mut *store, abi::EXPORT_INVOKE)?;
    let v = version.call(&mut *store, ())?;
    if v != abi::ABI_VERSION {
        return Err(violation(format!(
            "ABI version {v}, the peer speaks {}",
            abi::ABI_VERSION
        )));
    }
    let input = invocation.encode();
    let len = i32::try_from(input.len()).map_err(|_| violation("invocation too large"))?;
    let ptr = alloc.call(&mut *store, len)?;
    write_guest(&memory, &mut *store, ptr, &input)?;
    let packed = invoke.call(&mut *store, (ptr, len))?;
    let (out_ptr, out_len) = abi::unpack(packed);
    if out_len as usize > limits.max_result_bytes {
        return Err(violation(format!(
            "result of {out_len} bytes, over the limit of {}",
            limits.max_result_bytes
        )));
    }
    let bytes = read_guest(&memory, &*store, out_ptr as i32, out_len as i32)?;
    InvokeResult::decode(&bytes).map_err(|e| violation(e.to_string()))
}

/// Copies `len` bytes at `ptr` out of guest memory, refusing a range outside it.
fn read_guest(
    memory: &Memory,
    store: impl wasmtime::AsContext,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Vec<u8>> {
    let data = memory.data(&store);
    let start = usize::try_from(ptr as u32).map_err(|_| violation("bad pointer"))?;
    let end = start
        .checked_add(len as u32 as usize)
        .filter(|&e| e <= data.len())
        .ok_or_else(|| violation(format!("range {ptr}+{len} outside guest memory")))?;
    Ok(data[start..end].to_vec())
}

/// Copies bytes into guest memory at `ptr`, refusing a range outside it.
fn write_guest(
    memory: &Memory,
    mut store: impl wasmtime::AsContextMut,
    ptr: i32,
    bytes: &[u8],
) -> wasmtime::Result<()> {
    let data = memory.data_mut(&mut store);
    let start = ptr as u32 as usize;
    let end = start
        .checked_add(bytes.len())
        .filter(|&e| e <= data.len())
        .ok_or_else(|| {
            violation(format!(
                "buffer at {ptr} for {} bytes outside guest memory",
                bytes.len()
            ))
        })?;
    data[start..end].copy_from_slice(bytes);
    Ok(())
}

fn guest_memory(caller: &mut Caller<'_, HostState>) -> wasmtime::Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(violation("no exported memory")),
    }
}

/// `host_call(ptr, len) -> len`: decodes the guest's request, serves it and keeps the encoded
/// response for `host_take`. Each call costs fuel in proportion to the bytes it moves, so host
/// work is bounded by the same budget as the guest's own.
fn host_call(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<i32> {
    let limits = Arc::clone(&caller.data().limits);
    let state = caller.data_mut();
    state.calls += 1;
    if state.calls > limits.max_host_calls {
        return Err(violation(format!(
            "more than {} host calls",
            limits.max_host_calls
        )));
    }
    if len < 0 || len as usize > limits.max_request_bytes {
        return Err(violation(format!("request of {len} bytes")));
    }
    let memory = guest_memory(&mut caller)?;
    let bytes = read_guest(&memory, &caller, ptr, len)?;
    let request = HostRequest::decode(&bytes).map_err(|e| violation(e.to_string()))?;
    if let HostRequest::Log { message } = &request
        && let Some(panic) = message.strip_prefix("panic: ")
    {
        caller.data_mut().panic_message = Some(panic.chars().take(1000).collect());
    }
    let response = caller.data_mut().host.call(request).encode();
    let cost = 1_000 + (bytes.len() + response.len()) as u64;
    let fuel = caller.get_fuel()?;
    caller.set_fuel(fuel.saturating_sub(cost))?;
    if fuel < cost {
        return Err(wasmtime::Error::new(Trap::OutOfFuel));
    }
    let n = i32::try_from(response.len()).map_err(|_| violation("response too large"))?;
    caller.data_mut().pending = Some(response);
    Ok(n)
}

/// `host_take(ptr)`: copies the pending response into guest memory.
fn host_take(mut caller: Caller<'_, HostState>, ptr: i32) -> wasmtime::Result<()> {
    let response = caller
        .data_mut()
        .pending
        .take()
        .ok_or_else(|| violation("host_take without a pending response"))?;
    let memory = guest_memory(&mut caller)?;
    write_guest(&memory, &mut caller, ptr, &response)
}
