use anyhow::{bail, Result};
use clap::Args;
use indicatif::ProgressBar;
use kioku::import::random::RandomShapes;
use kioku::import::{pack, PackOptions, PackSource};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct PackArgs {
    /// Whisper checkpoint: a CTranslate2 directory (model.bin) or a Hugging Face directory.
    #[arg(long, required_unless_present = "random_shapes")]
    whisper: Option<PathBuf>,
    /// LLM checkpoint: a GGUF file or a Hugging Face directory (Llama family: Llama, SmolLM2, Qwen2).
    #[arg(long, required_unless_present = "random_shapes")]
    llm: Option<PathBuf>,
    /// Trained projector (safetensors) to include for end-to-end answers.
    #[arg(long)]
    projector: Option<PathBuf>,
    /// Silero VAD v6 weights (`silero_vad_16k.safetensors`, or its directory) for endpointing
    /// live speech; without them `kioku listen` falls back to energy endpointing.
    #[arg(long, value_name = "FILE")]
    vad: Option<PathBuf>,
    /// Instead of checkpoints, seeded random weights with the default model's
    /// shapes (`default`) or small ones (`tiny`), and made-up tokenizers: for
    /// speed and parity checks without downloads.
    #[arg(long, value_name = "SHAPES", conflicts_with_all = ["whisper", "llm", "projector", "vad"])]
    random_shapes: Option<RandomShapes>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0, requires = "random_shapes")]
    seed: u64,
    /// Storage dtype of the weights.
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// Block format for the LLM's projections and both output heads (q8_0: 4x
    /// less memory traffic per decoded token than f32; none: keep them dense).
    #[arg(long, default_value = "q8_0")]
    quantize: String,
    /// Output model file.
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: &PackArgs) -> Result<()> {
    let dtype = match args.dtype.as_str() {
        "f16" => candle_core::DType::F16,
        "f32" => candle_core::DType::F32,
        other => bail!("unsupported --dtype `{other}`; use f16 or f32"),
    };
    let quantize = match args.quantize.as_str() {
        "none" => None,
        name => Some(
            kioku::model::file::ggml_type(name)
                .map_err(|_| anyhow::anyhow!("unsupported --quantize `{name}`; use q8_0 or none"))?,
        ),
    };
    let spinner = ProgressBar::new_spinner().with_message(format!("packing {}", args.output.display()));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let source = match (args.random_shapes, &args.whisper, &args.llm) {
        (Some(shapes), _, _) => PackSource::Random { shapes, seed: args.seed },
        (None, Some(whisper), Some(llm)) => PackSource::Checkpoints {
            whisper: whisper.clone(),
            llm: llm.clone(),
            projector: args.projector.clone(),
            vad: args.vad.clone(),
        },
        _ => bail!("give --whisper and --llm, or --random-shapes"),
    };
    let header = pack(&PackOptions { source, dtype, quantize, output: args.output.clone() });
    spinner.finish_and_clear();
    let header = header?;
    eprintln!(
        "wrote {} (whisper d={} {}+{} layers, llm {} layers{}{})",
        args.output.display(),
        header.whisper.d_model,
        header.whisper.encoder_layers,
        header.whisper.decoder_layers,
        header.llm.num_hidden_layers,
        if header.projector.is_some() { ", projector" } else { "" },
        if header.provenance.iter().any(|p| p.component == kioku::model::components::VAD) { ", VAD" } else { "" }
    );
    Ok(())
}
