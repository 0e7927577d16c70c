//! The LLM part of an adapter as a GGUF LoRA, the file llama.cpp's `--lora`
//! and `--lora-scaled` read (as its convert_lora_to_gguf.py writes it):
//! metadata `general.type = adapter`, `adapter.type = lora`,
//! `adapter.lora.alpha`, and per module `<gguf tensor>.lora_a` (r, in) and
//! `.lora_b` (out, r) in llama.cpp's tensor names. llama.cpp scales B·A by
//! `s·α/r` as kioku does, so `--lora-scaled FILE:s` matches `--adapter DIR:s`.
//!
//! llama.cpp lays out the query and key rows interleaved per head for its
//! rope, kioku in halves (Hugging Face's order), so B of q_proj and k_proj
//! gets llama.cpp's row permutation; A acts on the input and stays as is.

use super::components::LLM;
use super::gguf_layout::{architecture, gguf_name, permute, rope_heads};
use super::llama::LlamaConfig;
use super::lora::Adapter;
use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::io::Write;
use std::path::Path;

/// What an export wrote and left out, by kioku module name.
#[derive(Debug)]
pub struct GgufLoraExport {
    pub exported: Vec<String>,
    /// Modules outside the LLM (Whisper, projector), which llama.cpp does not run.
    pub skipped: Vec<String>,
}

/// Writes the LLM modules of `adapter`, trained on a model whose LLM is
/// `llm`, to `out` as a GGUF LoRA (atomically: the old file or the new one).
pub fn export(adapter: &Adapter, llm: &LlamaConfig, out: &Path) -> Result<GgufLoraExport> {
    let mut tensors = Vec::new();
    let (mut exported, mut skipped) = (Vec::new(), Vec::new());
    for (module, pair) in &adapter.modules {
        let Some(hf) = module.strip_prefix(LLM).and_then(|m| m.strip_prefix('.')) else {
            skipped.push(module.clone());
            continue;
        };
        let name = gguf_tensor_name(hf, llm).with_context(|| format!("cannot export adapter module `{module}`"))?;
        let b = match rope_heads(&name, llm) {
            Some(heads) => permute(&pair.b, heads)?,
            None => pair.b.clone(),
        };
        tensors.push((format!("{name}.lora_a"), f32_tensor(&pair.a)?));
        tensors.push((format!("{name}.lora_b"), f32_tensor(&b)?));
        exported.push(module.clone());
    }
    if exported.is_empty() {
        bail!(
            "the adapter changes no LLM module (only {}), so there is nothing for llama.cpp to apply",
            skipped.join(", ")
        );
    }
    let metadata = [
        ("general.architecture", Value::String(architecture(llm).into())),
        ("general.type", Value::String("adapter".into())),
        ("adapter.type", Value::String("lora".into())),
        ("adapter.lora.alpha", Value::F32(adapter.config.alpha as f32)),
    ];
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    crate::atomic::replace_with(out, |tmp| {
        let mut file = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        gguf_file::write(&mut file, &metadata, &tensors)?;
        file.flush()?;
        Ok(())
    })?;
    Ok(GgufLoraExport { exported, skipped })
}

/// llama.cpp's weight name for the LLM module `hf` (e.g. `layers.3.self_attn.q_proj`).
fn gguf_tensor_name(hf: &str, llm: &LlamaConfig) -> Result<String> {
    // A tied model has no `output.weight` in llama.cpp, so nothing to attach a LoRA to.
    if hf == "lm_head" && llm.tie_word_embeddings {
        bail!("the model ties lm_head to the token embeddings, and llama.cpp applies no LoRA to a tied lm_head");
    }
    gguf_name(&format!("{hf}.weight")).context("llama.cpp has no LoRA-capable tensor of that name")
}

/// GGUF LoRAs hold their factors in f32 (exact) or f16; kioku's are f32.
fn f32_tensor(t: &Tensor) -> Result<QTensor> {
    let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.contiguous()?;
    Ok(QTensor::quantize(&t, GgmlDType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lora::{LoraConfig, LoraPair};
    use candle_core::quantized::gguf_file::Content;
    use std::collections::BTreeMap;

    const RANK: usize = 2;

    fn config() -> LlamaConfig {
        LlamaConfig {
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            head_dim: 4,
            vocab_size: 32,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            rope_freq_factors: None,
            max_position_embeddings: 64,
            tie_word_embeddings: true,
            qkv_bias: false,
            bos_token_id: None,
            eos_token_ids: vec![2],
        }
    }

    /// Factors with distinct entries, so any misplaced row shows.
    fn pair(inputs: usize, outputs: usize, offset: f32) -> LoraPair {
        let values = |n: usize| Tensor::arange(offset, offset + n as f32, &Device::Cpu).unwrap();
        LoraPair {
            a: values(RANK * inputs).reshape((RANK, inputs)).unwrap(),
            b: values(outputs * RANK).affine(1.0, 1000.0).unwrap().reshape((outputs, RANK)).unwrap(),
        }
    }

    fn adapter(modules: &[(&str, LoraPair)]) -> Adapter {
        let modules: BTreeMap<_, _> = modules.iter().map(|(m, p)| (m.to_string(), p.clone())).collect();
        Adapter { config: LoraConfig { rank: RANK, alpha: 16.0, dropout: 0.0 }, modules, audio_turns_only: false }
    }

    fn read_back(path: &Path) -> (Content, BTreeMap<String, Vec<Vec<f32>>>) {
        let mut file = std::fs::File::open(path).unwrap();
        let content = Content::read(&mut file).unwrap();
        let tensors = content
            .tensor_infos
            .keys()
            .map(|name| {
                let t = content.tensor(&mut file, name, &Device::Cpu).unwrap().dequantize(&Device::Cpu).unwrap();
                (name.clone(), t.to_vec2::<f32>().unwrap())
            })
            .collect();
        (content, tensors)
    }

    #[test]
    fn q_and_k_b_rows_take_llama_cpp_order_and_everything_else_is_copied() {
        let llm = config();
        let (q, k, v) = (pair(8, 8, 0.0), pair(8, 4, 100.0), pair(8, 4, 200.0));
        let adapter = adapter(&[
            ("llm.layers.0.self_attn.q_proj", q.clone()),
            ("llm.layers.0.self_attn.k_proj", k.clone()),
            ("llm.layers.0.self_attn.v_proj", v.clone()),
            ("encoder.layers.0.self_attn.q_proj", pair(8, 8, 300.0)),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("adapter.gguf");
        let summary = export(&adapter, &llm, &out).unwrap();
        assert_eq!(summary.skipped, ["encoder.layers.0.self_attn.q_proj"]);
        assert_eq!(summary.exported.len(), 3);

        let (content, tensors) = read_back(&out);
        let text = |key: &str| content.metadata[key].to_string().unwrap().clone();
        assert_eq!(
            (text("general.type"), text("adapter.type"), text("general.architecture")),
            ("adapter".into(), "lora".into(), "llama".into())
        );
        assert_eq!(content.metadata["adapter.lora.alpha"].to_f32().unwrap(), 16.0);
        // candle reverses GGUF's dimension order on both ends, so llama.cpp sees
        // lora_a as ne = [in, r] and lora_b as ne = [r, out], the shapes it checks.
        assert_eq!(content.tensor_infos["blk.0.attn_k.weight.lora_a"].shape.dims(), [RANK, 8]);
        assert_eq!(content.tensor_infos["blk.0.attn_k.weight.lora_b"].shape.dims(), [4, RANK]);
        assert_eq!(tensors.len(), 6);

        let rows = |t: &Tensor| t.to_vec2::<f32>().unwrap();
        for (name, p, heads) in [("attn_q", &q, llm.num_attention_heads), ("attn_k", &k, llm.num_key_value_heads)] {
            assert_eq!(tensors[&format!("blk.0.{name}.weight.lora_a")], rows(&p.a));
            let b = &tensors[&format!("blk.0.{name}.weight.lora_b")];
            assert_eq!(*b, rows(&permute(&p.b, heads).unwrap()));
            assert_ne!(*b, rows(&p.b), "{name}: the permutation must move rows");
        }
        assert_eq!(tensors["blk.0.attn_v.weight.lora_a"], rows(&v.a));
        assert_eq!(tensors["blk.0.attn_v.weight.lora_b"], rows(&v.b));
    }

    /// llama.cpp's converter keeps Qwen2's q/k rows in Hugging Face's order.
    #[test]
    fn a_qwen2_adapter_keeps_its_rows_and_names_its_architecture() {
        let llm = LlamaConfig { qkv_bias: true, ..config() };
        let q = pair(8, 8, 0.0);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("adapter.gguf");
        export(&adapter(&[("llm.layers.0.self_attn.q_proj", q.clone())]), &llm, &out).unwrap();
        let (content, tensors) = read_back(&out);
        assert_eq!(content.metadata["general.architecture"].to_string().unwrap(), "qwen2");
        assert_eq!(tensors["blk.0.attn_q.weight.lora_b"], q.b.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn an_adapter_without_llm_modules_or_with_a_tied_lm_head_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("adapter.gguf");
        let whisper_only = adapter(&[("encoder.layers.0.self_attn.q_proj", pair(8, 8, 0.0))]);
        let err = export(&whisper_only, &config(), &out).unwrap_err().to_string();
        assert!(err.contains("no LLM module"), "{err}");
        let head = adapter(&[("llm.lm_head", pair(8, 32, 0.0))]);
        let err = format!("{:#}", export(&head, &config(), &out).unwrap_err());
        assert!(err.contains("ties lm_head"), "{err}");
        assert!(!out.exists());
    }
}
