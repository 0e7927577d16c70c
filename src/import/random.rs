//! `kioku pack --random-shapes`: a model with the exact tensor names, shapes
//! and configs of the default model (or of a tiny one), filled from a seed.
//! It needs no download, so a GPU machine without network can pack one on the
//! spot, and the tests get a hermetic model.

use super::synthetic_tokenizer::SyntheticVocab;
use super::{ImportedLlm, ImportedWhisper, ProjectorFile};
use crate::model::components::{ASR_DECODER, ENCODER, LLM, PROJECTOR, SPEECH_LORA, VAD};
use crate::model::file::Provenance;
use crate::model::llama::LlamaConfig;
use crate::model::lora::LoraConfig;
use crate::model::projector::ProjectorConfig;
use crate::model::silero::TENSORS;
use crate::model::whisper::WhisperConfig;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::BTreeMap;

/// Which shapes to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomShapes {
    /// Whisper tiny.en + SmolLM2-135M + the projector and speech adapter, as `make model` packs them.
    Default,
    /// Two layers everywhere and small widths: packs in well under a second.
    Tiny,
}

impl std::str::FromStr for RandomShapes {
    type Err = anyhow::Error;
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "default" => Ok(Self::Default),
            "tiny" => Ok(Self::Tiny),
            other => bail!("unknown random shapes `{other}`; use default or tiny"),
        }
    }
}

impl RandomShapes {
    fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Tiny => "tiny",
        }
    }

    fn whisper(self) -> WhisperConfig {
        let (d_model, layers, heads, vocab_size) = match self {
            Self::Default => (384, 4, 6, 51864),
            Self::Tiny => (64, 2, 2, 512),
        };
        WhisperConfig {
            n_mels: 80,
            d_model,
            encoder_layers: layers,
            encoder_heads: heads,
            decoder_layers: layers,
            decoder_heads: heads,
            vocab_size,
            max_source_positions: 1500,
            max_target_positions: 448,
            suppress_tokens: Vec::new(),
            begin_suppress_tokens: Vec::new(),
        }
    }

    fn llm(self) -> LlamaConfig {
        let (hidden_size, intermediate_size, layers, heads, kv_heads, vocab_size) = match self {
            Self::Default => (576, 1536, 30, 9, 3, 49152),
            Self::Tiny => (64, 128, 2, 4, 2, 512),
        };
        LlamaConfig {
            hidden_size,
            intermediate_size,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim: hidden_size / heads,
            vocab_size,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            rope_scaling: None,
            rope_freq_factors: None,
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
            qkv_bias: false,
            bos_token_id: Some(LLM_SPECIALS.iter().position(|t| *t == "<|im_start|>").unwrap() as u32),
            eos_token_ids: vec![LLM_SPECIALS.iter().position(|t| *t == "<|im_end|>").unwrap() as u32],
        }
    }

    fn projector(self) -> ProjectorConfig {
        let (input_dim, hidden_dim, output_dim) = match self {
            Self::Default => (384, 1024, 576),
            Self::Tiny => (64, 128, 64),
        };
        ProjectorConfig { stack_factor: 8, input_dim, hidden_dim, output_dim }
    }

    /// The spread of random matrices. The default shapes take GPT-2's 0.02,
    /// small enough that 30 layers keep finite activations. The tiny model's
    /// 0.1 (about 1/sqrt(width)) lets every layer move the residual stream:
    /// at 0.02 its greedy tokens only repeated the last input token, and an
    /// adapter changed no logit by more than 1e-3, so parity checks saw little.
    fn weight_std(self) -> f32 {
        match self {
            Self::Default => 0.02,
            Self::Tiny => 0.1,
        }
    }

    fn speech_lora(self) -> LoraConfig {
        let rank = match self {
            Self::Default => 16,
            Self::Tiny => 4,
        };
        LoraConfig { rank, alpha: 2.0 * rank as f64, dropout: 0.0 }
    }
}

/// SmolLM2's control tokens, at its ids 0, 1, 2.
const LLM_SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// Whisper's control tokens right after the text tokens, as in tiny.en; the
/// ASR decoder never emits an id above end-of-text.
const WHISPER_SPECIALS: [&str; 5] =
    ["<|endoftext|>", "<|startoftranscript|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"];
/// Whisper's text tokens in tiny.en; the ids above the control tokens are timestamps.
const WHISPER_TEXT_TOKENS: usize = 50256;
/// SmolLM2's chat format with a short system turn.
const CHAT_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a random model.<|im_end|>\n' }}{% endif %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Seeded values in a fixed order of names, so one seed always gives the same file.
struct Filler {
    rng: StdRng,
    /// Standard deviation of every random matrix.
    std: f32,
    tensors: BTreeMap<String, Tensor>,
}

impl Filler {
    /// Uniform with standard deviation `std` (cheaper to draw than a normal,
    /// and it never produces an outlier that saturates an f16).
    fn random(&mut self, name: String, shape: &[usize], std: f32) -> Result<()> {
        let bound = std * 3f32.sqrt();
        let values: Vec<f32> = (0..shape.iter().product()).map(|_| self.rng.random_range(-bound..bound)).collect();
        self.tensors.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
        Ok(())
    }

    fn matrix(&mut self, name: String, rows: usize, cols: usize) -> Result<()> {
        self.random(name, &[rows, cols], self.std)
    }

    fn constant(&mut self, name: String, len: usize, value: f32) -> Result<()> {
        self.tensors.insert(name, Tensor::full(value, len, &Device::Cpu)?);
        Ok(())
    }

    fn layer_norm(&mut self, prefix: String, dim: usize) -> Result<()> {
        self.constant(format!("{prefix}.weight"), dim, 1.0)?;
        self.constant(format!("{prefix}.bias"), dim, 0.0)
    }

    /// A linear layer with a bias, as most of Whisper's.
    fn affine(&mut self, prefix: String, out_dim: usize, in_dim: usize) -> Result<()> {
        self.matrix(format!("{prefix}.weight"), out_dim, in_dim)?;
        self.constant(format!("{prefix}.bias"), out_dim, 0.0)
    }

    /// Whisper's attention: no bias on the key projection.
    fn whisper_attention(&mut self, prefix: String, d: usize) -> Result<()> {
        self.affine(format!("{prefix}.q_proj"), d, d)?;
        self.matrix(format!("{prefix}.k_proj.weight"), d, d)?;
        self.affine(format!("{prefix}.v_proj"), d, d)?;
        self.affine(format!("{prefix}.out_proj"), d, d)
    }

    fn whisper_mlp(&mut self, prefix: &str, cfg: &WhisperConfig) -> Result<()> {
        self.affine(format!("{prefix}.fc1"), cfg.ffn_dim(), cfg.d_model)?;
        self.affine(format!("{prefix}.fc2"), cfg.d_model, cfg.ffn_dim())?;
        self.layer_norm(format!("{prefix}.final_layer_norm"), cfg.d_model)
    }

    fn whisper(&mut self, cfg: &WhisperConfig) -> Result<()> {
        let d = cfg.d_model;
        self.random(format!("{ENCODER}.conv1.weight"), &[d, cfg.n_mels, 3], self.std)?;
        self.constant(format!("{ENCODER}.conv1.bias"), d, 0.0)?;
        self.random(format!("{ENCODER}.conv2.weight"), &[d, d, 3], self.std)?;
        self.constant(format!("{ENCODER}.conv2.bias"), d, 0.0)?;
        self.matrix(format!("{ENCODER}.embed_positions.weight"), cfg.max_source_positions, d)?;
        for i in 0..cfg.encoder_layers {
            let layer = format!("{ENCODER}.layers.{i}");
            self.whisper_attention(format!("{layer}.self_attn"), d)?;
            self.layer_norm(format!("{layer}.self_attn_layer_norm"), d)?;
            self.whisper_mlp(&layer, cfg)?;
        }
        self.layer_norm(format!("{ENCODER}.layer_norm"), d)?;
        self.matrix(format!("{ASR_DECODER}.embed_tokens.weight"), cfg.vocab_size, d)?;
        self.matrix(format!("{ASR_DECODER}.embed_positions.weight"), cfg.max_target_positions, d)?;
        for i in 0..cfg.decoder_layers {
            let layer = format!("{ASR_DECODER}.layers.{i}");
            for attention in ["self_attn", "encoder_attn"] {
                self.whisper_attention(format!("{layer}.{attention}"), d)?;
                self.layer_norm(format!("{layer}.{attention}_layer_norm"), d)?;
            }
            self.whisper_mlp(&layer, cfg)?;
        }
        self.layer_norm(format!("{ASR_DECODER}.layer_norm"), d)
    }

    fn llm(&mut self, cfg: &LlamaConfig) -> Result<()> {
        let h = cfg.hidden_size;
        self.matrix(format!("{LLM}.embed_tokens.weight"), cfg.vocab_size, h)?;
        for i in 0..cfg.num_hidden_layers {
            let layer = format!("{LLM}.layers.{i}");
            for (module, out_dim, in_dim) in llm_linears(cfg) {
                self.matrix(format!("{layer}.{module}.weight"), out_dim, in_dim)?;
            }
            self.constant(format!("{layer}.input_layernorm.weight"), h, 1.0)?;
            self.constant(format!("{layer}.post_attention_layernorm.weight"), h, 1.0)?;
        }
        self.constant(format!("{LLM}.norm.weight"), h, 1.0)
    }

    fn projector(&mut self, cfg: &ProjectorConfig) -> Result<()> {
        let stacked = cfg.input_dim * cfg.stack_factor;
        self.constant(format!("{PROJECTOR}.ln_pre.weight"), stacked, 1.0)?;
        self.matrix(format!("{PROJECTOR}.linear_1.weight"), cfg.hidden_dim, stacked)?;
        self.constant(format!("{PROJECTOR}.ln_mid.weight"), cfg.hidden_dim / 2, 1.0)?;
        self.matrix(format!("{PROJECTOR}.linear_2.weight"), cfg.output_dim, cfg.hidden_dim / 2)
    }

    /// The speech adapter on every LLM projection. B is random too (training
    /// starts it at zero), so the adapter changes the answer and parity checks see it.
    fn speech_lora(&mut self, llm: &LlamaConfig, lora: &LoraConfig) -> Result<()> {
        for i in 0..llm.num_hidden_layers {
            for (module, out_dim, in_dim) in llm_linears(llm) {
                let module = format!("{SPEECH_LORA}.{LLM}.layers.{i}.{module}");
                self.matrix(format!("{module}.lora_A"), lora.rank, in_dim)?;
                self.matrix(format!("{module}.lora_B"), out_dim, lora.rank)?;
            }
        }
        Ok(())
    }
}

/// (module, out, in) of each linear layer in one LLM block.
fn llm_linears(cfg: &LlamaConfig) -> [(&'static str, usize, usize); 7] {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let (q, kv) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
    [
        ("self_attn.q_proj", q, h),
        ("self_attn.k_proj", kv, h),
        ("self_attn.v_proj", kv, h),
        ("self_attn.o_proj", h, q),
        ("mlp.gate_proj", i, h),
        ("mlp.up_proj", i, h),
        ("mlp.down_proj", h, i),
    ]
}

/// Every component of a random model, ready for [`super::write_packed`].
pub struct RandomModel {
    pub whisper: ImportedWhisper,
    pub llm: ImportedLlm,
    pub projector: ProjectorFile,
    /// Silero VAD's tensors (`vad.*`), in their only shapes.
    pub vad: BTreeMap<String, Tensor>,
    pub provenance: Vec<Provenance>,
}

/// Builds the components of `shapes` from `seed`, without the silence
/// context (which the encoder computes, as for an imported Whisper).
pub fn random_model(shapes: RandomShapes, seed: u64) -> Result<RandomModel> {
    let (whisper_cfg, llm_cfg, projector_cfg, lora_cfg) =
        (shapes.whisper(), shapes.llm(), shapes.projector(), shapes.speech_lora());
    let mut filler = Filler { rng: StdRng::seed_from_u64(seed), std: shapes.weight_std(), tensors: BTreeMap::new() };
    filler.whisper(&whisper_cfg)?;
    let whisper_tensors = std::mem::take(&mut filler.tensors);
    filler.llm(&llm_cfg)?;
    let llm_tensors = std::mem::take(&mut filler.tensors);
    filler.projector(&projector_cfg)?;
    filler.speech_lora(&llm_cfg, &lora_cfg)?;
    let projector_tensors = std::mem::take(&mut filler.tensors);
    // Last, so that the other components are the same as before models had a VAD.
    for (name, shape) in TENSORS {
        filler.random(format!("{VAD}.{name}"), shape, 0.1)?;
    }
    let vad = std::mem::take(&mut filler.tensors);

    let whisper_text_tokens = match shapes {
        RandomShapes::Default => WHISPER_TEXT_TOKENS,
        RandomShapes::Tiny => whisper_cfg.vocab_size - 2 * WHISPER_SPECIALS.len(),
    };
    let whisper_tokenizer = SyntheticVocab {
        before: &[],
        text_tokens: whisper_text_tokens,
        after: &WHISPER_SPECIALS,
        filler: &|i| format!("<|{:.2}|>", i as f64 * 0.02),
        vocab_size: whisper_cfg.vocab_size,
    }
    .to_json();
    let llm_tokenizer = SyntheticVocab {
        before: &LLM_SPECIALS,
        text_tokens: llm_cfg.vocab_size - LLM_SPECIALS.len(),
        after: &[],
        filler: &|i| format!("<|unused{i}|>"),
        vocab_size: llm_cfg.vocab_size,
    }
    .to_json();
    let source = format!("random-shapes:{}:seed={seed}", shapes.name());
    let provenance = ["whisper", "llm", "projector", VAD]
        .map(|component| Provenance {
            component: component.into(),
            source: source.clone(),
            version: None,
            sha256: None,
            file: None,
            license: None,
            checkpoint: None,
        })
        .to_vec();
    Ok(RandomModel {
        whisper: ImportedWhisper { config: whisper_cfg, tokenizer: whisper_tokenizer, tensors: whisper_tensors },
        llm: ImportedLlm {
            config: llm_cfg,
            tokenizer: llm_tokenizer,
            chat_template: CHAT_TEMPLATE.into(),
            tensors: llm_tensors,
        },
        projector: ProjectorFile { config: projector_cfg, speech_lora: Some(lora_cfg), tensors: projector_tensors },
        vad,
        provenance,
    })
}
