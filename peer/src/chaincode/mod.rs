//! Chaincode on the peer: the wasm sandbox ([`runtime`]), simulation against the world state
//! ([`simulator`]), and the [`Executor`] that ties them together for one transaction, including
//! calls from one chaincode to another.

pub mod runtime;
pub mod simulator;

use std::sync::{Arc, Mutex};

use mercato_chaincode::abi::{HostRequest, HostResponse, Invocation, InvokeResult};

pub use runtime::{ChaincodeError, ChaincodeRuntime, CodeHash, HostCalls, RuntimeLimits};
pub use simulator::Simulation;

use crate::ledger::LedgerStore;
use crate::rwset::{TxRwSet, valid_namespace};

/// The deepest chain of chaincode-to-chaincode calls.
pub const MAX_CALL_DEPTH: u32 = 8;

/// Why a chaincode could not be run (its own failures are responses, not these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// No definition of this chaincode is committed on the channel.
    #[error("chaincode {0} is not defined on this channel")]
    NotDefined(String),
    /// The definition names a package this peer has not installed.
    #[error(
        "chaincode {name} is defined with package {package}, which is not installed on this peer"
    )]
    NotInstalled { name: String, package: String },
    /// The sandbox failed.
    #[error(transparent)]
    Runtime(#[from] ChaincodeError),
    /// Reading the ledger failed.
    #[error("ledger: {0}")]
    Ledger(String),
}

/// A chaincode built into the peer (the lifecycle's `_lifecycle`), run against the simulation
/// directly rather than in the sandbox.
pub trait NativeChaincode: Send + Sync + std::fmt::Debug {
    /// Runs one call.
    fn invoke(&self, sim: &mut Simulation, invocation: &Invocation) -> InvokeResult;
}

/// What a chaincode name resolves to.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A module loaded into the runtime.
    Wasm(CodeHash),
    /// A system chaincode.
    Native(Arc<dyn NativeChaincode>),
}

/// Finds the code to run for a chaincode name: the lifecycle
/// ([`crate::lifecycle::LifecycleResolver`]) resolves committed definitions to installed packages,
/// recording the read of the definition in the simulation; tests may map names directly.
pub trait ChaincodeResolver: Send + Sync {
    /// The code of `name`'s committed definition, loaded into `runtime`.
    fn resolve(
        &self,
        sim: &mut Simulation,
        runtime: &ChaincodeRuntime,
        name: &str,
    ) -> Result<Resolved, ExecError>;
}

/// What a simulation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulated {
    /// The chaincode's response.
    pub response: InvokeResult,
    /// The read/write set.
    pub rwset: TxRwSet,
    /// The event set, as (chaincode, name, payload).
    pub event: Option<(String, String, Vec<u8>)>,
}

/// Runs chaincode for transactions.
pub struct Executor {
    runtime: Arc<ChaincodeRuntime>,
    resolver: Arc<dyn ChaincodeResolver>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// An executor over a runtime and a resolver.
    pub fn new(runtime: Arc<ChaincodeRuntime>, resolver: Arc<dyn ChaincodeResolver>) -> Arc<Self> {
        Arc::new(Executor { runtime, resolver })
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<ChaincodeRuntime> {
        &self.runtime
    }

    /// Simulates `invocation` of `chaincode` against the committed state of `store`.
    pub fn simulate(
        self: &Arc<Self>,
        store: Arc<dyn LedgerStore>,
        chaincode: &str,
        invocation: &Invocation,
    ) -> Result<Simulated, ExecError> {
        let sim = Arc::new(Mutex::new(Simulation::new(Arc::clone(&store))));
        let response = self.run(&store, &sim, chaincode, invocation, 0)?;
        let sim = sim.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Simulated {
            response,
            rwset: sim.rwset(),
            event: sim.event().cloned(),
        })
    }

    fn run(
        self: &Arc<Self>,
        store: &Arc<dyn LedgerStore>,
        sim: &Arc<Mutex<Simulation>>,
        chaincode: &str,
        invocation: &Invocation,
        depth: u32,
    ) -> Result<InvokeResult, ExecError> {
        if !valid_namespace(chaincode) {
            return Err(ExecError::NotDefined(chaincode.to_owned()));
        }
        // The simulation is locked only while resolving (the resolver records its read of the
        // definition) or running a native chaincode; a module's host calls lock it per call.
        let code = {
            let mut guard = sim.lock().unwrap_or_else(|p| p.into_inner());
            match self
                .resolver
                .resolve(&mut guard, &self.runtime, chaincode)?
            {
                Resolved::Native(native) => return Ok(native.invoke(&mut guard, invocation)),
                Resolved::Wasm(code) => code,
            }
        };
        let host = SimHost {
            executor: Arc::clone(self),
            store: Arc::clone(store),
            sim: Arc::clone(sim),
            namespace: chaincode.to_owned(),
            invocation: invocation.clone(),
            depth,
        };
        Ok(self.runtime.invoke(&code, invocation, Box::new(host))?)
    }
}

/// Serves one running chaincode's requests from the transaction's simulation, in its namespace.
struct SimHost {
    executor: Arc<Executor>,
    store: Arc<dyn LedgerStore>,
    sim: Arc<Mutex<Simulation>>,
    namespace: String,
    invocation: Invocation,
    depth: u32,
}

impl HostCalls for SimHost {
    fn call(&mut self, request: HostRequest) -> HostResponse {
        let ns = self.namespace.as_str();
        let done = |r: Result<(), String>| match r {
            Ok(()) => HostResponse::Done,
            Err(e) => HostResponse::Error(e),
        };
        if let HostRequest::Invoke { chaincode, args } = request {
            return self.invoke(&chaincode, args);
        }
        let mut sim = self.sim.lock().unwrap_or_else(|p| p.into_inner());
        match request {
            HostRequest::Get { key } => match sim.get(ns, &key) {
                Ok(v) => HostResponse::Value(v),
                Err(e) => HostResponse::Error(e),
            },
            HostRequest::Put { key, value } => done(sim.put(ns, &key, Some(value))),
            HostRequest::Delete { key } => done(sim.put(ns, &key, None)),
            HostRequest::Range {
                start,
                end,
                limit,
                bookmark,
            } => sim
                .range(ns, &start, &end, limit, &bookmark)
                .unwrap_or_else(HostResponse::Error),
            HostRequest::Add {
                key,
                amount,
                lower_bound,
            } => done(sim.add(ns, &key, amount, lower_bound)),
            HostRequest::SetEvent { name, payload } => done(sim.set_event(ns, &name, payload)),
            HostRequest::Log { message } => {
                tracing::info!(chaincode = ns, txid = %self.invocation.txid, "{}", message.chars().take(4096).collect::<String>());
                HostResponse::Done
            }
            HostRequest::Invoke { .. } => HostResponse::Error("unreachable".into()),
        }
    }
}

impl SimHost {
    fn invoke(&mut self, chaincode: &str, args: Vec<Vec<u8>>) -> HostResponse {
        if chaincode.starts_with('_') {
            return HostResponse::Error(format!(
                "system chaincode {chaincode} cannot be called from chaincode"
            ));
        }
        if self.depth + 1 >= MAX_CALL_DEPTH {
            return HostResponse::Error(format!(
                "chaincode calls nested deeper than {MAX_CALL_DEPTH}"
            ));
        }
        let invocation = Invocation {
            args,
            ..self.invocation.clone()
        };
        match self.executor.run(
            &self.store,
            &self.sim,
            chaincode,
            &invocation,
            self.depth + 1,
        ) {
            Ok(result) => HostResponse::Result(result),
            Err(e) => HostResponse::Error(e.to_string()),
        }
    }
}

/// Resolves chaincode names to modules given directly (tests, benchmarks, tools).
#[derive(Default)]
pub struct StaticResolver {
    /// Name → (code hash, module): hashed once here, not on every call.
    modules: std::collections::BTreeMap<String, (CodeHash, Vec<u8>)>,
}

impl StaticResolver {
    /// A resolver with no chaincode.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `name` to a module.
    pub fn with(mut self, name: &str, wasm: Vec<u8>) -> Self {
        let hash = mercato_proto::hash::sha256(&wasm);
        self.modules.insert(name.to_owned(), (hash, wasm));
        self
    }
}

impl ChaincodeResolver for StaticResolver {
    fn resolve(
        &self,
        _sim: &mut Simulation,
        runtime: &ChaincodeRuntime,
        name: &str,
    ) -> Result<Resolved, ExecError> {
        let (hash, wasm) = self
            .modules
            .get(name)
            .ok_or_else(|| ExecError::NotDefined(name.to_owned()))?;
        if runtime.is_loaded(hash) {
            return Ok(Resolved::Wasm(*hash));
        }
        Ok(Resolved::Wasm(runtime.load(wasm)?))
    }
}
