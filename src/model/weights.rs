//! Named tensors waiting to be claimed by model constructors. Every claim checks
//! the shape, so a model file that does not fit its config fails with the tensor's
//! name instead of a matmul error deep inside a forward pass.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Shape, Tensor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

#[derive(Clone)]
pub struct Weights {
    tensors: Rc<RefCell<HashMap<String, Tensor>>>,
    prefix: String,
    dtype: DType,
    device: Device,
}

impl Weights {
    /// Tensors are moved to `device` and cast to `dtype` as they are claimed.
    pub fn new(tensors: HashMap<String, Tensor>, dtype: DType, device: &Device) -> Self {
        Self { tensors: Rc::new(RefCell::new(tensors)), prefix: String::new(), dtype, device: device.clone() }
    }

    /// A view whose names are relative to `prefix` (joined with a dot).
    pub fn pp(&self, prefix: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() { prefix.to_string() } else { format!("{}.{prefix}", self.prefix) };
        Self { prefix, ..self.clone() }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.borrow().contains_key(&self.full_name(name))
    }

    /// Removes the tensor `name` and checks its shape.
    pub fn take<S: Into<Shape>>(&self, name: &str, shape: S) -> Result<Tensor> {
        let full = self.full_name(name);
        let tensor = self
            .tensors
            .borrow_mut()
            .remove(&full)
            .with_context(|| format!("the model file has no tensor `{full}`"))?;
        let expected: Shape = shape.into();
        if tensor.shape() != &expected {
            bail!("tensor `{full}` has shape {:?}, expected {:?}", tensor.dims(), expected.dims());
        }
        Ok(tensor.to_device(&self.device)?.to_dtype(self.dtype)?)
    }

    /// Like [`Weights::take`] for tensors that may be absent (optional biases).
    pub fn take_optional<S: Into<Shape>>(&self, name: &str, shape: S) -> Result<Option<Tensor>> {
        if self.contains(name) { self.take(name, shape).map(Some) } else { Ok(None) }
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
