//! `kioku eval`, the forgetting report, on a tiny setting: three clips of a
//! new voice synthesized here with espeak-ng, two pocketsphinx clips and three
//! typed questions; and the errors a bad new-speaker directory gives.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use kioku::corpus::{synthesize_transcribed_dir, voices_of, Split};
use kioku::model::file::MappedModel;
use kioku::model::lora::{Adapter, LoraConfig, LoraPair};
use kioku::model::peft;
use std::collections::BTreeMap;
use std::path::Path;

const SENTENCES: [&str; 3] =
    ["Turn off the kitchen lights.", "What is the weather like today?", "Set a timer for ten minutes."];

/// A voice the model was never adapted to, speaking [`SENTENCES`] into `dir`.
fn new_speaker_dir(dir: &Path) {
    let texts: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
    synthesize_transcribed_dir(dir, voices_of(Split::Test)[0], &texts)
        .expect("espeak-ng and sox are installed (make deps)");
}

/// An adapter with random A and B on an encoder and an LLM layer: at scale 1 it would change outputs.
fn random_adapter(dir: &Path) {
    let pair = |i, o| LoraPair {
        a: Tensor::randn(0f32, 0.05, (4, i), &Device::Cpu).unwrap(),
        b: Tensor::randn(0f32, 0.05, (o, 4), &Device::Cpu).unwrap(),
    };
    let modules = BTreeMap::from([
        ("encoder.layers.0.fc1".to_string(), pair(384, 1536)),
        ("llm.layers.0.self_attn.q_proj".to_string(), pair(576, 576)),
    ]);
    let adapter =
        Adapter { config: LoraConfig { rank: 4, alpha: 16.0, dropout: 0.0 }, modules, audio_turns_only: false };
    peft::save(&adapter, dir, &MappedModel::open(&model_path()).unwrap().header, "kioku-tiny-en.safetensors").unwrap();
}

fn cells(line: &str) -> Vec<String> {
    line.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect()
}

#[test]
fn report_has_every_arm_and_metric_and_scale_zero_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (speaker, adapter, out) = (dir.path().join("speaker"), dir.path().join("adapter"), dir.path().join("report"));
    new_speaker_dir(&speaker);
    random_adapter(&adapter);
    let zero_arm = format!("zero=+{}:0", adapter.display());
    let args = [
        "eval",
        "--new-speaker",
        speaker.to_str().unwrap(),
        "--real-clips",
        "2",
        "--questions",
        "3",
        "--answer-tokens",
        "24",
    ];
    let run = kioku(&[&args[..], &["--arm", &zero_arm, "--out", out.to_str().unwrap()]].concat());
    assert!(run.status.success(), "{}", stderr(&run));

    let markdown = stdout(&run);
    assert_eq!(markdown, std::fs::read_to_string(out.join("report.md")).unwrap());
    let table: Vec<Vec<String>> = markdown.lines().filter(|l| l.starts_with('|')).map(cells).collect();
    let metrics = ["new-speaker WER", "real-speech WER", "text QA agreement"];
    let header = &table[0];
    for metric in metrics {
        let i = header.iter().position(|c| c == metric).unwrap_or_else(|| panic!("no column {metric}: {header:?}"));
        assert_eq!(header[i + 1], "Δ");
        assert_eq!(table[3][i + 1], "0", "scale 0 must change nothing: {:?}", table[3]);
    }
    assert!(header.contains(&"eval s".to_string()));
    assert_eq!(table.len(), 4, "header, rule, base, zero: {table:?}");
    assert_eq!((table[2][0].as_str(), table[3][0].as_str()), ("base", "zero"));

    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let (base, zero) = (&json["arms"][0], &json["arms"][1]);
    assert_eq!(base["metrics"], zero["metrics"]);
    assert!(zero["changes"].as_object().unwrap().values().all(|c| c.as_f64() == Some(0.0)), "{}", zero["changes"]);
    for (set, n) in [("new_speaker", 3), ("real_speech", 2), ("text_qa", 3)] {
        assert_eq!(zero["items"][set].as_array().unwrap().len(), n, "{set}");
    }
    assert_eq!(base["items"]["new_speaker"], zero["items"]["new_speaker"]);
    for item in base["items"]["new_speaker"].as_array().unwrap() {
        assert_eq!(
            item["wer"].as_f64().unwrap(),
            wer(item["reference"].as_str().unwrap(), item["hypothesis"].as_str().unwrap())
        );
    }
    assert!(
        base["metrics"]["new_speaker_wer"].as_f64().unwrap() < 0.5,
        "the base model should mostly understand espeak-ng: {}",
        base["items"]["new_speaker"]
    );

    // The plot parses as XML and has one bar per (metric, arm).
    let check = "import sys, xml.etree.ElementTree as E\n\
                 bars = [e for e in E.parse(sys.argv[1]).iter() if e.get('class') == 'bar']\n\
                 print(len(bars), sorted({b.get('data-arm') for b in bars}))";
    let parsed =
        std::process::Command::new("python3").args(["-c", check]).arg(out.join("report.svg")).output().unwrap();
    assert!(parsed.status.success(), "report.svg does not parse: {}", stderr(&parsed));
    let n_metrics = json["arms"][0]["metrics"].as_object().unwrap().len();
    assert_eq!(stdout(&parsed).trim(), format!("{} ['base', 'zero']", n_metrics * 2));
}

#[test]
fn a_bad_new_speaker_directory_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let error_for = |speaker: &Path| {
        let out = kioku(&[
            "eval",
            "--new-speaker",
            speaker.to_str().unwrap(),
            "--out",
            dir.path().join("r").to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        err
    };
    let missing = dir.path().join("nowhere");
    assert!(error_for(&missing).contains("is not a directory"));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(error_for(&empty).contains("transcripts.tsv"));
    std::fs::write(empty.join("transcripts.tsv"), "clip0\tHello there.\n").unwrap();
    let err = error_for(&empty);
    assert!(err.contains("line 1") && err.contains("clip0.wav not found"), "{err}");
    std::fs::write(empty.join("transcripts.tsv"), "just words without a tab\n").unwrap();
    assert!(error_for(&empty).contains("expected `id<TAB>text`"));
}
