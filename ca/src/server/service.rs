//! The gRPC service `mercato.CertificateAuthority`: decodes each request (see `convert`), runs
//! the CA's logic on a blocking thread, and turns its errors into gRPC statuses in exactly one
//! place ([`status`]). [`Logged`] wraps the generated server so that every refused call is
//! logged once, including those tonic refuses before a handler runs (an oversized message).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use mercato_proto::pb::mercato as pb;
use pb::certificate_authority_server::CertificateAuthority;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status};

use crate::error::{CaError, RegistryError};
use crate::server::convert::{self, Body};
use crate::server::core::{CaCore, Caller, EnrollRequest};

/// The service over a [`CaCore`].
#[derive(Debug, Clone)]
pub struct CaService {
    core: Arc<CaCore>,
    /// Enrollment is unauthenticated and each attempt costs a slow password hash: at most one
    /// attempt per core hashes at a time, the rest wait (within the request timeout), so a flood
    /// of guesses cannot take every blocking thread.
    hashing: Arc<tokio::sync::Semaphore>,
}

impl CaService {
    /// A service over `core`.
    pub fn new(core: Arc<CaCore>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        CaService {
            core,
            hashing: Arc::new(tokio::sync::Semaphore::new(cores)),
        }
    }

    async fn hashing_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        Arc::clone(&self.hashing)
            .acquire_owned()
            .await
            .map_err(|_| status(&CaError::Internal("the hashing gate is closed".into())))
    }
}

/// The gRPC status for a CA error. Internal errors are logged here with their detail and
/// answered without it.
pub fn status(e: &CaError) -> Status {
    let code = match e {
        CaError::InvalidRequest(_) | CaError::BadCsr(_) => Code::InvalidArgument,
        CaError::BadCredentials | CaError::Unauthenticated(_) => Code::Unauthenticated,
        CaError::Forbidden(_) => Code::PermissionDenied,
        CaError::Busy(_) => Code::ResourceExhausted,
        CaError::Registry(r) => match r {
            RegistryError::Duplicate(_) => Code::AlreadyExists,
            RegistryError::UnknownIdentity(_) | RegistryError::UnknownCertificate(_) => {
                Code::NotFound
            }
            RegistryError::EnrollmentLimit { .. }
            | RegistryError::IdentityRevoked(_)
            | RegistryError::AlreadyRevoked(_) => Code::FailedPrecondition,
            RegistryError::SerialInUse(_) => Code::Aborted,
            RegistryError::Corrupt { .. } | RegistryError::Backend(_) => Code::Internal,
        },
        CaError::Internal(_)
        | CaError::Home { .. }
        | CaError::Config(_)
        | CaError::Transport(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %e, "internal error answering a request");
        return Status::internal("internal error in the CA; the CA's log has the details");
    }
    Status::new(code, e.to_string())
}

/// Runs `f` on a blocking thread (password hashing and signing are CPU work).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CaError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| status(&e)),
        Err(e) => Err(status(&CaError::Internal(format!(
            "a request's task failed: {e}"
        )))),
    }
}

/// Decodes and authenticates a signed request for `method`; runs `then` with the caller.
async fn signed_call<T: Send + 'static>(
    core: &Arc<CaCore>,
    request: pb::SignedRequest,
    method: &'static str,
    then: impl FnOnce(&CaCore, &Caller, Body) -> Result<T, CaError> + Send + 'static,
) -> Result<T, Status> {
    let (envelope, body) = convert::signed(request, method).map_err(|e| status(&e))?;
    let core = Arc::clone(core);
    blocking(move || {
        let caller = core.authenticate(&envelope)?;
        let span = tracing::info_span!("request", method, caller = %caller.id);
        let _entered = span.enter();
        then(&core, &caller, body)
    })
    .await
}

/// The body `convert::signed` already matched to the method was another one: unreachable, and
/// answered as an internal error rather than a panic.
fn mismatched(body: &Body) -> CaError {
    CaError::Internal(format!("a {} body reached the wrong handler", body.name()))
}

#[tonic::async_trait]
impl CertificateAuthority for CaService {
    async fn get_ca_info(
        &self,
        _request: Request<pb::GetCaInfoRequest>,
    ) -> Result<Response<pb::GetCaInfoResponse>, Status> {
        Ok(Response::new(convert::ca_info(self.core.info())))
    }

    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let req = EnrollRequest::try_from(request.into_inner()).map_err(|e| status(&e))?;
        let core = Arc::clone(&self.core);
        let permit = self.hashing_permit().await?;
        let out = blocking(move || {
            let out = core.enroll(req);
            drop(permit);
            out
        })
        .await?;
        Ok(Response::new(convert::enrollment(out)))
    }

    async fn reenroll(
        &self,
        request: Request<pb::SignedRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let out = signed_call(
            &self.core,
            request.into_inner(),
            "reenroll",
            |core, caller, body| match body {
                Body::Reenroll(req) => core.reenroll(caller, req),
                other => Err(mismatched(&other)),
            },
        )
        .await?;
        Ok(Response::new(convert::enrollment(out)))
    }

    async fn register(
        &self,
        request: Request<pb::SignedRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let _permit = self.hashing_permit().await?;
        let secret = signed_call(
            &self.core,
            request.into_inner(),
            "register",
            |core, caller, body| match body {
                Body::Register(req) => core.register(caller, req),
                other => Err(mismatched(&other)),
            },
        )
        .await?;
        Ok(Response::new(pb::RegisterResponse { secret }))
    }

    async fn revoke(
        &self,
        request: Request<pb::SignedRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let out = signed_call(
            &self.core,
            request.into_inner(),
            "revoke",
            |core, caller, body| match body {
                Body::Revoke(req) => core.revoke(caller, req),
                other => Err(mismatched(&other)),
            },
        )
        .await?;
        Ok(Response::new(convert::revoke_outcome(out)))
    }

    async fn gen_crl(
        &self,
        request: Request<pb::SignedRequest>,
    ) -> Result<Response<pb::GenCrlResponse>, Status> {
        let out = signed_call(
            &self.core,
            request.into_inner(),
            "gen_crl",
            |core, caller, body| match body {
                Body::GenCrl => core.gen_crl(caller),
                other => Err(mismatched(&other)),
            },
        )
        .await?;
        Ok(Response::new(convert::crls(out)))
    }

    async fn list_identities(
        &self,
        request: Request<pb::SignedRequest>,
    ) -> Result<Response<pb::ListIdentitiesResponse>, Status> {
        let out = signed_call(
            &self.core,
            request.into_inner(),
            "list_identities",
            |core, caller, body| match body {
                Body::List(req) => core.list(caller, req),
                other => Err(mismatched(&other)),
            },
        )
        .await?;
        Ok(Response::new(convert::listing(out)))
    }
}

/// Wraps a gRPC service and logs every call it answers with an error status: the method, the
/// peer address, the code and the message.
#[derive(Debug, Clone)]
pub struct Logged<S> {
    inner: S,
}

impl<S> Logged<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Logged { inner }
    }
}

impl<S: NamedService> NamedService for Logged<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<tonic::body::Body>> for Logged<S>
where
    S: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let peer = peer_addr(&request);
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // An error answer is "trailers-only": its status is in the headers. A success has
            // its status in the trailers, which this does not wait for.
            if let Some(status) = Status::from_header_map(response.headers())
                && status.code() != Code::Ok
            {
                tracing::warn!(
                    %method,
                    peer = %peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
                    code = ?status.code(),
                    message = %status.message(),
                    "request refused"
                );
            }
            Ok(response)
        })
    }
}

fn peer_addr<B>(request: &http::Request<B>) -> Option<std::net::SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let ext = request.extensions();
    ext.get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.get_ref().remote_addr())
        .or_else(|| ext.get::<TcpConnectInfo>().and_then(|i| i.remote_addr()))
}
