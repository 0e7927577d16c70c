//! Named tensors waiting to be claimed by model constructors. Every claim checks
//! the shape, so a model file that does not fit its config fails with the tensor's
//! name instead of a matmul error deep inside a forward pass.

use super::lora::{LoraLayer, LoraSet};
use super::mapped::{Embedding, MappedTensor};
use super::packed::{Format, PackedMatrix};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Shape, Tensor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// A stored tensor: dense, or 8-bit blocks packed for fast CPU decoding.
pub(crate) enum Stored {
    Dense(Tensor),
    Quantized(PackedMatrix),
    /// Dense, still in the mapped model file: copied when claimed, so a
    /// tensor nobody claims is never read.
    Mapped(MappedTensor),
}

/// A linear layer's weight, as the layer holds it.
pub(crate) enum Claimed {
    Dense(Tensor),
    /// Multiplied as stored, by [`super::packed`]'s CPU kernels.
    Packed(PackedMatrix),
}

impl Stored {
    /// As a dense tensor on `device`, in `dtype`.
    fn dense(self, device: &Device, dtype: DType) -> Result<Tensor> {
        Ok(match self {
            Stored::Dense(t) => cast(&t.to_device(device)?, dtype)?,
            Stored::Mapped(m) if m.dtype() == DType::F16 && dtype == DType::F32 && device.is_cpu() => {
                m.load_f16_as_f32()?
            }
            Stored::Mapped(m) => cast(&m.load(device)?, dtype)?,
            Stored::Quantized(q) => q.dequantize(device)?.to_dtype(dtype)?,
        })
    }

    fn shape(&self) -> Shape {
        match self {
            Stored::Dense(t) => t.shape().clone(),
            Stored::Quantized(q) => Shape::from(q.shape()),
            Stored::Mapped(m) => m.shape().clone(),
        }
    }
}

/// Tensors claimed from [`Weights`] whose copies are made only when wanted
/// ([`Weights::claim_all`]): mapped ones stay in the file until then.
pub struct ClaimedLater {
    tensors: Vec<(String, Stored)>,
    device: Device,
}

impl std::fmt::Debug for ClaimedLater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tensors.iter().map(|(name, _)| name)).finish()
    }
}

impl ClaimedLater {
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Each tensor, named as claimed, still in the mapped file in `dtype`; `Err(self)` unless
    /// all are and the weights' device is the CPU, which reads them in place.
    pub fn into_mapped(self, dtype: DType) -> std::result::Result<Vec<(String, MappedTensor)>, Self> {
        let in_place = |stored: &Stored| matches!(stored, Stored::Mapped(m) if m.dtype() == dtype);
        if !self.device.is_cpu() || !self.tensors.iter().all(|(_, stored)| in_place(stored)) {
            return Err(self);
        }
        let mapped = self.tensors.into_iter().filter_map(|(name, stored)| match stored {
            Stored::Mapped(m) => Some((name, m)),
            _ => None,
        });
        Ok(mapped.collect())
    }

    /// Each tensor, named as claimed, as dense f32 on the weights' device.
    pub fn into_f32(self) -> Result<Vec<(String, Tensor)>> {
        let device = self.device;
        self.tensors.into_iter().map(|(name, stored)| Ok((name, stored.dense(&device, DType::F32)?))).collect()
    }
}

#[derive(Clone)]
pub struct Weights {
    tensors: Rc<RefCell<HashMap<String, Stored>>>,
    prefix: String,
    dtype: DType,
    device: Device,
    dense_only: bool,
    lora: Option<Arc<LoraSet>>,
}

impl Weights {
    /// Tensors are moved to `device` and cast to `dtype` as they are claimed.
    pub fn new(tensors: HashMap<String, Tensor>, dtype: DType, device: &Device) -> Self {
        Self::from_stored(tensors.into_iter().map(|(k, v)| (k, Stored::Dense(v))).collect(), dtype, device)
    }

    pub(crate) fn from_stored(tensors: HashMap<String, Stored>, dtype: DType, device: &Device) -> Self {
        Self {
            tensors: Rc::new(RefCell::new(tensors)),
            prefix: String::new(),
            dtype,
            device: device.clone(),
            dense_only: false,
            lora: None,
        }
    }

    /// A view whose names are relative to `prefix` (joined with a dot).
    pub fn pp(&self, prefix: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() { prefix.to_string() } else { format!("{}.{prefix}", self.prefix) };
        Self { prefix, ..self.clone() }
    }

    /// Makes every claimed tensor dense, as training needs: quantized matmuls
    /// pass no gradient.
    pub fn dense_only(&self) -> bool {
        self.dense_only
    }

    pub fn with_dense_only(mut self, dense_only: bool) -> Self {
        self.dense_only = dense_only;
        self
    }

    /// Linear layers loaded from these weights take their adapters from `lora`.
    pub fn with_lora(mut self, lora: Arc<LoraSet>) -> Self {
        self.lora = Some(lora);
        self
    }

    /// The module these weights belong to: the prefix, e.g. `llm.layers.3.self_attn.q_proj`.
    pub fn module_name(&self) -> &str {
        &self.prefix
    }

    /// The adapters of the linear layer (out, in) at this prefix.
    pub(crate) fn lora_layers(&self, in_dim: usize, out_dim: usize) -> Result<Vec<LoraLayer>> {
        match &self.lora {
            Some(set) => set.attach(self.module_name(), in_dim, out_dim, &self.device, self.dtype),
            None => Ok(Vec::new()),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.borrow().contains_key(&self.full_name(name))
    }

    /// Removes the tensor `name` as stored and checks its shape.
    fn remove<S: Into<Shape>>(&self, name: &str, shape: S) -> Result<Stored> {
        let full = self.full_name(name);
        let stored = self
            .tensors
            .borrow_mut()
            .remove(&full)
            .with_context(|| format!("the model file has no tensor `{full}`"))?;
        check_shape(&full, &stored, shape)?;
        Ok(stored)
    }

    /// `stored` as a dense tensor on this device, in this dtype.
    fn dense(&self, stored: Stored) -> Result<Tensor> {
        stored.dense(&self.device, self.dtype)
    }

    /// Removes a tensor that is not used (a stored copy of a tied head when
    /// training), after checking its shape.
    pub fn discard<S: Into<Shape>>(&self, name: &str, shape: S) -> Result<()> {
        self.remove(name, shape).map(drop)
    }

    /// A linear layer's weight (out, in). On the CPU, unless the weights are
    /// for training ([`Weights::dense_only`]), Q8_0 blocks and f16 matrices
    /// stay in the mapped file and are multiplied from there; everything else
    /// is dense.
    pub(crate) fn take_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Claimed> {
        let packs = self.device.is_cpu() && !self.dense_only;
        Ok(match self.remove(name, (rows, cols))? {
            Stored::Mapped(m) if packs && self.dtype == DType::F32 && m.dtype() == DType::F16 => {
                Claimed::Packed(PackedMatrix::mapped(Format::F16, m.bytes().clone(), rows, cols)?)
            }
            Stored::Quantized(q) if packs => Claimed::Packed(q),
            other => Claimed::Dense(self.dense(other)?),
        })
    }

    /// An embedding table that only serves row lookups: on the CPU it stays in
    /// the mapped file (only the rows looked up are read); elsewhere it is
    /// loaded in its stored dtype.
    pub fn take_table<S: Into<Shape>>(&self, name: &str, shape: S) -> Result<Embedding> {
        Ok(match self.remove(name, shape)? {
            Stored::Mapped(m) if self.device.is_cpu() && matches!(m.dtype(), DType::F16 | DType::F32) => {
                Embedding::Mapped(m)
            }
            Stored::Mapped(m) => Embedding::Loaded(m.load(&self.device)?),
            Stored::Dense(t) => Embedding::Loaded(t.to_device(&self.device)?),
            Stored::Quantized(q) => Embedding::Loaded(q.dequantize(&self.device)?.to_dtype(self.dtype)?),
        })
    }

    /// Removes the tensor `name` as a dense tensor (dequantizing if need be)
    /// and checks its shape.
    pub fn take<S: Into<Shape>>(&self, name: &str, shape: S) -> Result<Tensor> {
        self.dense(self.remove(name, shape)?)
    }

    /// Like [`Weights::take`] for tensors that may be absent (optional biases).
    pub fn take_optional<S: Into<Shape>>(&self, name: &str, shape: S) -> Result<Option<Tensor>> {
        if self.contains(name) {
            self.take(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Removes every tensor under this prefix as dense f32, named relative to
    /// it (for adapters stored in the model file, whose modules are not known up front).
    pub fn take_all(&self) -> Result<Vec<(String, Tensor)>> {
        self.claim_all().into_f32()
    }

    /// Removes every tensor under this prefix as stored, to be made dense later
    /// ([`ClaimedLater::into_f32`]), named relative to the prefix.
    pub fn claim_all(&self) -> ClaimedLater {
        let start = format!("{}.", self.prefix);
        let mut tensors = self.tensors.borrow_mut();
        let names: Vec<String> = tensors.keys().filter(|k| k.starts_with(&start)).cloned().collect();
        let claimed = names
            .into_iter()
            .filter_map(|full| tensors.remove(&full).map(|stored| (full[start.len()..].to_string(), stored)))
            .collect();
        ClaimedLater { tensors: claimed, device: self.device.clone() }
    }

    /// Fails if any tensor under this prefix was never claimed: a file with
    /// extra tensors was packed for a different architecture.
    pub fn ensure_all_claimed(&self) -> Result<()> {
        let tensors = self.tensors.borrow();
        let mut left: Vec<&String> = tensors.keys().filter(|k| k.starts_with(&self.prefix)).collect();
        left.sort();
        if let Some(first) = left.first() {
            bail!("the model file has {} unexpected tensor(s), e.g. `{first}`", left.len());
        }
        Ok(())
    }
}

fn check_shape(name: &str, stored: &Stored, expected: impl Into<Shape>) -> Result<()> {
    let (actual, expected) = (stored.shape(), expected.into());
    if actual != expected {
        bail!("tensor `{name}` has shape {:?}, expected {:?}", actual.dims(), expected.dims());
    }
    Ok(())
}

/// `to_dtype`, with a vectorised path for the common f16 -> f32 load cast
/// (candle converts element by element, which dominated load time).
fn cast(t: &Tensor, dtype: DType) -> Result<Tensor> {
    if t.dtype() == DType::F16 && dtype == DType::F32 && t.device().is_cpu() {
        use half::slice::HalfFloatSliceExt;
        let src = t.flatten_all()?.to_vec1::<half::f16>()?;
        let mut dst = vec![0f32; src.len()];
        src.convert_to_f32_slice(&mut dst);
        return Ok(Tensor::from_vec(dst, t.shape(), t.device())?);
    }
    Ok(t.to_dtype(dtype)?)
}
