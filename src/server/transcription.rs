//! `POST /v1/audio/transcriptions`: a multipart upload (WAV or MP3) transcribed by the
//! model's Whisper, as json, text, verbose_json, srt or vtt, or streamed as
//! SSE events while each 30 s window is decoded.

use super::adapters::AdapterChoice;
use super::audio::decode_audio;
use super::error::ApiError;
use super::AppState;
use crate::assistant::Segment;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Text,
    VerboseJson,
    Srt,
    Vtt,
}

impl Format {
    fn parse(name: &str) -> Result<Self, ApiError> {
        Ok(match name {
            "json" => Self::Json,
            "text" => Self::Text,
            "verbose_json" => Self::VerboseJson,
            "srt" => Self::Srt,
            "vtt" => Self::Vtt,
            other => {
                return Err(ApiError::invalid(
                    "response_format",
                    format!("unknown response_format `{other}`; expected json, text, verbose_json, srt or vtt"),
                ))
            }
        })
    }
}

/// The form fields kioku reads; others (such as `timestamp_granularities[]`) are ignored.
struct Form {
    file: Option<Vec<u8>>,
    format: Format,
    stream: bool,
    adapters: Option<Vec<AdapterChoice>>,
    prompt: Option<String>,
}

async fn read_form(mut multipart: Multipart) -> Result<Form, ApiError> {
    let mut form = Form { file: None, format: Format::Json, stream: false, adapters: None, prompt: None };
    let field_error = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(e.status(), format!("cannot read the form: {}", e.body_text()))
    };
    while let Some(field) = multipart.next_field().await.map_err(field_error)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            form.file = Some(field.bytes().await.map_err(field_error)?.to_vec());
            continue;
        }
        let value = field.text().await.map_err(field_error)?;
        match name.as_str() {
            "response_format" => form.format = Format::parse(&value)?,
            "stream" => {
                form.stream =
                    parse_bool(&value).ok_or_else(|| ApiError::invalid("stream", "`stream` must be true or false"))?
            }
            "language" if !matches!(value.to_ascii_lowercase().as_str(), "" | "en" | "english") => {
                return Err(ApiError::invalid(
                    "language",
                    format!("this model transcribes English only; got language `{value}`"),
                ));
            }
            "prompt" => form.prompt = Some(value),
            "temperature" => {
                let t: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| ApiError::invalid("temperature", "`temperature` must be a number"))?;
                if t != 0.0 {
                    return Err(ApiError::invalid(
                        "temperature",
                        "kioku transcribes greedily; `temperature` must be 0",
                    ));
                }
            }
            "adapters" => {
                form.adapters = Some(serde_json::from_str(&value).map_err(|e| {
                    ApiError::invalid(
                        "adapters",
                        format!("`adapters` must be a JSON list of {{\"id\", \"scale\"}}: {e}"),
                    )
                })?)
            }
            _ => {}
        }
    }
    Ok(form)
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "true" | "True" | "1" => Some(true),
        "false" | "False" | "0" => Some(false),
        _ => None,
    }
}

pub async fn transcriptions(
    State(state): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    match handle(state, multipart).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

enum Progress {
    Segment(Segment),
    Done(String),
    Failed(ApiError),
}

async fn handle(state: Arc<AppState>, multipart: Result<Multipart, MultipartRejection>) -> Result<Response, ApiError> {
    let multipart = multipart.map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send the audio as multipart/form-data: {}", e.body_text()),
        )
    })?;
    let form = read_form(multipart).await?;
    let file = form.file.ok_or_else(|| ApiError::invalid("file", "the form has no `file` field"))?;
    let samples = decode_audio(&file, "file", state.max_audio_s)?;
    let duration = samples.len() as f64 / 16_000.0;
    let adapters = state.adapters.resolve(form.adapters.as_deref())?;
    let prompt = form.prompt;
    let slot = state.slots.acquire().await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Progress>(64);
    let assistant = state.assistant.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let transcribed = ApiError::guard(|| {
            Ok(assistant.transcribe_segments(&samples, &adapters, prompt.as_deref(), &mut |segment| {
                let _ = tx.blocking_send(Progress::Segment(segment.clone()));
            })?)
        });
        let last = match transcribed {
            Ok((text, _)) => Progress::Done(text),
            Err(error) => Progress::Failed(error),
        };
        let _ = tx.blocking_send(last);
    });
    if form.stream {
        let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(|progress| {
            let payload = match progress {
                Progress::Segment(segment) => {
                    json!({ "type": "transcript.text.delta", "delta": segment_delta(&segment) })
                }
                Progress::Done(text) => json!({ "type": "transcript.text.done", "text": text }),
                Progress::Failed(error) => error.body(),
            };
            Ok::<_, Infallible>(Event::default().data(payload.to_string()))
        });
        return Ok(Sse::new(events.chain(stream::iter([Ok(Event::default().data("[DONE]"))]))).into_response());
    }
    let mut segments = Vec::new();
    let text = loop {
        match rx.recv().await {
            Some(Progress::Segment(segment)) => segments.push(segment),
            Some(Progress::Done(text)) => break text,
            Some(Progress::Failed(error)) => return Err(error),
            None => return Err(ApiError::internal("the model thread ended without a transcript")),
        }
    };
    let spoken: Vec<&Segment> = segments.iter().filter(|s| !s.text.is_empty()).collect();
    Ok(match form.format {
        Format::Json => Json(json!({ "text": text })).into_response(),
        Format::Text => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{text}\n")).into_response(),
        Format::VerboseJson => Json(json!({
            "task": "transcribe",
            "language": "english",
            "duration": duration,
            "text": text,
            "segments": spoken.iter().enumerate().map(|(id, s)| json!({
                "id": id,
                "seek": (s.start_s * 100.0).round() as u64,
                "start": s.start_s,
                "end": s.end_s,
                "text": s.text,
                "tokens": s.tokens,
                "temperature": 0.0,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Format::Srt => {
            ([(header::CONTENT_TYPE, "application/x-subrip; charset=utf-8")], subtitles(&spoken, false)).into_response()
        }
        Format::Vtt => ([(header::CONTENT_TYPE, "text/vtt; charset=utf-8")], subtitles(&spoken, true)).into_response(),
    })
}

/// A segment's text as a delta of the whole transcript (segments join with a space).
fn segment_delta(segment: &Segment) -> String {
    if segment.index == 0 || segment.text.is_empty() {
        segment.text.clone()
    } else {
        format!(" {}", segment.text)
    }
}

/// SubRip (`00:00:01,500`) or WebVTT (`00:00:01.500`, with its header) cues.
fn subtitles(segments: &[&Segment], vtt: bool) -> String {
    let stamp = |seconds: f64| {
        let ms = (seconds * 1000.0).round() as u64;
        let separator = if vtt { '.' } else { ',' };
        format!("{:02}:{:02}:{:02}{separator}{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
    };
    let mut out = if vtt { String::from("WEBVTT\n\n") } else { String::new() };
    for (i, s) in segments.iter().enumerate() {
        if !vtt {
            out.push_str(&format!("{}\n", i + 1));
        }
        out.push_str(&format!("{} --> {}\n{}\n\n", stamp(s.start_s), stamp(s.end_s), s.text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(index: usize, start_s: f64, end_s: f64, text: &str) -> Segment {
        Segment { index, start_s, end_s, text: text.into(), tokens: vec![] }
    }

    #[test]
    fn subtitles_number_and_stamp_their_cues() {
        let (a, b) = (segment(0, 0.0, 29.5, "first part"), segment(1, 29.5, 3725.25, "second"));
        let srt = subtitles(&[&a, &b], false);
        assert_eq!(srt, "1\n00:00:00,000 --> 00:00:29,500\nfirst part\n\n2\n00:00:29,500 --> 01:02:05,250\nsecond\n\n");
        let vtt = subtitles(&[&a], true);
        assert_eq!(vtt, "WEBVTT\n\n00:00:00.000 --> 00:00:29.500\nfirst part\n\n");
        assert_eq!(segment_delta(&b), " second");
        assert!(Format::parse("xml").is_err());
    }
}
