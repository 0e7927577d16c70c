//! How well speech reaches the LLM through the projector (`kioku eval-align`).
//! For each clip: can the model repeat what was said (e2e vs Whisper), and for
//! each question: does the spoken question get the answer the typed question
//! gets (e2e and cascade vs text mode), and is it right (gold answers)?

use super::metrics::{answers_agree, contains_reference, WerTally};
use crate::assistant::{load_audio_16k, Assistant, Mode, REPEAT_INSTRUCTION};
use crate::corpus::{Kind, ManifestEntry};
use crate::generation::SamplingOptions;
use anyhow::{ensure, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One spoken clip with what was said.
#[derive(Debug, Clone)]
pub struct SpokenClip {
    pub path: PathBuf,
    pub text: String,
    /// Set for questions: the clip is also asked, in every mode.
    pub question: Option<Question>,
}

#[derive(Debug, Clone)]
pub struct Question {
    pub reference_answer: Option<String>,
}

impl SpokenClip {
    pub fn from_manifest(corpus_dir: &Path, entry: &ManifestEntry) -> Self {
        Self {
            path: corpus_dir.join(&entry.path),
            text: entry.text.clone(),
            question: (entry.kind == Kind::Question)
                .then(|| Question { reference_answer: entry.reference_answer.clone() }),
        }
    }
}

/// Everything measured on one clip.
#[derive(Debug, Clone, Serialize)]
pub struct ClipResult {
    pub path: PathBuf,
    pub text: String,
    pub whisper_transcript: String,
    pub e2e_repeat: String,
    pub answers: Option<Answers>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Answers {
    pub reference: Option<String>,
    pub text: String,
    pub cascade: String,
    pub e2e: String,
    pub cascade_first_token_ms: f64,
    pub e2e_first_token_ms: f64,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ModeSummary {
    pub mode: &'static str,
    /// WER of what the mode hears: Whisper's transcript for cascade, the repeat for e2e.
    pub repeat_wer: Option<f64>,
    /// Share of questions answered like the typed question.
    pub agreement_with_text: Option<f64>,
    pub gold_accuracy: Option<f64>,
    pub first_token_ms_median: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlignReport {
    pub name: String,
    pub clips: usize,
    pub questions: usize,
    pub with_reference: usize,
    pub max_answer_tokens: usize,
    pub modes: Vec<ModeSummary>,
    pub items: Vec<ClipResult>,
}

/// Runs every clip through Whisper and the projector, and every question
/// through all three modes, greedily, with answers cut at `max_answer_tokens`.
pub fn evaluate(
    assistant: &Assistant,
    name: &str,
    clips: &[SpokenClip],
    max_answer_tokens: usize,
    on_clip: &dyn Fn(),
) -> Result<AlignReport> {
    ensure!(
        assistant.has_projector(),
        "this model has no projector; pack one with `kioku pack --projector` (or `make model`)"
    );
    let sampling = SamplingOptions { max_tokens: max_answer_tokens, ..SamplingOptions::default() };
    let repeat_sampling = SamplingOptions { max_tokens: 64, ..SamplingOptions::default() };
    let mut items = Vec::with_capacity(clips.len());
    for clip in clips {
        let samples = load_audio_16k(&clip.path)?;
        let describe = || format!("cannot evaluate {}", clip.path.display());
        let (whisper_transcript, _) = assistant.transcribe(&samples).with_context(describe)?;
        let e2e_repeat = assistant
            .ask_audio_with(&samples, Mode::E2e, Some(REPEAT_INSTRUCTION), &repeat_sampling, &mut |_| {})?
            .answer;
        let answers = match &clip.question {
            None => None,
            Some(question) => {
                let text = assistant.ask_text(&clip.text, &sampling, &mut |_| {})?;
                // An empty transcript (silence detected) is an answer of its own: nothing.
                let cascade = assistant.ask_audio(&samples, Mode::Cascade, &sampling, &mut |_| {}).ok();
                let e2e = assistant.ask_audio(&samples, Mode::E2e, &sampling, &mut |_| {}).with_context(describe)?;
                Some(Answers {
                    reference: question.reference_answer.clone(),
                    text: text.answer,
                    cascade_first_token_ms: cascade.as_ref().map_or(f64::NAN, |a| a.timings_ms.first_token),
                    cascade: cascade.map(|a| a.answer).unwrap_or_default(),
                    e2e_first_token_ms: e2e.timings_ms.first_token,
                    e2e: e2e.answer,
                })
            }
        };
        items.push(ClipResult {
            path: clip.path.clone(),
            text: clip.text.clone(),
            whisper_transcript,
            e2e_repeat,
            answers,
        });
        on_clip();
    }
    Ok(summarize(name, items, max_answer_tokens))
}

fn summarize(name: &str, items: Vec<ClipResult>, max_answer_tokens: usize) -> AlignReport {
    let answered: Vec<&Answers> = items.iter().filter_map(|i| i.answers.as_ref()).collect();
    let with_reference: Vec<&Answers> = answered.iter().copied().filter(|a| a.reference.is_some()).collect();
    let share = |n: usize, of: usize| (of > 0).then(|| n as f64 / of as f64);
    let gold = |pick: fn(&Answers) -> &str| {
        share(
            with_reference.iter().filter(|a| contains_reference(pick(a), a.reference.as_deref().unwrap_or(""))).count(),
            with_reference.len(),
        )
    };
    let agreement = |pick: fn(&Answers) -> &str| {
        share(answered.iter().filter(|a| answers_agree(pick(a), &a.text)).count(), answered.len())
    };
    let wer = |pick: fn(&ClipResult) -> &str| {
        let mut tally = WerTally::default();
        items.iter().for_each(|i| tally.add(&i.text, pick(i)));
        (!items.is_empty()).then(|| tally.rate())
    };
    let median_ms =
        |pick: fn(&Answers) -> f64| median(answered.iter().map(|a| pick(a)).filter(|v| v.is_finite()).collect());
    let modes = vec![
        ModeSummary {
            mode: "text",
            repeat_wer: None,
            agreement_with_text: share(answered.len(), answered.len()),
            gold_accuracy: gold(|a| &a.text),
            first_token_ms_median: None,
        },
        ModeSummary {
            mode: "cascade",
            repeat_wer: wer(|i| &i.whisper_transcript),
            agreement_with_text: agreement(|a| &a.cascade),
            gold_accuracy: gold(|a| &a.cascade),
            first_token_ms_median: median_ms(|a| a.cascade_first_token_ms),
        },
        ModeSummary {
            mode: "e2e",
            repeat_wer: wer(|i| &i.e2e_repeat),
            agreement_with_text: agreement(|a| &a.e2e),
            gold_accuracy: gold(|a| &a.e2e),
            first_token_ms_median: median_ms(|a| a.e2e_first_token_ms),
        },
    ];
    AlignReport {
        name: name.to_string(),
        clips: items.len(),
        questions: answered.len(),
        with_reference: with_reference.len(),
        max_answer_tokens,
        modes,
        items,
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

impl AlignReport {
    /// The summary table in Markdown.
    pub fn markdown(&self) -> String {
        let cell = |v: Option<f64>, percent: bool| match v {
            Some(v) if percent => format!("{:.1}%", 100.0 * v),
            Some(v) => format!("{v:.3}"),
            None => "—".to_string(),
        };
        let mut out = format!(
            "**{}**: {} clips, {} questions ({} with a reference answer); answers cut at {} tokens\n\n\
             | mode | repeat WER | agrees with text mode | gold accuracy | first token (median ms) |\n|---|---|---|---|---|\n",
            self.name, self.clips, self.questions, self.with_reference, self.max_answer_tokens
        );
        for m in &self.modes {
            out += &format!(
                "| {} | {} | {} | {} | {} |\n",
                m.mode,
                cell(m.repeat_wer, false),
                cell(m.agreement_with_text, true),
                cell(m.gold_accuracy, true),
                m.first_token_ms_median.map_or("—".to_string(), |v| format!("{v:.0}"))
            );
        }
        out
    }
}
