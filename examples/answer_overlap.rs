//! How close each arm's spoken (e2e) answers come to the base model's typed ones, finer than
//! agreement, over reports `kioku eval` has already written.
//!
//!   cargo run --release --example answer_overlap -- REPORT.json...
//!
//! Agreement counts a spoken answer as right when its content-word F1 against the base model's
//! typed answer ([`answer_overlap`]) is at least 0.5, so with 40 questions one answer is 2.5
//! points. This averages the F1 itself, which moves with every word, and gives each arm's mean
//! change from the base arm of the same report (docs/ADAPTATION.md, "Every adaptation costs
//! spoken answers a little").

use anyhow::{bail, Context, Result};
use kioku::eval::metrics::answer_overlap;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Deserialize)]
struct Report {
    arms: Vec<ArmResult>,
}

#[derive(Deserialize)]
struct ArmResult {
    arm: ArmName,
    items: Items,
}

#[derive(Deserialize)]
struct ArmName {
    name: String,
}

#[derive(Deserialize)]
struct Items {
    text_qa: Vec<Answered>,
    e2e_qa: Vec<Answered>,
}

#[derive(Deserialize)]
struct Answered {
    id: String,
    answer: String,
}

fn main() -> Result<()> {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        bail!("usage: answer_overlap REPORT.json...");
    }
    // Per arm, its mean change from the base, one entry per report, in the order arms first appear.
    let mut changes: Vec<(String, Vec<f64>)> = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
        let report: Report =
            serde_json::from_str(&text).with_context(|| format!("{path} is not a kioku eval report"))?;
        let Some(base) = report.arms.first().filter(|a| a.arm.name == "base" && !a.items.e2e_qa.is_empty()) else {
            bail!("{path}: the first arm must be `base`, with spoken answers");
        };
        let typed: HashMap<&str, &str> =
            base.items.text_qa.iter().map(|i| (i.id.as_str(), i.answer.as_str())).collect();
        let mut means = BTreeMap::new();
        for arm in &report.arms {
            let spoken = &arm.items.e2e_qa;
            let total: f64 = spoken
                .iter()
                .map(|i| {
                    typed
                        .get(i.id.as_str())
                        .map(|t| answer_overlap(&i.answer, t))
                        .context("a spoken question with no typed answer")
                })
                .sum::<Result<f64>>()
                .with_context(|| format!("{path}, arm {}", arm.arm.name))?;
            let mean = total / spoken.len().max(1) as f64;
            println!("{path}\t{}\t{mean:.3}", arm.arm.name);
            means.insert(arm.arm.name.as_str(), mean);
        }
        for arm in report.arms.iter().skip(1) {
            let change = means[arm.arm.name.as_str()] - means["base"];
            match changes.iter_mut().find(|(name, _)| *name == arm.arm.name) {
                Some((_, deltas)) => deltas.push(change),
                None => changes.push((arm.arm.name.clone(), vec![change])),
            }
        }
    }
    println!("\narm\treports\tmean change from base\treports above base");
    for (name, deltas) in changes {
        let mean = deltas.iter().sum::<f64>() / deltas.len() as f64;
        let above = deltas.iter().filter(|&&d| d > 0.0).count();
        println!("{name}\t{}\t{mean:+.3}\t{above}", deltas.len());
    }
    Ok(())
}
