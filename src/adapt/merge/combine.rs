//! How task vectors `τ_i = θ_i − θ_base` of one tensor combine into the
//! change written on top of the base: linear, TIES (Yadav et al. 2023) and
//! DARE (Yu et al. 2023). Plain slices of f32, so the rules can be checked on
//! hand-made numbers.

use anyhow::{bail, Result};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum Method {
    /// `Σ w_i·τ_i`.
    Linear,
    /// Keep each τ_i's top `density` fraction by magnitude, elect a sign per
    /// element, average the entries that agree with it.
    Ties { density: f64 },
    /// Drop each element of τ_i with probability `drop_rate`, rescale the rest
    /// by `1/(1 − drop_rate)`, then combine linearly.
    Dare { drop_rate: f64, seed: u64 },
    /// DARE's drop and rescale, then TIES.
    DareTies { drop_rate: f64, density: f64, seed: u64 },
}

impl Method {
    pub fn validate(&self) -> Result<()> {
        if let Some(density) = self.density() {
            if !(density > 0.0 && density <= 1.0) {
                bail!("TIES density must be in (0, 1], got {density}");
            }
        }
        if let Some((p, _)) = self.drop() {
            if !(0.0..1.0).contains(&p) {
                bail!("DARE drop rate must be in [0, 1), got {p}");
            }
        }
        Ok(())
    }

    fn density(&self) -> Option<f64> {
        match *self {
            Method::Ties { density } | Method::DareTies { density, .. } => Some(density),
            _ => None,
        }
    }

    fn drop(&self) -> Option<(f64, u64)> {
        match *self {
            Method::Dare { drop_rate, seed } | Method::DareTies { drop_rate, seed, .. } => Some((drop_rate, seed)),
            _ => None,
        }
    }
}

/// The change to the tensor named `tensor` from the task vectors `taus`
/// (equal lengths) weighted by `weights`. DARE's masks depend on the seed, the
/// tensor's name and the input's position only, so a merge repeats exactly.
pub fn combine(taus: &[&[f32]], weights: &[f64], method: &Method, tensor: &str) -> Vec<f32> {
    let taus: Vec<Cow<[f32]>> = match method.drop() {
        Some((p, seed)) => taus
            .iter()
            .enumerate()
            .map(|(i, t)| Cow::Owned(drop_and_rescale(t, p, stream_seed(seed, tensor, i))))
            .collect(),
        None => taus.iter().map(|t| Cow::Borrowed(*t)).collect(),
    };
    let weighted: Vec<Vec<f32>> = taus
        .iter()
        .zip(weights)
        .map(|(t, &w)| {
            let kept = match method.density() {
                Some(density) => trim(t, density),
                None => t.to_vec(),
            };
            kept.into_iter().map(|v| v * w as f32).collect()
        })
        .collect();
    let n = weighted.first().map_or(0, Vec::len);
    match method.density() {
        Some(_) => (0..n).map(|j| disjoint_mean(weighted.iter().map(|t| t[j]))).collect(),
        None => (0..n).map(|j| weighted.iter().map(|t| t[j]).sum()).collect(),
    }
}

/// `tau` with all but its `density` fraction of largest magnitudes set to zero
/// (exactly `round(density·n)` entries survive).
pub fn trim(tau: &[f32], density: f64) -> Vec<f32> {
    let keep = ((density * tau.len() as f64).round() as usize).min(tau.len());
    if keep == tau.len() {
        return tau.to_vec();
    }
    let mut trimmed = vec![0.0; tau.len()];
    if keep == 0 {
        return trimmed;
    }
    let mut order: Vec<usize> = (0..tau.len()).collect();
    order.select_nth_unstable_by(keep - 1, |&a, &b| tau[b].abs().total_cmp(&tau[a].abs()));
    for &i in &order[..keep] {
        trimmed[i] = tau[i];
    }
    trimmed
}

/// TIES' merge of one element: the sign of the sum wins, and the entries with
/// that sign are averaged (zeros, trimmed away, do not vote or count). Weights
/// are applied before the vote, as mergekit does, so with equal weights `w`
/// this is the paper's rule scaled by `λ = w`.
fn disjoint_mean(values: impl Iterator<Item = f32> + Clone) -> f32 {
    let sum: f32 = values.clone().sum();
    if sum == 0.0 {
        return 0.0;
    }
    let (total, count) =
        values.filter(|v| *v != 0.0 && v.signum() == sum.signum()).fold((0f32, 0u32), |(t, c), v| (t + v, c + 1));
    if count == 0 {
        0.0
    } else {
        total / count as f32
    }
}

/// DARE: zero each element with probability `p`, divide the survivors by
/// `1 − p`, so the expected value of every element is unchanged.
pub fn drop_and_rescale(tau: &[f32], p: f64, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rescale = (1.0 / (1.0 - p)) as f32;
    tau.iter().map(|&v| if rng.random::<f64>() < p { 0.0 } else { v * rescale }).collect()
}

/// An independent random stream per (seed, tensor, input).
fn stream_seed(seed: u64, tensor: &str, input: usize) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{seed}/{tensor}/{input}"));
    u64::from_le_bytes(digest[..8].try_into().expect("a sha256 digest has 32 bytes"))
}
