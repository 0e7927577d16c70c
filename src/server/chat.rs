//! `POST /v1/chat/completions`: OpenAI's chat request (text and
//! `input_audio` parts), answered by [`Assistant::respond`], whole or as SSE chunks.

use super::adapters::AdapterChoice;
use super::audio::decode_base64_audio;
use super::error::ApiError;
use super::{parse_json, unix_now, AppState};
use crate::assistant::{Answer, Assistant, Mode, Question, Request};
use crate::generation::{ChatMessage, SamplingOptions};
use crate::model::adapter_scope::ActiveAdapter;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The longest answer a request may ask for, and the default when it asks none.
const MAX_TOKENS_LIMIT: usize = 4096;
const DEFAULT_MAX_TOKENS: usize = 256;

/// `model` is not read: the server has one model (listed by `GET /v1/models`), whatever a client names.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    messages: Vec<MessageIn>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    stop: Option<Stop>,
    n: Option<usize>,
    /// kioku: how audio reaches the LLM (default cascade).
    mode: Option<Mode>,
    /// kioku: the adapters for this request, at these scales.
    adapters: Option<Vec<AdapterChoice>>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct MessageIn {
    role: String,
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text { text: String },
    InputAudio { input_audio: InputAudio },
}

#[derive(Debug, Deserialize)]
struct InputAudio {
    data: String,
    format: Option<String>,
}

/// One message after decoding: its text parts, and its audio as 16 kHz samples.
struct Turn {
    role: String,
    text: Option<String>,
    audio: Option<Vec<f32>>,
}

/// A validated request, owning everything the model thread needs.
struct ChatJob {
    history: Vec<Turn>,
    last: Turn,
    mode: Mode,
    sampling: SamplingOptions,
    adapters: Vec<ActiveAdapter>,
}

impl ChatJob {
    fn from_request(request: ChatRequest, state: &AppState) -> Result<(Self, bool, bool), ApiError> {
        if request.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("n", "kioku returns one choice per request; leave `n` out or set it to 1"));
        }
        let max_tokens = request.max_completion_tokens.or(request.max_tokens).unwrap_or(DEFAULT_MAX_TOKENS);
        if max_tokens == 0 || max_tokens > MAX_TOKENS_LIMIT {
            return Err(ApiError::invalid(
                "max_tokens",
                format!("`max_tokens` must be 1 to {MAX_TOKENS_LIMIT}, got {max_tokens}"),
            ));
        }
        let temperature = request.temperature.unwrap_or(0.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid("temperature", format!("`temperature` must be 0 to 2, got {temperature}")));
        }
        let top_p = request.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid("top_p", format!("`top_p` must be in (0, 1], got {top_p}")));
        }
        let stop = match request.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        if stop.len() > 4 || stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid("stop", "`stop` takes up to 4 non-empty strings"));
        }
        let sampling = SamplingOptions {
            temperature,
            top_p,
            max_tokens,
            seed: request.seed.unwrap_or(SamplingOptions::default().seed),
            stop,
        };
        let mode = request.mode.unwrap_or(Mode::Cascade);
        if mode == Mode::E2e && !state.assistant.has_projector() {
            return Err(ApiError::invalid(
                "mode",
                "this model has no projector, so it cannot answer end-to-end; use mode cascade",
            ));
        }
        let adapters = state.adapters.resolve(request.adapters.as_deref())?;
        let mut turns = request.messages.into_iter().map(|m| decode_turn(m, state)).collect::<Result<Vec<_>, _>>()?;
        let Some(last) = turns.pop() else { return Err(ApiError::invalid("messages", "`messages` is empty")) };
        if last.role != "user" {
            return Err(ApiError::invalid("messages", "the last message must be the user's"));
        }
        if last.text.is_none() && last.audio.is_none() {
            return Err(ApiError::invalid("messages", "the last message has no text and no audio"));
        }
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        Ok((Self { history: turns, last, mode, sampling, adapters }, request.stream, include_usage))
    }

    /// Runs on a model thread: transcribes spoken turns of the history, then answers.
    fn run(&self, assistant: &Assistant, cancel: &AtomicBool, on_text: &mut dyn FnMut(&str)) -> anyhow::Result<Answer> {
        let history = self
            .history
            .iter()
            .map(|turn| {
                let spoken = match &turn.audio {
                    Some(samples) => Some(assistant.transcribe_segments(samples, &self.adapters, None, &mut |_| {})?.0),
                    None => None,
                };
                let content =
                    [spoken.as_deref(), turn.text.as_deref()].into_iter().flatten().collect::<Vec<_>>().join("\n\n");
                Ok(ChatMessage::new(&turn.role, content))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let question = match (&self.last.audio, &self.last.text) {
            (Some(samples), instruction) => {
                Question::Audio { samples, mode: self.mode, instruction: instruction.as_deref() }
            }
            (None, Some(text)) => Question::Text(text),
            (None, None) => unreachable!("checked in from_request"),
        };
        let request = Request {
            question,
            history: &history,
            sampling: self.sampling.clone(),
            adapters: &self.adapters,
            cancel: Some(cancel),
            on_turn_end: None,
        };
        Ok(assistant.respond(&request, on_text)?)
    }
}

fn decode_turn(message: MessageIn, state: &AppState) -> Result<Turn, ApiError> {
    let role = match message.role.as_str() {
        "system" | "developer" => "system",
        "user" => "user",
        "assistant" => "assistant",
        other => {
            return Err(ApiError::invalid(
                "messages",
                format!("unknown role `{other}`; expected system, user or assistant"),
            ))
        }
    };
    let (mut texts, mut audio) = (Vec::new(), None::<Vec<f32>>);
    match message.content {
        None => {}
        Some(Content::Text(text)) => texts.push(text),
        Some(Content::Parts(parts)) => {
            for part in parts {
                match part {
                    Part::Text { text } => texts.push(text),
                    Part::InputAudio { input_audio } => {
                        if role != "user" {
                            return Err(ApiError::invalid("messages", "only user messages may carry audio"));
                        }
                        if let Some(format) = input_audio.format.as_deref().filter(|f| !matches!(*f, "wav" | "mp3")) {
                            return Err(ApiError::invalid(
                                "messages",
                                format!("input_audio format `{format}` is not supported; send wav or mp3"),
                            ));
                        }
                        let samples = decode_base64_audio(&input_audio.data, state.max_audio_s)?;
                        audio.get_or_insert_with(Vec::new).extend(samples);
                    }
                }
            }
        }
    }
    let text = texts.join("\n\n");
    Ok(Turn { role: role.to_string(), text: (!text.is_empty()).then_some(text), audio })
}

/// What the model thread reports while it answers.
enum Progress {
    Text(String),
    Done(Answer),
    Failed(ApiError),
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    match handle(state, headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let request: ChatRequest = parse_json(&headers, body)?;
    let (job, stream, include_usage) = ChatJob::from_request(request, &state)?;
    let slot = state.slots.acquire().await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Progress>(256);
    let assistant = state.assistant.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let cancel = AtomicBool::new(false);
        let mut on_text = |text: &str| {
            // A client that hung up stops the generation.
            if tx.blocking_send(Progress::Text(text.to_string())).is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
        };
        let last = match ApiError::guard(|| job.run(&assistant, &cancel, &mut on_text)) {
            Ok(answer) => Progress::Done(answer),
            Err(error) => Progress::Failed(error),
        };
        let _ = tx.blocking_send(last);
    });
    let id = format!("chatcmpl-{}", super::request_id());
    let created = unix_now();
    let model = state.model_id.clone();
    if !stream {
        loop {
            match rx.recv().await {
                Some(Progress::Text(_)) => continue,
                Some(Progress::Done(answer)) => {
                    return Ok(Json(completion(&id, created, &model, &answer)).into_response())
                }
                Some(Progress::Failed(error)) => return Err(error),
                None => return Err(ApiError::internal("the model thread ended without an answer")),
            }
        }
    }
    // The status line waits for the first event, so that a request that fails
    // before answering (no speech in the audio, say) still gets its 4xx.
    let first = match rx.recv().await {
        Some(Progress::Failed(error)) => return Err(error),
        Some(first) => first,
        None => return Err(ApiError::internal("the model thread ended without an answer")),
    };
    let opening = chunk(&id, created, &model, json!({ "role": "assistant", "content": "" }), None);
    let events =
        stream::iter([first]).chain(tokio_stream::wrappers::ReceiverStream::new(rx)).flat_map(move |progress| {
            let payloads = match progress {
                Progress::Text(text) => vec![chunk(&id, created, &model, json!({ "content": text }), None)],
                Progress::Done(answer) => {
                    let mut closing = chunk(&id, created, &model, json!({}), Some(finish_reason(&answer)));
                    closing["transcript"] = json!(answer.transcript);
                    let mut payloads = vec![closing];
                    if include_usage {
                        let mut usage = chunk(&id, created, &model, json!({}), None);
                        usage["choices"] = json!([]);
                        usage["usage"] = usage_of(&answer);
                        payloads.push(usage);
                    }
                    payloads
                }
                Progress::Failed(error) => vec![error.body()],
            };
            stream::iter(payloads.into_iter().map(|p| Ok::<_, Infallible>(Event::default().data(p.to_string()))))
        });
    let all = stream::iter([Ok(Event::default().data(opening.to_string()))])
        .chain(events)
        .chain(stream::iter([Ok(Event::default().data("[DONE]"))]));
    Ok(Sse::new(all).into_response())
}

fn finish_reason(answer: &Answer) -> &'static str {
    match answer.finish_reason {
        crate::assistant::FinishReason::Length => "length",
        _ => "stop",
    }
}

fn usage_of(answer: &Answer) -> Value {
    json!({
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.answer_tokens,
        "total_tokens": answer.prompt_tokens + answer.answer_tokens,
    })
}

fn completion(id: &str, created: u64, model: &str, answer: &Answer) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": answer.answer },
            "finish_reason": finish_reason(answer),
        }],
        "usage": usage_of(answer),
        "transcript": answer.transcript,
        "timings_ms": answer.timings_ms,
    })
}

fn chunk(id: &str, created: u64, model: &str, delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
    })
}
