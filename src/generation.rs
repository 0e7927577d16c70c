//! Text generation: chat-template rendering, sampling, and streaming detokenisation.

use anyhow::{Context, Result};
use candle_core::{Tensor, D};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;
use tokenizers::Tokenizer;

/// Renders the model's own chat template (Jinja) for one user turn.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
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
            messages.push(Message { role: "system", content: system });
        }
        messages.push(Message { role: "user", content: user });
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
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self { temperature: 0.0, top_p: 1.0, max_tokens: 256, seed: 299_792_458 }
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
    tokenizer: &'a Tokenizer,
    tokens: Vec<u32>,
    emitted: usize,
}

impl<'a> TokenStream<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
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
