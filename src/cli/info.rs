use anyhow::Result;
use clap::Args;
use kioku::model::components::{ASR_DECODER, ENCODER, LLM, PROJECTOR, SPEECH_LORA, VAD};
use kioku::model::file::MappedModel;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::PathBuf;

#[derive(Args)]
pub struct InfoArgs {
    /// Model file.
    #[arg(env = "KIOKU_MODEL", default_value_os_t = kioku::home::default_model())]
    model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &InfoArgs) -> Result<()> {
    let model = MappedModel::open(&args.model)?;
    let infos = model.tensor_infos()?;
    let h = &model.header;
    let components: Vec<_> = [
        (ENCODER, "whisper", "speech encoder"),
        (ASR_DECODER, "whisper", "ASR decoder"),
        (PROJECTOR, "projector", "speech-to-LLM projector"),
        (SPEECH_LORA, "lora", "LLM adapter for audio turns"),
        (LLM, "llama", "chat LLM"),
        (VAD, "silero", "voice activity detector"),
    ]
    .into_iter()
    .filter_map(|(prefix, architecture, role)| {
        let mine: Vec<_> = infos.iter().filter(|t| t.name.starts_with(&format!("{prefix}."))).collect();
        if mine.is_empty() {
            return None;
        }
        let parameters: usize = mine.iter().map(|t| t.shape.iter().product::<usize>()).sum();
        let dtypes: BTreeSet<_> = mine.iter().map(|t| t.dtype.clone()).collect();
        Some(json!({"prefix": prefix, "architecture": architecture, "role": role,
                    "parameters": parameters, "tensors": mine.len(), "dtypes": dtypes}))
    })
    .collect();
    let file_bytes = std::fs::metadata(&args.model)?.len();
    let report = json!({
        "file": args.model, "file_bytes": file_bytes, "format_version": kioku::model::file::FORMAT_VERSION,
        "components": components, "whisper": h.whisper, "llm": h.llm, "projector": h.projector,
        "provenance": h.provenance, "merge": h.merge,
    });
    if args.json {
        println!("{report}");
        return Ok(());
    }
    println!(
        "{}  ({:.1} MB, kioku format v{})",
        args.model.display(),
        file_bytes as f64 / 1e6,
        kioku::model::file::FORMAT_VERSION
    );
    for c in &components {
        println!(
            "  {:<12} {:<10} {:>6.1} M params  {:<27} {}",
            c["prefix"].as_str().unwrap_or_default(),
            c["architecture"].as_str().unwrap_or_default(),
            c["parameters"].as_u64().unwrap_or_default() as f64 / 1e6,
            c["role"].as_str().unwrap_or_default(),
            c["dtypes"]
                .as_array()
                .map(|d| d.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","))
                .unwrap_or_default(),
        );
    }
    if h.projector.is_none() {
        println!("  (no projector: end-to-end mode unavailable, cascade only)");
    }
    println!("provenance:");
    for p in &h.provenance {
        let version = p.version.as_deref().map(|v| format!("=={v}")).unwrap_or_default();
        let sha = p.sha256.as_deref().map(|s| format!(" sha256:{}", &s[..s.len().min(16)])).unwrap_or_default();
        let licence = p.license.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
        let checkpoint = p.checkpoint.as_deref().map(|c| format!(", checkpoint {c}")).unwrap_or_default();
        println!("  {:<10} {}{version}{sha}{licence}{checkpoint}", p.component, p.source);
    }
    if let Some(merge) = &h.merge {
        let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
        // {"method": "ties", "density": 0.2} -> "ties density=0.2"
        let parameters = merge["method"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "method")
            .map(|(k, v)| format!(" {k}={v}"));
        let method = format!("{}{}", text(&merge["method"]["method"]), parameters.collect::<String>());
        println!("merged by `kioku merge` ({method}) from {}:", text(&merge["base"]["path"]));
        for input in merge["inputs"].as_array().into_iter().flatten() {
            println!("  {:<10} {}  weight {}", text(&input["kind"]), text(&input["path"]), input["weight"]);
        }
    }
    Ok(())
}
