//! `kioku serve`: a thin HTTP layer in OpenAI's shapes over one shared
//! [`Assistant`]. Each route parses and checks its request, waits for a
//! model slot ([`slots`]), and runs the library call on a blocking thread;
//! everything per request (adapters and scales, the speech adapter, caches)
//! lives in that call, so concurrent requests cannot see each other's state.
//! Answering itself is [`Assistant::respond`], as for `kioku ask`
//! (docs/ARCHITECTURE.md, "Layers and what may depend on what").
//!
//! Built on axum (tokio's HTTP framework over hyper): multipart uploads,
//! server-sent events, body limits and graceful shutdown come with it, and
//! tokio's blocking pool keeps the CPU-bound model work off the I/O threads.

mod adapters;
mod audio;
mod chat;
mod error;
mod slots;
mod transcription;

pub use adapters::NamedAdapter;

use crate::assistant::Assistant;
use adapters::AdapterRegistry;
use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use error::ApiError;
use serde::de::DeserializeOwned;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Everything `kioku serve` is started with, past the loaded model.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub api_key: Option<String>,
    pub adapters: Vec<NamedAdapter>,
    /// Requests that run on the model at once.
    pub parallel: usize,
    /// Requests that may wait for a slot before the server answers 503.
    pub queue: usize,
    pub max_audio_s: f64,
    pub max_body_bytes: usize,
    pub allow_adapter_loading: bool,
}

pub struct AppState {
    assistant: Arc<Assistant>,
    /// The name `GET /v1/models` lists: the model file's stem.
    model_id: String,
    adapters: AdapterRegistry,
    slots: slots::Slots,
    max_audio_s: f64,
    allow_adapter_loading: bool,
    /// SHA-256 of the API key: comparing digests takes the same time whatever the key's length.
    api_key_digest: Option<[u8; 32]>,
}

impl AppState {
    /// Loads the configured adapters against `assistant` (blocking: reads files).
    pub fn new(assistant: Arc<Assistant>, model_path: &std::path::Path, config: &ServerConfig) -> Result<Self> {
        let adapters = AdapterRegistry::new();
        for named in &config.adapters {
            adapters.load(&assistant, named)?;
        }
        Ok(Self {
            model_id: model_path.file_stem().map_or_else(|| "kioku".to_string(), |s| s.to_string_lossy().into_owned()),
            assistant,
            adapters,
            slots: slots::Slots::new(config.parallel.max(1), config.queue),
            max_audio_s: config.max_audio_s,
            allow_adapter_loading: config.allow_adapter_loading,
            api_key_digest: config.api_key.as_deref().map(|k| Sha256::digest(k.as_bytes()).into()),
        })
    }
}

/// The routes, with the API key check and the body limit.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/adapters", get(list_adapters).post(load_adapter))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/audio/transcriptions", post(transcription::transcriptions))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this endpoint does not take that method")
        })
        .layer(middleware::from_fn_with_state(state.clone(), require_api_key))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Serves until SIGTERM or Ctrl-C, then finishes the requests in flight and returns.
pub fn serve(assistant: Assistant, model_path: PathBuf, config: ServerConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    let assistant = Arc::new(assistant);
    let state = Arc::new(AppState::new(assistant, &model_path, &config)?);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.addr))?;
        eprintln!("kioku serves {} on http://{}", state.model_id, listener.local_addr()?);
        axum::serve(listener, router(state, config.max_body_bytes))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("the server failed")?;
        eprintln!("kioku serve: stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    eprintln!("kioku serve: finishing the requests in flight");
}

async fn require_api_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.api_key_digest else { return next.run(request).await };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|key| <[u8; 32]>::from(Sha256::digest(key.trim().as_bytes())));
    match given {
        Some(given) if bool::from(given.ct_eq(expected)) => next.run(request).await,
        _ => ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong API key (send `Authorization: Bearer KEY`)")
            .into_response(),
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "requests_in_flight": state.slots.in_use() }))
}

async fn models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "object": "list",
        "data": [{ "id": state.model_id, "object": "model", "created": 0, "owned_by": "kioku" }],
    }))
}

async fn list_adapters(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({ "object": "list", "data": state.adapters.list() }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadAdapter {
    id: String,
    path: PathBuf,
    scale: Option<f64>,
}

async fn load_adapter(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if !state.allow_adapter_loading {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "loading adapters at run time is off; start kioku serve with --allow-adapter-loading",
        )
        .into_response();
    }
    let request: LoadAdapter = match parse_json(&headers, body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let named = NamedAdapter {
        id: request.id,
        spec: crate::model::peft::AdapterSpec { path: request.path, scale: request.scale.unwrap_or(1.0) },
    };
    let task_state = state.clone();
    let loaded =
        tokio::task::spawn_blocking(move || task_state.adapters.load(&task_state.assistant, &named).map(|_| named.id))
            .await;
    match loaded {
        Ok(Ok(id)) => (StatusCode::CREATED, Json(json!({ "id": id, "loaded": true }))).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::internal("loading the adapter failed (a bug); the server keeps running").into_response(),
    }
}

/// A JSON body: the content type is checked, and syntax or shape errors
/// come back as one 4xx with serde's message (which names the field).
pub(crate) fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send the request as application/json (got `{content_type}`)"),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}")))
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A unique id per response (process start time and a counter).
pub(crate) fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{:x}{:06x}", unix_now(), COUNTER.fetch_add(1, Ordering::Relaxed))
}
