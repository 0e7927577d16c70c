//! The parity check of `kioku::parity` as a program, for scripts/gpu-check.sh:
//! the dense f32 CPU reference against the fast path on the chosen device.
//! Prints a Markdown table; exits 1 when a case is out of tolerance.
//!
//!   cargo run --release --example parity -- MODEL [--device cpu|cuda|metal] [--steps 8] [--tolerance 0.05]

use anyhow::{bail, Context, Result};
use kioku::parity::{check, ADAPTER_SCALE};
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut model = None;
    let (mut device, mut steps, mut tolerance) = ("cpu".to_string(), 8, kioku::parity::DEFAULT_TOLERANCE);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--device" => device = value()?,
            "--steps" => steps = value()?.parse()?,
            "--tolerance" => tolerance = value()?.parse()?,
            _ if model.is_none() => model = Some(PathBuf::from(&arg)),
            other => bail!("unexpected argument `{other}`"),
        }
    }
    let model = model.context("usage: parity MODEL [--device cpu|cuda|metal] [--steps N] [--tolerance T]")?;
    let cases = check(&model, &kioku::device::parse_device(&device)?, steps)?;
    println!("| case (CPU dense f32 vs {device} fast, LoRA at {ADAPTER_SCALE}) | max abs diff | / logit std | adapter moved logits by | greedy tokens | ok |");
    println!("|---|---|---|---|---|---|");
    for case in &cases {
        let tokens = if case.reference_tokens == case.candidate_tokens {
            format!("same {:?}", case.reference_tokens)
        } else {
            format!("{:?} vs {:?}", case.reference_tokens, case.candidate_tokens)
        };
        let ok = if case.passes(tolerance) { "yes" } else { "NO" };
        let effect = case.adapter_effect.map(|e| format!("{e:.2e}")).unwrap_or_default();
        println!(
            "| {} | {:.2e} | {:.4} | {effect} | {tokens} | {ok} |",
            case.name,
            case.max_abs_diff,
            case.relative_diff()
        );
    }
    if cases.iter().any(|c| !c.passes(tolerance)) {
        bail!("parity out of tolerance ({tolerance} of the logits' standard deviation, same greedy tokens)");
    }
    Ok(())
}
