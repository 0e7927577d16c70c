//! Text generation: chat-template rendering, sampling, and streaming detokenisation.

use crate::model::bpe::TextTokenizer;
use anyhow::{Context, Result};
use candle_core::{Tensor, D};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

/// Renders the model's own chat template (Jinja) for one user turn.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
}

/// One message of a conversation, as chat templates take it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self { role: role.to_string(), content: content.into() }
    }
}

impl ChatTemplate {
    pub fn new(template: &str) -> Result<Self> {
        let mut env = minijinja::Environment::new();
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", template.to_string()).context("the model's chat template is not valid Jinja")?;
        Ok(Self { env })
    }

    /// The prompt for `user` (with an optional system message), ending where
    /// the assistant's answer begins.
    pub fn render(&self, system: Option<&str>, user: &str) -> Result<String> {
        let mut messages = Vec::new();
        if let Some(system) = system {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", user));
        self.render_messages(&messages)
    }

    /// The prompt for a whole conversation, ending where the assistant's next answer begins.
    pub fn render_messages(&self, messages: &[ChatMessage]) -> Result<String> {
        let template = self.env.get_template("chat")?;
        Ok(template.render(minijinja::context! { messages, add_generation_prompt => true, bos_token => "" })?)
    }
}

#[derive(Debug, Clone)]
pub struct SamplingOptions {
    /// 0 means greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose mass reaches `top_p`.
    pub top_p: f64,
    pub max_tokens: usize,
    pub seed: u64,
    /// Generation ends before the first of these strings; the answer excludes it.
    pub stop: Vec<String>,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self { temperature: 0.0, top_p: 1.0, max_tokens: 256, seed: 299_792_458, stop: Vec::new() }
    }
}

pub struct Sampler {
    options: SamplingOptions,
    rng: StdRng,
}

impl Sampler {
    pub fn new(options: SamplingOptions) -> Self {
        let rng = StdRng::seed_from_u64(options.seed);
        Self { options, rng }
    }

    pub fn max_tokens(&self) -> usize {
        self.options.max_tokens
    }

    /// Picks the next token from 1-D f32 logits.
    pub fn sample(&mut self, logits: &Tensor) -> Result<u32> {
        if self.options.temperature <= 0.0 {
            return Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?);
        }
        let probs = candle_nn::ops::softmax_last_dim(&(logits / self.options.temperature)?)?.to_vec1::<f32>()?;
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_unstable_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let mut kept = 0.0f32;
        let cut = order
            .iter()
            .position(|&i| {
                kept += probs[i];
                kept as f64 >= self.options.top_p
            })
            .map_or(order.len(), |p| p + 1);
        let mut target = self.rng.random::<f32>() * order[..cut].iter().map(|&i| probs[i]).sum::<f32>();
        for &i in &order[..cut] {
            target -= probs[i];
            if target <= 0.0 {
                return Ok(i as u32);
            }
        }
        Ok(order[cut - 1] as u32)
    }
}

/// Turns a growing token sequence into text increments, holding back bytes
/// that do not yet form a whole UTF-8 character.
pub struct TokenStream<'a> {
    tokenizer: &'a TextTokenizer,
    tokens: Vec<u32>,
    emitted: usize,
}

impl<'a> TokenStream<'a> {
    pub fn new(tokenizer: &'a TextTokenizer) -> Self {
        Self { tokenizer, tokens: Vec::new(), emitted: 0 }
    }

    /// Adds a token; returns the newly completed text, if any.
    pub fn push(&mut self, token: u32) -> Result<Option<String>> {
        self.tokens.push(token);
        let text = self.text()?;
        if text.len() > self.emitted && !text.ends_with('\u{FFFD}') && text.is_char_boundary(self.emitted) {
            let new = text[self.emitted..].to_string();
            self.emitted = text.len();
            return Ok(Some(new));
        }
        Ok(None)
    }

    pub fn text(&self) -> Result<String> {
        self.tokenizer.decode(&self.tokens, true).map_err(anyhow::Error::msg)
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}

/// Holds back streamed text that may be the start of a stop string, so that
/// no part of a stop string ever reaches the caller.
pub struct StopFilter<'a> {
    stops: &'a [String],
    pending: String,
    accepted: String,
    stopped: bool,
}

impl<'a> StopFilter<'a> {
    pub fn new(stops: &'a [String]) -> Self {
        Self { stops, pending: String::new(), accepted: String::new(), stopped: false }
    }

    /// Takes the next piece of text; returns what is now safe to show.
    /// After a stop string appears, [`StopFilter::stopped`] is true and the
    /// text from the stop string on is dropped.
    pub fn push(&mut self, text: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.pending.push_str(text);
        let first_stop =
            self.stops.iter().filter(|s| !s.is_empty()).filter_map(|s| self.pending.find(s.as_str())).min();
        let safe = match first_stop {
            Some(at) => {
                self.stopped = true;
                at
            }
            None => self.pending.len() - self.stops.iter().map(|s| held_back(&self.pending, s)).max().unwrap_or(0),
        };
        let shown: String = self.pending.drain(..safe).collect();
        if self.stopped {
            self.pending.clear();
        }
        self.accepted.push_str(&shown);
        shown
    }

    /// The text held back at the end of generation (no stop string followed it).
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.accepted.push_str(&rest);
        rest
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Everything shown so far.
    pub fn text(&self) -> &str {
        &self.accepted
    }
}

/// The length of the longest end of `text` that begins `stop` (shorter than `stop`).
fn held_back(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut filter = StopFilter::new(&stops);
        let mut shown: Vec<String> = pieces.iter().map(|p| filter.push(p)).collect();
        shown.push(filter.finish());
        (shown, filter.text().to_string(), filter.stopped())
    }

    #[test]
    fn a_stop_string_split_across_pieces_never_shows() {
        let (shown, text, stopped) = run(&["\n\nUser:"], &["Paris.", "\n", "\nUs", "er: more"]);
        assert_eq!(shown, ["Paris.", "", "", "", ""]);
        assert_eq!((text.as_str(), stopped), ("Paris.", true));
    }

    #[test]
    fn text_held_back_for_a_stop_that_never_comes_is_released() {
        let (shown, text, stopped) = run(&["END"], &["the E", "N", "d-less", " tail E"]);
        assert_eq!(shown, ["the ", "", "ENd-less", " tail ", "E"]);
        assert_eq!((text.as_str(), stopped), ("the ENd-less tail E", false));
        let (_, text, stopped) = run(&[], &["no stops"]);
        assert_eq!((text.as_str(), stopped), ("no stops", false));
    }

    #[test]
    fn the_earliest_of_several_stops_wins_and_multibyte_text_is_cut_on_char_boundaries() {
        let (_, text, stopped) = run(&["b", "é!"], &["aé!b"]);
        assert_eq!((text.as_str(), stopped), ("a", true));
        let (shown, _, _) = run(&["éx"], &["caf", "é", "!"]);
        assert_eq!(shown, ["caf", "", "é!", ""]);
    }
}
