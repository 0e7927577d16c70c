//! The projector's training data, computed once and cached on disk. For every
//! corpus clip: the frozen encoder's output (the projector's input) and the
//! model's own text-mode answer to the clip's words (the distillation target).
//! Both are expensive (the answers take most of the preparation time), so the
//! answers are appended one line at a time and an interrupted run resumes.

use crate::assistant::{load_audio_16k, Assistant};
use crate::corpus::{ManifestEntry, Split};
use crate::generation::SamplingOptions;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// The model's greedy answer to a clip's text typed as a question.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextAnswer {
    pub id: String,
    pub answer: String,
    /// False when the answer was cut at the token limit (no end-of-turn to learn).
    pub finished: bool,
}

/// One training or evaluation example.
#[derive(Debug, Clone)]
pub struct AlignItem {
    pub entry: ManifestEntry,
    /// Encoder output (frames, width), f32 on the CPU.
    pub features: Tensor,
    pub text_answer: TextAnswer,
}

/// Progress callbacks for the two slow stages.
pub trait PrepareProgress {
    fn start(&self, stage: &str, total: usize);
    fn advance(&self);
}

/// Computes (or reuses) encoder outputs and text-mode answers for `entries`
/// under `cache_dir`; `corpus_dir` holds the clips.
pub fn prepare(
    assistant: &Assistant,
    corpus_dir: &Path,
    entries: &[ManifestEntry],
    split: Split,
    cache_dir: &Path,
    max_answer_tokens: usize,
    progress: &dyn PrepareProgress,
) -> Result<Vec<AlignItem>> {
    std::fs::create_dir_all(cache_dir).with_context(|| format!("cannot create {}", cache_dir.display()))?;
    check_cache_identity(assistant, cache_dir, max_answer_tokens)?;
    let features = encoder_outputs(
        assistant,
        corpus_dir,
        entries,
        &cache_dir.join(format!("encoder-{}.safetensors", split.as_str())),
        progress,
    )?;
    let answers = text_answers(
        assistant,
        entries,
        &cache_dir.join(format!("answers-{}.jsonl", split.as_str())),
        max_answer_tokens,
        progress,
    )?;
    entries
        .iter()
        .map(|e| {
            Ok(AlignItem {
                entry: e.clone(),
                features: features
                    .get(&e.id)
                    .with_context(|| format!("no encoder output for {}", e.id))?
                    .to_dtype(DType::F32)?,
                text_answer: answers.get(&e.id).with_context(|| format!("no text answer for {}", e.id))?.clone(),
            })
        })
        .collect()
}

/// A cache is only valid for the model (and answer length) that filled it.
fn check_cache_identity(assistant: &Assistant, cache_dir: &Path, max_answer_tokens: usize) -> Result<()> {
    let identity = serde_json::json!({
        // The projector's own provenance changes as it is retrained; the cache does not depend on it.
        "provenance": assistant.header().provenance.iter().filter(|p| p.component != crate::model::components::PROJECTOR).collect::<Vec<_>>(),
        "max_answer_tokens": max_answer_tokens,
    });
    let path = cache_dir.join("identity.json");
    match std::fs::read_to_string(&path) {
        Ok(stored) => {
            let stored: serde_json::Value =
                serde_json::from_str(&stored).with_context(|| format!("{} is corrupt", path.display()))?;
            anyhow::ensure!(
                stored == identity,
                "the cache {} was made with another model or answer length; pass a different --cache directory",
                cache_dir.display()
            );
            Ok(())
        }
        Err(_) => crate::atomic::write_bytes(&path, serde_json::to_string_pretty(&identity)?.as_bytes()),
    }
}

fn encoder_outputs(
    assistant: &Assistant,
    corpus_dir: &Path,
    entries: &[ManifestEntry],
    path: &Path,
    progress: &dyn PrepareProgress,
) -> Result<HashMap<String, Tensor>> {
    // Clips already cached (a smaller earlier run) are kept; only the rest are encoded.
    let mut outputs = if path.exists() {
        candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("cannot read cache {}", path.display()))?
    } else {
        HashMap::new()
    };
    let missing: Vec<&ManifestEntry> = entries.iter().filter(|e| !outputs.contains_key(&e.id)).collect();
    if missing.is_empty() {
        return Ok(outputs);
    }
    progress.start("encoding clips", missing.len());
    for e in missing {
        let samples = load_audio_16k(&corpus_dir.join(&e.path))?;
        let encoded = assistant.encode_audio(&samples).with_context(|| format!("cannot encode {}", e.path))?;
        // f16 halves the cache; the projector's input is normalised anyway.
        outputs.insert(e.id.clone(), encoded.squeeze(0)?.to_device(&Device::Cpu)?.to_dtype(DType::F16)?);
        progress.advance();
    }
    crate::atomic::replace_with(path, |tmp| Ok(candle_core::safetensors::save(&outputs, tmp)?))?;
    Ok(outputs)
}

fn text_answers(
    assistant: &Assistant,
    entries: &[ManifestEntry],
    path: &Path,
    max_answer_tokens: usize,
    progress: &dyn PrepareProgress,
) -> Result<HashMap<String, TextAnswer>> {
    let mut answers: HashMap<String, TextAnswer> = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        // A run killed mid-line leaves a torn last line: skip it, it is redone.
        answers
            .extend(text.lines().filter_map(|l| serde_json::from_str::<TextAnswer>(l).ok()).map(|a| (a.id.clone(), a)));
    }
    let missing: Vec<&ManifestEntry> = entries.iter().filter(|e| !answers.contains_key(&e.id)).collect();
    if missing.is_empty() {
        return Ok(answers);
    }
    progress.start("answering the clips' text", missing.len());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if std::fs::metadata(path)?.len() > 0 {
        writeln!(file)?; // end a torn line so the next record starts clean
    }
    let sampling = SamplingOptions { max_tokens: max_answer_tokens, ..SamplingOptions::default() };
    for e in missing {
        let answer = assistant.ask_text(&e.text, &sampling, &mut |_| {})?;
        let record =
            TextAnswer { id: e.id.clone(), answer: answer.answer, finished: answer.answer_tokens < max_answer_tokens };
        writeln!(file, "{}", serde_json::to_string(&record)?)?;
        file.flush()?;
        answers.insert(record.id.clone(), record);
        progress.advance();
    }
    file.sync_all()?;
    Ok(answers)
}
