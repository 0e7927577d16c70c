use anyhow::Result;
use clap::{Args, ValueEnum};
use kioku::model::file::MappedModel;
use kioku::model::{gguf_lora, peft};
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportAdapterArgs {
    /// Adapter directory (PEFT layout, as `kioku adapt` and `kioku enroll` write it).
    adapter: PathBuf,
    /// Model file the adapter was trained on.
    #[arg(long, env = "KIOKU_MODEL", default_value_os_t = kioku::home::default_model())]
    model: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "gguf")]
    format: ExportFormat,
    /// File to write.
    #[arg(short, long, value_name = "FILE.gguf")]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// GGUF LoRA of the LLM modules, for llama.cpp's `--lora` / `--lora-scaled`
    /// on the GGUF the model's LLM was packed from.
    Gguf,
}

pub fn run(args: &ExportAdapterArgs) -> Result<()> {
    let header = MappedModel::open(&args.model)?.header;
    let adapter = peft::load(&args.adapter, &header)?;
    let summary = match args.format {
        ExportFormat::Gguf => gguf_lora::export(&adapter, &header.llm, &args.out)?,
    };
    if !summary.skipped.is_empty() {
        eprintln!(
            "note: skipped {} modules outside the LLM (Whisper, projector), which llama.cpp does not run",
            summary.skipped.len()
        );
    }
    eprintln!("wrote {} ({} LLM modules)", args.out.display(), summary.exported.len());
    if adapter.audio_turns_only {
        eprintln!(
            "note: kioku applies this adapter's LLM modules to spoken questions only; llama.cpp, which reads text, applies them to every prompt"
        );
    }
    if let Some(llm) = header.provenance.iter().find(|p| p.component == "llm") {
        let file = llm.file.as_deref().unwrap_or(&llm.source);
        eprintln!("apply it on the LLM's source GGUF ({file}) with llama.cpp's --lora {}", args.out.display());
    }
    Ok(())
}
