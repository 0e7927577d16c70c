//! Adapters switched on for one call: the model's speech adapter on audio
//! turns, and a server's per-request adapters at per-request scales.
//!
//! A [`ScopedAdapter`] is prepared once against a loaded model (checked
//! against its linear layers, factors moved to its device) and shared. It acts
//! only inside an [`AdapterScope`]: a guard that lists, for the thread that
//! holds it, which scoped adapters apply and at what scale. Every
//! [`Linear`](super::linear::Linear) asks the current thread's scope at each
//! forward. A model's forward runs on its caller's thread (candle's kernels may
//! fan out to worker threads, but the layers are walked on the caller's), so
//! two requests on two threads never see each other's adapters, and the
//! loaded weights stay shared and immutable. The shared flag this replaces
//! let a spoken request switch the speech adapter on under a typed one.

use super::lora::{is_llm, Adapter, LinearShapes, LoraLayer};
use anyhow::{anyhow, bail, Result};
use candle_core::{DType, Device};
use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, LazyLock};

/// An adapter ready to be switched on per call, at any scale.
#[derive(Debug)]
pub struct ScopedAdapter {
    label: String,
    /// Per module: the factors with `α/r` folded into B (scale 1).
    layers: HashMap<String, LoraLayer>,
}

impl ScopedAdapter {
    /// Checks `adapter` against the model's linear layers and moves its
    /// factors to `device` in `dtype`. `label` names it in errors and listings.
    pub fn prepare(
        adapter: &Adapter,
        label: impl Into<String>,
        shapes: &LinearShapes,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let label = label.into();
        let rank = adapter.config.rank;
        let mut layers = HashMap::new();
        for (module, pair) in &adapter.modules {
            let Some(&(in_dim, out_dim)) = shapes.get(module) else {
                bail!("adapter {label} adapts `{module}`, which is not a linear layer of this model");
            };
            if pair.a.dims() != [rank, in_dim] || pair.b.dims() != [out_dim, rank] {
                bail!(
                    "adapter {label}: `{module}` has lora_A {:?} and lora_B {:?}, but this model's `{module}` needs [{rank}, {in_dim}] and [{out_dim}, {rank}]",
                    pair.a.dims(),
                    pair.b.dims()
                );
            }
            let layer = LoraLayer::fixed(pair, adapter.config.scaling(), device, dtype)?;
            layers.insert(module.clone(), layer.gated(adapter.audio_turns_only && is_llm(module)));
        }
        Ok(Self { label, layers })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the adapter changes any module whose name starts with `prefix`
    /// (e.g. `llm.`) now: then state cached from an adapter-free run of that
    /// component does not hold inside a scope that has it. A gated adapter
    /// changes the LLM only inside an audio turn.
    pub fn touches(&self, prefix: &str) -> bool {
        self.layers.iter().any(|(m, layer)| m.starts_with(prefix) && layer.acts_now())
    }

    pub(crate) fn layer(&self, module: &str) -> Option<&LoraLayer> {
        self.layers.get(module)
    }
}

/// A scoped adapter and the scale it applies at.
pub type ActiveAdapter = (Arc<ScopedAdapter>, f64);

/// How a [`DeferredAdapter`] is prepared.
type Prepare = Box<dyn FnOnce() -> Result<ActiveAdapter, String> + Send>;

/// An adapter prepared the first time it is switched on. The model's speech adapter acts on
/// audio turns only: typed questions and cascade answers never need it, and leaving it in the
/// file keeps its f32 factors (19.5 MB, from 9.8 MB of f16) out of memory and its conversion
/// out of the load (about 15 ms of CPU on the default model, release build).
pub struct DeferredAdapter(LazyLock<Result<ActiveAdapter, String>, Prepare>);

impl DeferredAdapter {
    pub fn new(prepare: impl FnOnce() -> Result<ActiveAdapter> + Send + 'static) -> Self {
        Self(LazyLock::new(Box::new(|| prepare().map_err(|e| format!("{e:#}")))))
    }

    /// The adapter, prepared now if this is the first call; a failure is reported at every call.
    pub fn get(&self) -> Result<&ActiveAdapter> {
        LazyLock::force(&self.0).as_ref().map_err(|e| anyhow!("{e}"))
    }
}

impl std::fmt::Debug for DeferredAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeferredAdapter")
    }
}

thread_local! {
    static ACTIVE: RefCell<Vec<ActiveAdapter>> = const { RefCell::new(Vec::new()) };
}

/// While alive, the listed adapters apply to every forward on this thread, on
/// top of those of enclosing scopes. Dropping it (also on an early error
/// return) restores the enclosing scope. Not `Send`: a scope belongs to its thread.
pub struct AdapterScope {
    restore_len: usize,
    _not_send: PhantomData<*const ()>,
}

impl AdapterScope {
    pub fn enter(adapters: &[ActiveAdapter]) -> Self {
        let restore_len = ACTIVE.with(|active| {
            let mut active = active.borrow_mut();
            let len = active.len();
            active.extend(adapters.iter().filter(|(_, scale)| *scale != 0.0).cloned());
            len
        });
        Self { restore_len, _not_send: PhantomData }
    }
}

impl Drop for AdapterScope {
    fn drop(&mut self) {
        ACTIVE.with(|active| active.borrow_mut().truncate(self.restore_len));
    }
}

/// The adapters active on this thread, with their scales (no allocation when none is).
pub(crate) fn active() -> Vec<ActiveAdapter> {
    ACTIVE.with(|active| active.borrow().clone())
}

/// Whether an adapter active on this thread touches modules under `prefix`.
pub fn active_touches(prefix: &str) -> bool {
    ACTIVE.with(|active| active.borrow().iter().any(|(adapter, _)| adapter.touches(prefix)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lora::{LoraConfig, LoraPair, LoraSet};
    use crate::model::{linear::Linear, weights::Weights};
    use candle_core::{Module, Tensor};

    /// A 4 -> 2 linear layer `m` with zero weight, and a rank-1 adapter of ones on it.
    fn zero_layer_and_adapter() -> (Linear, Arc<ScopedAdapter>) {
        let dev = Device::Cpu;
        let set = Arc::new(LoraSet::default());
        let tensors = [("m.weight".to_string(), Tensor::zeros((2, 4), DType::F32, &dev).unwrap())].into();
        let linear =
            Linear::load(&Weights::new(tensors, DType::F32, &dev).with_lora(set.clone()).pp("m"), 4, 2, false).unwrap();
        let pair = LoraPair {
            a: Tensor::ones((1, 4), DType::F32, &dev).unwrap(),
            b: Tensor::ones((2, 1), DType::F32, &dev).unwrap(),
        };
        let adapter = Adapter {
            config: LoraConfig { rank: 1, alpha: 1.0, dropout: 0.0 },
            modules: [("m".to_string(), pair)].into(),
            audio_turns_only: false,
        };
        (linear, Arc::new(ScopedAdapter::prepare(&adapter, "test", &set.linear_shapes(), &dev, DType::F32).unwrap()))
    }

    fn out(linear: &Linear) -> Vec<Vec<f32>> {
        linear.forward(&Tensor::ones((1, 4), DType::F32, &Device::Cpu).unwrap()).unwrap().to_vec2::<f32>().unwrap()
    }

    #[test]
    fn a_scoped_adapter_acts_only_inside_its_scope_and_at_its_scale() {
        let (linear, adapter) = zero_layer_and_adapter();
        assert_eq!(out(&linear), [[0.0, 0.0]], "outside a scope: the base layer alone");
        {
            let _scope = AdapterScope::enter(&[(adapter.clone(), 1.0)]);
            assert_eq!(out(&linear), [[4.0, 4.0]], "W·x + B·A·x");
            {
                let _inner = AdapterScope::enter(&[(adapter.clone(), 0.5)]);
                assert_eq!(out(&linear), [[6.0, 6.0]], "nested scopes add up");
            }
            assert_eq!(out(&linear), [[4.0, 4.0]], "the inner scope is gone");
        }
        assert_eq!(out(&linear), [[0.0, 0.0]], "the scope ends when its guard drops");
        assert!(adapter.touches("m") && !adapter.touches("llm."));
    }

    /// Loaded gated adapters and scoped ones alike act on the LLM inside audio turns only.
    #[test]
    fn a_gated_adapter_acts_on_the_llm_inside_audio_turns_only() {
        use crate::model::audio_turn::AudioTurn;
        let dev = Device::Cpu;
        let pair = LoraPair {
            a: Tensor::ones((1, 4), DType::F32, &dev).unwrap(),
            b: Tensor::ones((2, 1), DType::F32, &dev).unwrap(),
        };
        let config = LoraConfig { rank: 1, alpha: 1.0, dropout: 0.0 };
        let gated = Adapter { config, modules: [("llm.m".to_string(), pair)].into(), audio_turns_only: true };
        let layer = |set: Arc<LoraSet>| {
            let tensors = [("llm.m.weight".to_string(), Tensor::zeros((2, 4), DType::F32, &dev).unwrap())].into();
            let weights = Weights::new(tensors, DType::F32, &dev).with_lora(set);
            Linear::load(&weights.pp("llm").pp("m"), 4, 2, false).unwrap()
        };
        let loaded = layer(Arc::new(LoraSet::default().apply(gated.clone(), 1.0, "loaded")));
        let set = Arc::new(LoraSet::default());
        let plain = layer(set.clone());
        let scoped =
            Arc::new(ScopedAdapter::prepare(&gated, "scoped", &set.linear_shapes(), &dev, DType::F32).unwrap());
        // Both ways give the base layer on a text turn and W·x + B·A·x on an audio turn.
        let text_and_audio = |linear: &Linear| {
            let text = out(linear);
            let _turn = AudioTurn::enter();
            (text, out(linear))
        };
        let expected = (vec![vec![0.0, 0.0]], vec![vec![4.0, 4.0]]);
        assert_eq!(text_and_audio(&loaded), expected, "loaded with the model");
        let _scope = AdapterScope::enter(&[(scoped.clone(), 1.0)]);
        assert_eq!(text_and_audio(&plain), expected, "switched on per call");
        assert!(!scoped.touches("llm."), "state cached on a text turn still holds");
        let _turn = AudioTurn::enter();
        assert!(scoped.touches("llm."));
    }

    #[test]
    fn a_deferred_adapter_is_prepared_once_on_first_use_and_a_failure_stays_reported() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let (_, adapter) = zero_layer_and_adapter();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let deferred = DeferredAdapter::new(move || {
            counted.fetch_add(1, SeqCst);
            Ok((adapter, 0.5))
        });
        assert_eq!(calls.load(SeqCst), 0, "nothing is prepared before the first use");
        assert_eq!(deferred.get().unwrap().1, 0.5);
        assert!(Arc::ptr_eq(&deferred.get().unwrap().0, &deferred.get().unwrap().0));
        assert_eq!(calls.load(SeqCst), 1, "prepared once");
        let failing = DeferredAdapter::new(|| bail!("lora_B is missing"));
        for _ in 0..2 {
            assert!(failing.get().unwrap_err().to_string().contains("lora_B is missing"));
        }
    }

    #[test]
    fn a_scope_on_one_thread_is_invisible_on_another() {
        let (linear, adapter) = zero_layer_and_adapter();
        let _scope = AdapterScope::enter(&[(adapter, 0.25)]);
        assert_eq!(out(&linear), [[1.0, 1.0]]);
        let elsewhere = std::thread::scope(|s| s.spawn(|| out(&linear)).join().unwrap());
        assert_eq!(elsewhere, [[0.0, 0.0]]);
    }

    #[test]
    fn an_adapter_that_does_not_fit_is_refused() {
        let dev = Device::Cpu;
        let shapes: LinearShapes = [("m".to_string(), (4, 2))].into();
        let pair = |a_in| LoraPair {
            a: Tensor::ones((1, a_in), DType::F32, &dev).unwrap(),
            b: Tensor::ones((2, 1), DType::F32, &dev).unwrap(),
        };
        let config = LoraConfig { rank: 1, alpha: 1.0, dropout: 0.0 };
        let wrong_shape = Adapter { config, modules: [("m".to_string(), pair(3))].into(), audio_turns_only: false };
        let err = ScopedAdapter::prepare(&wrong_shape, "x", &shapes, &dev, DType::F32).unwrap_err().to_string();
        assert!(err.contains("needs [1, 4]"), "{err}");
        let unknown = Adapter { config, modules: [("n".to_string(), pair(4))].into(), audio_turns_only: false };
        let err = ScopedAdapter::prepare(&unknown, "x", &shapes, &dev, DType::F32).unwrap_err().to_string();
        assert!(err.contains("not a linear layer"), "{err}");
    }
}
