//! AdamW with global-norm gradient clipping and a warmup + cosine schedule.
//! Written here rather than taken from candle-nn because a resumable run needs
//! the moment estimates, which candle-nn's AdamW keeps private.

use anyhow::{Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Largest global gradient norm; larger gradients are scaled down to it.
    pub max_grad_norm: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, max_grad_norm: 1.0 }
    }
}

/// Linear warmup to `peak`, then cosine decay to `peak * final_fraction` at `total_steps`.
#[derive(Debug, Clone, Copy)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub final_fraction: f64,
}

impl LrSchedule {
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let floor = self.peak * self.final_fraction;
        floor + (self.peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Named trainable variables with their first and second moment estimates.
pub struct AdamW {
    vars: BTreeMap<String, Var>,
    first_moment: BTreeMap<String, Tensor>,
    second_moment: BTreeMap<String, Tensor>,
    steps_taken: usize,
    config: AdamWConfig,
}

/// What one optimizer step did, for progress reporting.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Variables that got no gradient this step (their update was skipped).
    pub without_gradient: usize,
}

impl AdamW {
    pub fn new(vars: BTreeMap<String, Var>, config: AdamWConfig) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let first_moment = vars.iter().map(|(k, v)| Ok((k.clone(), zeros(v)?))).collect::<Result<_>>()?;
        let second_moment = vars.iter().map(|(k, v)| Ok((k.clone(), zeros(v)?))).collect::<Result<_>>()?;
        Ok(Self { vars, first_moment, second_moment, steps_taken: 0, config })
    }

    pub fn vars(&self) -> &BTreeMap<String, Var> {
        &self.vars
    }

    pub fn steps_taken(&self) -> usize {
        self.steps_taken
    }

    /// Clips the gradients to `max_grad_norm` (jointly) and takes one step at `lr`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<StepReport> {
        let mut squared_norm = 0f64;
        let mut without_gradient = 0;
        for var in self.vars.values() {
            match grads.get(var.as_tensor()) {
                Some(g) => squared_norm += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64,
                None => without_gradient += 1,
            }
        }
        let grad_norm = squared_norm.sqrt();
        let clip = if grad_norm > self.config.max_grad_norm { self.config.max_grad_norm / grad_norm } else { 1.0 };
        self.steps_taken += 1;
        let c = &self.config;
        let (bias1, bias2) = (1.0 - c.beta1.powi(self.steps_taken as i32), 1.0 - c.beta2.powi(self.steps_taken as i32));
        for (name, var) in &self.vars {
            let Some(grad) = grads.get(var.as_tensor()) else { continue };
            let grad = (grad * clip)?;
            let m = ((&self.first_moment[name] * c.beta1)? + (&grad * (1.0 - c.beta1))?)?;
            let v = ((&self.second_moment[name] * c.beta2)? + (grad.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&m / bias1)? / ((&v / bias2)?.sqrt()? + c.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * c.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.first_moment.insert(name.clone(), m);
            self.second_moment.insert(name.clone(), v);
        }
        Ok(StepReport { grad_norm, without_gradient })
    }

    /// Everything a checkpoint needs: the variables and both moments, by name.
    pub fn state_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (name, var) in &self.vars {
            // A copy: later steps update the variable's storage in place.
            out.insert(format!("var.{name}"), var.as_tensor().copy()?);
            out.insert(format!("m.{name}"), self.first_moment[name].clone());
            out.insert(format!("v.{name}"), self.second_moment[name].clone());
        }
        Ok(out)
    }

    /// Restores the state written by [`AdamW::state_tensors`] after `steps_taken` steps.
    pub fn restore(&mut self, tensors: &BTreeMap<String, Tensor>, steps_taken: usize) -> Result<()> {
        for (name, var) in &self.vars {
            let get = |prefix: &str| {
                let t = tensors
                    .get(&format!("{prefix}.{name}"))
                    .with_context(|| format!("the checkpoint has no {prefix}.{name}"))?;
                anyhow::ensure!(
                    t.dims() == var.dims(),
                    "the checkpoint's {name} has shape {:?}, expected {:?}",
                    t.dims(),
                    var.dims()
                );
                Ok(t.to_dtype(var.dtype())?.to_device(var.device())?)
            };
            var.set(&get("var")?)?;
            self.first_moment.insert(name.clone(), get("m")?);
            self.second_moment.insert(name.clone(), get("v")?);
        }
        self.steps_taken = steps_taken;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let s = LrSchedule { peak: 1e-3, warmup_steps: 10, total_steps: 110, final_fraction: 0.1 };
        assert!((s.at(0) - 1e-4).abs() < 1e-12);
        assert!((s.at(9) - 1e-3).abs() < 1e-12);
        assert!((s.at(60) - 5.5e-4).abs() < 1e-9);
        assert!((s.at(110) - 1e-4).abs() < 1e-12);
        assert!((s.at(500) - 1e-4).abs() < 1e-12);
    }

    #[test]
    fn minimises_a_quadratic_and_clips_large_gradients() {
        let target = Tensor::new(&[3f32, -2.0], &Device::Cpu).unwrap();
        let x = Var::new(&[0f32, 0.0], &Device::Cpu).unwrap();
        let config = AdamWConfig { weight_decay: 0.0, max_grad_norm: 0.5, ..Default::default() };
        let mut opt = AdamW::new([("x".to_string(), x.clone())].into(), config).unwrap();
        let mut first_norm = 0.0;
        for step in 0..400 {
            let loss = (x.as_tensor() - &target).unwrap().sqr().unwrap().sum(D::Minus1).unwrap();
            let report = opt.step(&loss.backward().unwrap(), 0.05).unwrap();
            if step == 0 {
                first_norm = report.grad_norm;
            }
        }
        assert!((first_norm - 2.0 * 13f64.sqrt()).abs() < 1e-4, "norm before clipping: {first_norm}");
        let got = x.as_tensor().to_vec1::<f32>().unwrap();
        assert!((got[0] - 3.0).abs() < 0.05 && (got[1] + 2.0).abs() < 0.05, "{got:?}");
    }
}
