//! The synthetic corpus: the utterance bank and its splits, the voices, and a small
//! real run of `kioku corpus` (needs espeak-ng and sox, which `make deps` installs).

mod common;

use kioku::corpus::{plan, split_of, utterance_bank, voices_of, Kind, ManifestEntry, Split, VOICES};
use std::collections::{HashMap, HashSet};
use std::path::Path;

#[test]
fn bank_is_large_varied_and_split_by_text() {
    let bank = utterance_bank();
    let texts: HashSet<&str> = bank.iter().map(|u| u.text.as_str()).collect();
    assert_eq!(texts.len(), bank.len(), "texts are distinct");
    assert!(bank.len() >= 3000, "{} utterances", bank.len());
    let answered = bank.iter().filter(|u| u.kind == Kind::Question && u.reference_answer.is_some()).count();
    assert!(answered >= 200, "{answered} factual questions with answers");

    // Paraphrases share a group; a group, hence a text, belongs to exactly one split.
    let mut split_of_group = HashMap::new();
    for u in &bank {
        assert_eq!(*split_of_group.entry(u.group.as_str()).or_insert(split_of(u)), split_of(u), "group {}", u.group);
        let words = u.text.split_whitespace().count();
        assert!((1..=15).contains(&words), "short enough to say in under 5 s: {:?}", u.text);
        assert!(u.text.ends_with(['.', '?']), "ends like a sentence: {:?}", u.text);
    }
    for split in Split::ALL {
        let in_split: Vec<_> = bank.iter().filter(|u| split_of(u) == split).collect();
        assert!(in_split.len() * 20 >= bank.len(), "{split:?} holds {} utterances", in_split.len());
        for kind in Kind::ALL {
            assert!(in_split.iter().any(|u| u.kind == kind), "{split:?} has a {kind:?}");
        }
    }
}

#[test]
fn voices_are_disjoint_across_splits() {
    let names: HashSet<String> = VOICES.iter().map(|v| v.name()).collect();
    assert_eq!(names.len(), VOICES.len());
    assert!(VOICES.len() >= 16, "{} voices", VOICES.len());
    let variants: HashSet<&str> = VOICES.iter().map(|v| v.variant).collect();
    assert_eq!(
        variants.len(),
        VOICES.len(),
        "no variant is shared, so no held-out voice is a training voice at another rate"
    );
    for split in Split::ALL {
        assert!(voices_of(split).len() >= 2, "{split:?}");
    }
    let accent_in_train: HashSet<&str> = voices_of(Split::Train).iter().map(|v| v.accent).collect();
    assert!(
        voices_of(Split::Test).iter().any(|v| !accent_in_train.contains(v.accent)),
        "one test accent is never heard in training"
    );
}

#[test]
fn plan_covers_the_bank_with_each_splits_own_voices() {
    let clips = plan(0, None).unwrap();
    assert_eq!(clips.len(), utterance_bank().len());
    let ids: HashSet<&str> = clips.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), clips.len(), "ids are unique");
    for clip in &clips {
        assert_eq!(clip.voice.split, clip.split);
        assert_eq!(split_of(&clip.utterance), clip.split);
    }
    let small = plan(0, Some(40)).unwrap();
    let count = |s| small.iter().filter(|c| c.split == s).count();
    assert_eq!((count(Split::Train), count(Split::Dev), count(Split::Test)), (32, 4, 4));
    assert!(plan(0, Some(1_000_000)).is_err());
}

fn run_corpus(out: &Path, seed: &str) -> std::process::Output {
    let out = out.to_str().unwrap();
    let run = common::kioku(&["corpus", "--out", out, "--utterances", "40", "--seed", seed, "--jobs", "2"]);
    assert!(run.status.success(), "kioku corpus failed: {}", common::stderr(&run));
    run
}

fn manifest(dir: &Path) -> Vec<ManifestEntry> {
    let text = std::fs::read_to_string(dir.join("manifest.jsonl")).unwrap();
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn small_run_is_16k_mono_and_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    run_corpus(&first, "7");
    run_corpus(&second, "7");

    let entries = manifest(&first);
    assert_eq!(entries.len(), 40);
    let manifest_bytes = |d: &Path| std::fs::read(d.join("manifest.jsonl")).unwrap();
    assert_eq!(manifest_bytes(&first), manifest_bytes(&second), "same seed, same manifest");
    for e in &entries {
        let wav = std::fs::read(first.join(&e.path)).unwrap();
        assert_eq!(wav, std::fs::read(second.join(&e.path)).unwrap(), "same seed, same audio: {}", e.path);
        let spec = hound::WavReader::new(wav.as_slice()).unwrap().spec();
        assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 16_000, 16), "{}", e.path);
        let audio = kioku::audio::read_wav(&first.join(&e.path)).unwrap();
        let seconds = audio.samples.len() as f64 / 16_000.0;
        assert!((seconds - e.duration_s).abs() < 1e-3 && (1.0..=6.0).contains(&seconds), "{}: {seconds} s", e.path);
        assert!(audio.samples.iter().any(|s| s.abs() > 0.1), "{} is not silent", e.path);
        assert_eq!(e.path, format!("{}/{}.wav", e.split.as_str(), e.id));
    }
    for split in Split::ALL {
        let tsv = std::fs::read_to_string(first.join(split.as_str()).join("transcripts.tsv")).unwrap();
        let expected: String =
            entries.iter().filter(|e| e.split == split).map(|e| format!("{}\t{}\n", e.id, e.text)).collect();
        assert_eq!(tsv, expected);
    }
    let voices = |s: Split| entries.iter().filter(|e| e.split == s).map(|e| e.voice.clone()).collect::<HashSet<_>>();
    assert!(
        voices(Split::Train).is_disjoint(&voices(Split::Test)) && voices(Split::Train).is_disjoint(&voices(Split::Dev))
    );

    // Resuming: a deleted clip is re-rendered bit for bit; the rest are reused.
    let victim = first.join(&entries[5].path);
    let original = std::fs::read(&victim).unwrap();
    std::fs::remove_file(&victim).unwrap();
    let rerun = run_corpus(&first, "7");
    assert!(common::stderr(&rerun).contains("(1 synthesized, 39 reused"), "{}", common::stderr(&rerun));
    assert_eq!(std::fs::read(&victim).unwrap(), original);

    // Another seed is another corpus: the old clips are replaced, not mixed in.
    run_corpus(&first, "8");
    let reseeded = manifest(&first);
    assert_ne!(reseeded, entries);
    let wavs = Split::ALL
        .iter()
        .flat_map(|s| std::fs::read_dir(first.join(s.as_str())).unwrap())
        .filter(|f| f.as_ref().unwrap().path().extension().is_some_and(|x| x == "wav"))
        .count();
    assert_eq!(wavs, reseeded.len());
}

#[test]
fn missing_espeak_is_one_clear_line() {
    let empty = tempfile::tempdir().unwrap();
    let out = empty.path().join("corpus");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_kioku"))
        .args(["corpus", "--out", out.to_str().unwrap(), "--utterances", "3"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stderr = common::stderr(&run);
    assert!(!run.status.success());
    assert_eq!(
        stderr.trim(),
        "error: espeak-ng not found: install it with `apt-get install espeak-ng` (or run `make deps`)"
    );
}
