//! The replay file (`replay.kbuf`): a safetensors file, so any safetensors tool can
//! look inside. One I16 tensor `audio` holds every speech item's samples end to end;
//! the metadata holds the format name and version, the buffer's state as JSON (items
//! in order, each with its sample count, plus seed, offer count and threshold), and a
//! sha256 over that JSON and the audio bytes. Whatever the checksum does not cover
//! (the safetensors header's layout) safetensors itself validates.

use super::{ReplayBuffer, ReplayContent, ReplayItem, Slot};
use crate::audio::SAMPLE_RATE;
use anyhow::{anyhow, Error, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

const FORMAT: &str = "kioku-replay";
const VERSION: &str = "1";
const AUDIO: &str = "audio";

#[derive(Serialize, Deserialize)]
struct State {
    seed: u64,
    seen: u64,
    threshold: u64,
    sample_rate: u32,
    items: Vec<Record>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    id: String,
    source: String,
    key: u64,
    content: RecordContent,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RecordContent {
    /// Its audio is the next `samples` values of the `audio` tensor.
    Speech {
        transcript: String,
        speaker: String,
        samples: usize,
    },
    Text {
        prompt: String,
        answer: String,
    },
}

/// What a file holds, checked.
pub(super) struct Stored {
    pub seed: u64,
    pub seen: u64,
    pub threshold: u64,
    pub slots: Vec<Slot>,
}

pub(super) fn encode(buffer: &ReplayBuffer) -> Result<Vec<u8>> {
    let mut audio_bytes = Vec::new();
    let items = buffer
        .slots
        .iter()
        .map(|slot| {
            let content = match &slot.item.content {
                ReplayContent::Speech { audio, transcript, speaker } => {
                    audio_bytes.extend(audio.iter().flat_map(|s| s.to_le_bytes()));
                    RecordContent::Speech {
                        transcript: transcript.clone(),
                        speaker: speaker.clone(),
                        samples: audio.len(),
                    }
                }
                ReplayContent::Text { prompt, answer } => {
                    RecordContent::Text { prompt: prompt.clone(), answer: answer.clone() }
                }
            };
            Record { id: slot.item.id.clone(), source: slot.item.source.clone(), key: slot.key, content }
        })
        .collect();
    let state =
        State { seed: buffer.seed, seen: buffer.seen, threshold: buffer.threshold, sample_rate: SAMPLE_RATE, items };
    let state = serde_json::to_string(&state)?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("version".to_string(), VERSION.to_string()),
        ("sha256".to_string(), checksum(&state, &audio_bytes)),
        ("state".to_string(), state),
    ]);
    let audio = TensorView::new(Dtype::I16, vec![audio_bytes.len() / 2], &audio_bytes)?;
    Ok(safetensors::serialize([(AUDIO, audio)], Some(metadata))?)
}

pub(super) fn decode(path: &Path, bytes: &[u8]) -> Result<Stored> {
    // Every refusal names the file and the way out: training must not silently start afresh.
    let refuse = |problem: String| -> Error {
        anyhow!("replay buffer {} {problem}; move it away or pass --no-replay", path.display())
    };
    let corrupt = |reason: String| refuse(format!("is corrupt: {reason}"));
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| corrupt(format!("not a whole safetensors file ({e})")))?;
    let metadata = header.metadata().as_ref().ok_or_else(|| corrupt("no metadata".into()))?;
    let field = |name: &str| metadata.get(name).ok_or_else(|| corrupt(format!("no `{name}` in its metadata")));
    if field("format")? != FORMAT {
        return Err(refuse(format!("is not a kioku replay buffer (format {:?})", field("format")?)));
    }
    if field("version")? != VERSION {
        return Err(refuse(format!("has format version {}; this kioku reads version {VERSION}", field("version")?)));
    }
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
    let audio = tensors.tensor(AUDIO).map_err(|e| corrupt(e.to_string()))?;
    if audio.dtype() != Dtype::I16 || audio.shape().len() != 1 {
        return Err(corrupt(format!("`{AUDIO}` is {:?} {:?}, not a 1-D I16 tensor", audio.dtype(), audio.shape())));
    }
    let state = field("state")?;
    if checksum(state, audio.data()) != *field("sha256")? {
        return Err(corrupt("checksum mismatch".into()));
    }
    let state: State = serde_json::from_str(state).map_err(|e| corrupt(format!("unreadable state ({e})")))?;
    if state.sample_rate != SAMPLE_RATE {
        return Err(refuse(format!("holds {} Hz audio; kioku trains on {SAMPLE_RATE} Hz", state.sample_rate)));
    }
    let mut samples = audio.data().chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]));
    let mut slots = Vec::with_capacity(state.items.len());
    for record in state.items {
        let content = match record.content {
            RecordContent::Speech { transcript, speaker, samples: n } => {
                let audio: Vec<i16> = samples.by_ref().take(n).collect();
                if audio.len() != n {
                    return Err(corrupt(format!("item {} lists more audio than the file holds", record.id)));
                }
                ReplayContent::Speech { audio, transcript, speaker }
            }
            RecordContent::Text { prompt, answer } => ReplayContent::Text { prompt, answer },
        };
        slots.push(Slot { key: record.key, item: ReplayItem { id: record.id, source: record.source, content } });
    }
    if samples.next().is_some() {
        return Err(corrupt("audio that no item claims".into()));
    }
    Ok(Stored { seed: state.seed, seen: state.seen, threshold: state.threshold, slots })
}

/// sha256 over the state JSON, a NUL (which JSON text never holds), and the audio bytes.
fn checksum(state: &str, audio: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(state.as_bytes());
    hash.update([0]);
    hash.update(audio);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
