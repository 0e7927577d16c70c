use anyhow::Result;
use clap::{Args, ValueEnum};
use kioku::adapt::merge::{merge, Input, InputKind, Method};
use kioku::model::peft::AdapterSpec;
use std::path::PathBuf;

#[derive(Args)]
pub struct MergeArgs {
    /// Base model file the adapters and models were fine-tuned from.
    #[arg(long, env = "KIOKU_MODEL", default_value_os_t = kioku::home::default_model())]
    model: PathBuf,
    /// LoRA adapter directory and its weight (default 1). With the linear
    /// method this bakes `W + WEIGHT·(α/r)·B·A`: a weight below 1 discounts it.
    #[arg(long = "adapter", value_name = "DIR[:WEIGHT]")]
    adapters: Vec<AdapterSpec>,
    /// A model file fine-tuned from the same base, and the weight of its task
    /// vector (its weights minus the base's).
    #[arg(long = "with-model", value_name = "FILE[:WEIGHT]")]
    models: Vec<AdapterSpec>,
    /// How task vectors combine.
    #[arg(long, value_enum, default_value = "linear")]
    method: MethodName,
    /// TIES: fraction of each task vector's entries kept, by magnitude.
    #[arg(long, default_value_t = 0.2)]
    density: f64,
    /// DARE: probability of dropping each entry of a task vector.
    #[arg(long, default_value_t = 0.9)]
    drop_rate: f64,
    /// DARE: seed of the drop masks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output model file.
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum MethodName {
    /// θ_base + Σ w·τ
    Linear,
    /// Trim to --density, elect signs, average agreeing entries (Yadav et al. 2023).
    Ties,
    /// Drop entries at --drop-rate and rescale, then linear (Yu et al. 2023).
    Dare,
    /// DARE's drop, then TIES.
    DareTies,
}

pub fn run(args: &MergeArgs) -> Result<()> {
    let (density, drop_rate, seed) = (args.density, args.drop_rate, args.seed);
    let method = match args.method {
        MethodName::Linear => Method::Linear,
        MethodName::Ties => Method::Ties { density },
        MethodName::Dare => Method::Dare { drop_rate, seed },
        MethodName::DareTies => Method::DareTies { drop_rate, density, seed },
    };
    let inputs: Vec<Input> = [(InputKind::Adapter, &args.adapters), (InputKind::Model, &args.models)]
        .into_iter()
        .flat_map(|(kind, specs)| specs.iter().map(move |s| Input { kind, path: s.path.clone(), weight: s.scale }))
        .collect();
    let summary = merge(&args.model, &inputs, method, &args.output)?;
    eprintln!(
        "wrote {} ({} tensors changed, {} copied from {})",
        args.output.display(),
        summary.changed,
        summary.copied,
        args.model.display()
    );
    Ok(())
}
