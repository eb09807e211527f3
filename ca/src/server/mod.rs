//! The certificate authority server: `mercato.CertificateAuthority` over TLS, serving from a CA
//! home (see [`crate::home`]).
//!
//! [`run`] is the whole server: it loads the home, opens the registry, binds, serves until
//! `shutdown` resolves, and returns once every connection is closed and the registry is
//! released. [`CaServer`] splits binding from serving, so that a caller can learn the address
//! of a server bound to port 0 before it serves.
//!
//! # Layout
//! - [`config`]: [`Config`], its commented file, environment overrides and validation.
//! - [`core`]: [`CaCore`], the CA's logic over plain requests (no sockets).
//! - [`auth`]: signed requests, replay protection and the `hf.*` rights.
//! - `convert`: the wire messages ⇄ the core's requests and answers.
//! - [`service`]: the tonic service, the one mapping of errors to gRPC statuses, and the layer
//!   that logs refused calls.

pub mod auth;
pub mod config;
mod convert;
pub mod core;
pub mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mercato_proto::pb::mercato::certificate_authority_server::CertificateAuthorityServer;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

pub use self::config::Config;
pub use self::core::{CaCore, Clock, SystemClock};

use crate::error::CaError;
use crate::home::CaHome;

/// Makes ring the process's rustls crypto provider. Only ring is compiled in, but naming it
/// explicitly keeps a second provider pulled in by some dependency from panicking rustls at
/// start-up. Idempotent.
pub fn install_crypto_provider() {
    // An error means a provider is already installed, which is what was wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A CA server bound to its address, not yet serving.
#[derive(Debug)]
pub struct CaServer {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    core: Arc<CaCore>,
    tls: ServerTlsConfig,
    config: Config,
}

impl CaServer {
    /// Loads the home at `home` with `config` (validated here), opens the registry, and binds.
    pub async fn bind(home: &Path, config: Config) -> Result<Self, CaError> {
        Self::bind_with_clock(home, config, Arc::new(SystemClock)).await
    }

    /// Like [`CaServer::bind`], with the clock the CA uses for timestamps and validity.
    pub async fn bind_with_clock(
        home: &Path,
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CaError> {
        install_crypto_provider();
        config.validate()?;
        if config.security.pbkdf2_iterations < 100_000 {
            tracing::warn!(
                iterations = config.security.pbkdf2_iterations,
                "security.pbkdf2_iterations is low: fine for tests, weak in production"
            );
        }
        let home = CaHome::new(home);
        let cfg = config.clone();
        let now = clock.now();
        // Loading keys, opening sled and hashing the decoy secret are blocking work.
        let (core, server_tls) = tokio::task::spawn_blocking(move || -> Result<_, CaError> {
            let material = home.load_material()?;
            let server_tls = home.server_tls(&cfg, &material.tls_authority, now)?;
            let registry = crate::home::open_registry(&home)?;
            let core = CaCore::new(cfg, material, registry, clock)?;
            Ok((core, server_tls))
        })
        .await
        .map_err(|e| CaError::Internal(format!("loading the CA home: {e}")))??;
        let addr = config.listen_addr()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CaError::Transport(format!("cannot listen on {addr}: {e}")))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| CaError::Transport(format!("the listener has no address: {e}")))?;
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(server_tls.0, server_tls.1))
            .timeout(Duration::from_secs(
                config.server.tls_handshake_timeout_secs,
            ));
        Ok(CaServer {
            listener,
            local_addr,
            core: Arc::new(core),
            tls,
            config,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The CA's logic (for tools and tests that inspect the registry).
    pub fn core(&self) -> &Arc<CaCore> {
        &self.core
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets the calls in flight finish,
    /// and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), CaError> {
        let CaServer {
            listener,
            local_addr,
            core,
            tls,
            config,
        } = self;
        let service = CertificateAuthorityServer::new(service::CaService::new(core))
            .max_decoding_message_size(config.server.max_request_bytes);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tracing::info!(
            addr = %local_addr,
            msp_id = %config.ca.msp_id,
            hosts = ?config.server.hosts,
            "certificate authority serving"
        );
        Server::builder()
            .tls_config(tls)
            .map_err(|e| CaError::Transport(format!("TLS set-up: {e}")))?
            .timeout(Duration::from_secs(config.server.request_timeout_secs))
            .concurrency_limit_per_connection(config.server.max_concurrent_requests_per_connection)
            .http2_keepalive_interval(Some(Duration::from_secs(60)))
            .add_service(service::Logged::new(service))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| CaError::Transport(e.to_string()))?;
        tracing::info!(addr = %local_addr, "certificate authority stopped");
        Ok(())
    }
}

/// Serves the CA home at `home` with `config` until `shutdown` resolves.
pub async fn run(
    home: &Path,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CaError> {
    CaServer::bind(home, config).await?.serve(shutdown).await
}
