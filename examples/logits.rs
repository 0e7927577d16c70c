//! The LLM's logits for given token ids, written as a safetensors file, so
//! that other implementations (Hugging Face transformers with PEFT, llama.cpp)
//! can be compared with kioku on exactly the same input. Used by the
//! ecosystem tests in `tests/ecosystem`.
//!
//!   cargo run --example logits -- MODEL --tokens 1,2,3 --out logits.safetensors [--adapter DIR[:SCALE]]... [--dense]
//!
//! The file holds one tensor `logits` (positions, vocab) in f32. `--dense`
//! runs the dense f32 path (weights dequantized, plain tensor ops), the one
//! that other f32 implementations should match closely; without it the
//! packed kernels run, as `kioku ask` does.

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use kioku::model::components::LLM;
use kioku::model::file::MappedModel;
use kioku::model::llama::Llama;
use kioku::model::ops::Path as OpsPath;
use kioku::model::peft::{self, AdapterSpec};
use std::path::PathBuf;
use std::sync::Arc;

struct Args {
    model: PathBuf,
    tokens: Vec<u32>,
    out: PathBuf,
    adapters: Vec<AdapterSpec>,
    dense: bool,
}

fn parse_args() -> Result<Args> {
    let usage = "usage: logits MODEL --tokens 1,2,3 --out FILE [--adapter DIR[:SCALE]]... [--dense]";
    let (mut model, mut tokens, mut out, mut adapters, mut dense) = (None, None, None, Vec::new(), false);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--tokens" => {
                let list = value()?;
                tokens = Some(
                    list.split(',')
                        .map(|s| s.trim().parse::<u32>())
                        .collect::<Result<Vec<_>, _>>()
                        .with_context(|| format!("not a token id list: {list}"))?,
                )
            }
            "--out" => out = Some(PathBuf::from(value()?)),
            "--adapter" => adapters.push(value()?.parse()?),
            "--dense" => dense = true,
            _ if model.is_none() => model = Some(PathBuf::from(&a)),
            _ => anyhow::bail!("unexpected argument `{a}`\n{usage}"),
        }
    }
    Ok(Args { model: model.context(usage)?, tokens: tokens.context(usage)?, out: out.context(usage)?, adapters, dense })
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let device = Device::Cpu;
    let mapped = MappedModel::open(&args.model)?;
    let lora = Arc::new(peft::load_all(&args.adapters, &mapped.header)?);
    let dtype = if args.dense { DType::F32 } else { kioku::device::default_dtype(&device) };
    let weights = mapped.weights(&device, dtype)?.with_dense_only(args.dense).with_lora(lora.clone());
    let llm = Llama::load(&weights.pp(LLM), &mapped.header.llm)?;
    lora.ensure_all_attached()?;
    let ids = Tensor::new(args.tokens.as_slice(), &device)?.unsqueeze(0)?;
    let path = if args.dense { OpsPath::Trainable } else { OpsPath::Fast };
    let hidden = llm.forward_embeds(&llm.embed(&ids)?, None, path)?;
    let logits = llm.logits(&hidden)?.squeeze(0)?.to_dtype(DType::F32)?;
    logits.save_safetensors("logits", &args.out)?;
    eprintln!("wrote logits {:?} to {}", logits.dims(), args.out.display());
    Ok(())
}
