//! Reads Silero VAD's weights (`silero_vad_16k.safetensors` from the silero-vad package) and names
//! them for the model file (`vad.*`). Their shapes are checked when the network claims them.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

use crate::model::file::VAD;

/// The tensors the 16 kHz network has, by their names in the package's file.
const NAMES: [&str; 15] = [
    "stft_conv.weight",
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "conv3.weight",
    "conv3.bias",
    "conv4.weight",
    "conv4.bias",
    "lstm_cell.weight_ih",
    "lstm_cell.weight_hh",
    "lstm_cell.bias_ih",
    "lstm_cell.bias_hh",
    "final_conv.weight",
    "final_conv.bias",
];

/// `src` is the safetensors file itself, or a directory holding `silero_vad_16k.safetensors`.
pub fn import(src: &Path) -> Result<BTreeMap<String, Tensor>> {
    let file = if src.is_dir() { src.join("silero_vad_16k.safetensors") } else { src.to_path_buf() };
    let tensors = candle_core::safetensors::load(&file, &Device::Cpu)
        .with_context(|| format!("{} is not a readable safetensors file", file.display()))?;
    let mut extra: Vec<&String> = tensors.keys().filter(|k| !NAMES.contains(&k.as_str())).collect();
    extra.sort();
    if let Some(name) = extra.first() {
        bail!("{} has tensor `{name}`, which Silero VAD v6 (16 kHz) does not", file.display());
    }
    NAMES
        .iter()
        .map(|name| {
            let t = tensors.get(*name).with_context(|| format!("{} has no tensor `{name}`: not Silero VAD v6 (16 kHz)", file.display()))?;
            Ok((format!("{VAD}.{name}"), t.to_dtype(DType::F32)?))
        })
        .collect()
}
