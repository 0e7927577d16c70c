//! Training state on disk: named tensors plus string metadata in one
//! safetensors file, replaced atomically so a killed run resumes from the last
//! complete checkpoint.

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Default)]
pub struct Checkpoint {
    pub tensors: BTreeMap<String, Tensor>,
    pub metadata: HashMap<String, String>,
}

impl Checkpoint {
    /// Writes the checkpoint atomically (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .tensors
            .iter()
            .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
            .collect::<Result<_>>()?;
        crate::atomic::replace_with(path, |tmp| {
            safetensors::serialize_to_file(
                tensors.iter().map(|(n, t)| (n.as_str(), t)),
                Some(self.metadata.clone()),
                tmp,
            )?;
            Ok(())
        })
    }

    /// Reads a checkpoint written by [`Checkpoint::save`], on the CPU.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
            anyhow::anyhow!("{} is not a valid checkpoint ({e}); delete it to start over", path.display())
        })?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?.into_iter().collect();
        Ok(Self { tensors, metadata })
    }

    /// A metadata entry parsed as JSON, with an error naming the key.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        let text = self.metadata.get(key).with_context(|| format!("the checkpoint has no `{key}` entry"))?;
        serde_json::from_str(text).with_context(|| format!("the checkpoint's `{key}` entry is invalid"))
    }

    pub fn set<T: serde::Serialize>(&mut self, key: &str, value: &T) -> Result<()> {
        self.metadata.insert(key.to_string(), serde_json::to_string(value)?);
        Ok(())
    }
}
