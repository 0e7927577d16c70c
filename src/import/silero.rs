//! Reads Silero VAD's weights (`silero_vad_16k.safetensors` from the silero-vad package) and names
//! them for the model file (`vad.*`), checking every name and shape.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

use crate::model::components::VAD;
use crate::model::silero::TENSORS;

/// `src` is the safetensors file itself, or a directory holding `silero_vad_16k.safetensors`.
pub fn import(src: &Path) -> Result<BTreeMap<String, Tensor>> {
    let file = if src.is_dir() { src.join("silero_vad_16k.safetensors") } else { src.to_path_buf() };
    let tensors = candle_core::safetensors::load(&file, &Device::Cpu)
        .with_context(|| format!("{} is not a readable safetensors file", file.display()))?;
    let mut extra: Vec<&String> = tensors.keys().filter(|k| !TENSORS.iter().any(|(name, _)| name == k)).collect();
    extra.sort();
    if let Some(name) = extra.first() {
        bail!("{} has tensor `{name}`, which Silero VAD v6 (16 kHz) does not", file.display());
    }
    TENSORS
        .iter()
        .map(|&(name, shape)| {
            let t = tensors
                .get(name)
                .with_context(|| format!("{} has no tensor `{name}`: not Silero VAD v6 (16 kHz)", file.display()))?;
            if t.dims() != shape {
                bail!(
                    "{}: tensor `{name}` has shape {:?}, Silero VAD v6 (16 kHz) has {shape:?}",
                    file.display(),
                    t.dims()
                );
            }
            Ok((format!("{VAD}.{name}"), t.to_dtype(DType::F32)?))
        })
        .collect()
}
