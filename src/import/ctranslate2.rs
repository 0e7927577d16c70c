//! Importer for CTranslate2 Whisper checkpoints (`model.bin`, binary version 6,
//! plus `tokenizer.json` and `config.json`). Format and layout: docs/DESIGN.md,
//! "The CTranslate2 Whisper checkpoint".

use super::ImportedWhisper;
use crate::model::components::{ASR_DECODER, ENCODER};
use crate::model::whisper::WhisperConfig;
use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One raw variable of a CTranslate2 model.
struct Variable {
    dims: Vec<usize>,
    dtype: u8,
    bytes: Vec<u8>,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(self.pos + n <= self.data.len(), "unexpected end of file at byte {} (truncated?)", self.pos);
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    /// A u16 length, then that many bytes ending in NUL.
    fn string(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        let bytes = self.take(n)?;
        Ok(String::from_utf8_lossy(bytes.strip_suffix(&[0]).unwrap_or(bytes)).into_owned())
    }
}

fn parse_model_bin(data: &[u8]) -> Result<HashMap<String, Variable>> {
    let mut r = Reader { data, pos: 0 };
    let version = r.u32()?;
    ensure!(version == 6, "CTranslate2 binary version {version} is not supported (expected 6)");
    let spec = r.string()?;
    ensure!(spec == "WhisperSpec", "this CTranslate2 model is a `{spec}`, not Whisper");
    let _revision = r.u32()?;
    let count = r.u32()?;
    let mut vars = HashMap::new();
    for _ in 0..count {
        let name = r.string()?;
        let rank = r.u8()? as usize;
        let dims = (0..rank).map(|_| Ok(r.u32()? as usize)).collect::<Result<Vec<_>>>()?;
        let dtype = r.u8()?;
        let nbytes = r.u32()? as usize;
        let bytes = r.take(nbytes)?.to_vec();
        vars.insert(name, Variable { dims, dtype, bytes });
    }
    // Aliases follow (e.g. the output projection = the token embeddings);
    // kioku ties those itself, so they are not read.
    Ok(vars)
}

impl Variable {
    fn tensor(&self, name: &str) -> Result<Tensor> {
        let dtype = match self.dtype {
            0 => DType::F32,
            4 => DType::F16,
            5 => DType::BF16,
            other => bail!("variable `{name}` has CTranslate2 dtype {other}; quantized models are not supported"),
        };
        let shape = if self.dims.is_empty() { vec![1] } else { self.dims.clone() };
        Ok(Tensor::from_raw_buffer(&self.bytes, dtype, &shape, &Device::Cpu)?.to_dtype(DType::F32)?)
    }

    /// Scalar integer flags such as `encoder/num_heads`.
    fn scalar(&self) -> Result<usize> {
        Ok(match (self.dtype, self.bytes.len()) {
            (1, 1) => self.bytes[0] as usize,
            (2, 2) => u16::from_le_bytes([self.bytes[0], self.bytes[1]]) as usize,
            (3, 4) => u32::from_le_bytes(self.bytes[..4].try_into()?) as usize,
            _ => bail!("expected an integer scalar"),
        })
    }
}

/// Reads `model.bin` (or `model.bin.part1`, `.part2`, … concatenated) from `dir`.
fn read_model_bin(dir: &Path) -> Result<Vec<u8>> {
    let single = dir.join("model.bin");
    if single.exists() {
        return std::fs::read(&single).with_context(|| format!("cannot read {}", single.display()));
    }
    let mut data = Vec::new();
    for part in 1.. {
        let path = dir.join(format!("model.bin.part{part}"));
        if !path.exists() {
            ensure!(part > 1, "{} has no model.bin", dir.display());
            break;
        }
        data.extend(std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?);
    }
    Ok(data)
}

pub fn import(dir: &Path) -> Result<ImportedWhisper> {
    let data = read_model_bin(dir)?;
    let vars =
        parse_model_bin(&data).with_context(|| format!("cannot parse CTranslate2 model in {}", dir.display()))?;
    let var = |name: &str| vars.get(name).with_context(|| format!("CTranslate2 model has no variable `{name}`"));
    let tensor = |name: &str| var(name)?.tensor(name);
    let count_layers = |prefix: &str| {
        (0..).take_while(|i| vars.contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))).count()
    };

    let embed = var("decoder/embeddings/weight")?;
    let conv1 = var("encoder/conv1/weight")?;
    let (vocab_size, d_model) = (embed.dims[0], embed.dims[1]);
    let ct2_config: serde_json::Value = read_json(&dir.join("config.json"))?;
    let ids = |key: &str| -> Vec<u32> {
        ct2_config[key]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32).collect())
            .unwrap_or_default()
    };
    let config = WhisperConfig {
        n_mels: conv1.dims[1],
        d_model,
        encoder_layers: count_layers("encoder"),
        encoder_heads: var("encoder/num_heads")?.scalar()?,
        decoder_layers: count_layers("decoder"),
        decoder_heads: var("decoder/num_heads")?.scalar()?,
        vocab_size,
        max_source_positions: var("encoder/position_encodings/encodings")?.dims[0],
        max_target_positions: var("decoder/position_encodings/encodings")?.dims[0],
        suppress_tokens: ids("suppress_ids"),
        begin_suppress_tokens: ids("suppress_ids_begin"),
    };

    let mut out = BTreeMap::new();
    let mut copy = |src: &str, dst: String| -> Result<()> {
        out.insert(dst, tensor(src)?);
        Ok(())
    };
    copy("encoder/position_encodings/encodings", format!("{ENCODER}.embed_positions.weight"))?;
    copy("decoder/position_encodings/encodings", format!("{ASR_DECODER}.embed_positions.weight"))?;
    copy("decoder/embeddings/weight", format!("{ASR_DECODER}.embed_tokens.weight"))?;
    for conv in ["conv1", "conv2"] {
        copy(&format!("encoder/{conv}/weight"), format!("{ENCODER}.{conv}.weight"))?;
        copy(&format!("encoder/{conv}/bias"), format!("{ENCODER}.{conv}.bias"))?;
    }
    for (side, prefix, layers) in
        [("encoder", ENCODER, config.encoder_layers), ("decoder", ASR_DECODER, config.decoder_layers)]
    {
        let mut norms = vec![(format!("{side}/layer_norm"), format!("{prefix}.layer_norm"))];
        let mut linears = Vec::new();
        for i in 0..layers {
            let (s, d) = (format!("{side}/layer_{i}"), format!("{prefix}.layers.{i}"));
            norms.push((format!("{s}/self_attention/layer_norm"), format!("{d}.self_attn_layer_norm")));
            norms.push((format!("{s}/ffn/layer_norm"), format!("{d}.final_layer_norm")));
            linears.push((format!("{s}/ffn/linear_0"), format!("{d}.fc1")));
            linears.push((format!("{s}/ffn/linear_1"), format!("{d}.fc2")));
            linears.push((format!("{s}/self_attention/linear_1"), format!("{d}.self_attn.out_proj")));
            // Self-attention fuses q|k|v row-wise.
            let names = ["q_proj", "k_proj", "v_proj"].map(|n| format!("{d}.self_attn.{n}"));
            split_fused(
                &mut out,
                &tensor(&format!("{s}/self_attention/linear_0/weight"))?,
                &tensor(&format!("{s}/self_attention/linear_0/bias"))?,
                &names,
            )?;
            if side == "decoder" {
                norms.push((format!("{s}/attention/layer_norm"), format!("{d}.encoder_attn_layer_norm")));
                linears.push((format!("{s}/attention/linear_0"), format!("{d}.encoder_attn.q_proj")));
                linears.push((format!("{s}/attention/linear_2"), format!("{d}.encoder_attn.out_proj")));
                // Cross-attention fuses k|v.
                let names = ["k_proj", "v_proj"].map(|n| format!("{d}.encoder_attn.{n}"));
                split_fused(
                    &mut out,
                    &tensor(&format!("{s}/attention/linear_1/weight"))?,
                    &tensor(&format!("{s}/attention/linear_1/bias"))?,
                    &names,
                )?;
            }
        }
        for (src, dst) in norms {
            out.insert(format!("{dst}.weight"), tensor(&format!("{src}/gamma"))?);
            out.insert(format!("{dst}.bias"), tensor(&format!("{src}/beta"))?);
        }
        for (src, dst) in linears {
            out.insert(format!("{dst}.weight"), tensor(&format!("{src}/weight"))?);
            out.insert(format!("{dst}.bias"), tensor(&format!("{src}/bias"))?);
        }
    }
    Ok(ImportedWhisper { config, tokenizer: read_text(&dir.join("tokenizer.json"))?, tensors: out })
}

/// Splits a row-fused projection into equal parts named `names`. Key
/// projections get no bias: Whisper has none (CTranslate2 stores zeros).
fn split_fused(out: &mut BTreeMap<String, Tensor>, w: &Tensor, b: &Tensor, names: &[String]) -> Result<()> {
    let rows = w.dim(0)? / names.len();
    for (k, name) in names.iter().enumerate() {
        out.insert(format!("{name}.weight"), w.narrow(0, k * rows, rows)?);
        if !name.ends_with("k_proj") {
            out.insert(format!("{name}.bias"), b.narrow(0, k * rows, rows)?);
        }
    }
    Ok(())
}

pub(super) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub(super) fn read_json(path: &Path) -> Result<serde_json::Value> {
    serde_json::from_str(&read_text(path)?).with_context(|| format!("{} is not valid JSON", path.display()))
}
