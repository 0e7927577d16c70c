//! A new speaker's recordings: a directory of WAV files and `transcripts.tsv`
//! (`id<TAB>text` per line, id = the file name without `.wav`). Everything is
//! checked before training starts, so a typo fails in a second, not after minutes.

use crate::assistant::load_audio_16k;
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub const TRANSCRIPTS: &str = "transcripts.tsv";

/// One recording of the new speaker, as 16 kHz mono samples.
#[derive(Debug, Clone)]
pub struct Recording {
    pub id: String,
    pub audio_16k: Vec<f32>,
    pub text: String,
}

/// Reads and validates `dir`: every line of the transcripts names an existing,
/// readable WAV file and has text; at least one line; no id twice.
pub fn load_recordings(dir: &Path) -> Result<Vec<Recording>> {
    if !dir.is_dir() {
        bail!("{} is not a directory (expected WAV files and {TRANSCRIPTS})", dir.display());
    }
    let tsv = dir.join(TRANSCRIPTS);
    let text = std::fs::read_to_string(&tsv)
        .with_context(|| format!("{} is missing or unreadable (expected lines `id<TAB>text`, id = WAV name without .wav)", tsv.display()))?;
    let mut seen = HashSet::new();
    let mut recordings = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{} line {}", tsv.display(), number + 1);
        let Some((id, transcript)) = line.split_once('\t') else {
            bail!("{}: expected `id<TAB>text`, found no tab", at());
        };
        let (id, transcript) = (id.trim(), transcript.trim());
        if id.is_empty() || transcript.is_empty() {
            bail!("{}: both the id and the text must be non-empty", at());
        }
        if !seen.insert(id.to_string()) {
            bail!("{}: id `{id}` appears twice", at());
        }
        let wav: PathBuf = dir.join(format!("{id}.wav"));
        if !wav.is_file() {
            bail!("{}: {} does not exist", at(), wav.display());
        }
        let audio_16k = load_audio_16k(&wav).with_context(at)?;
        recordings.push(Recording { id: id.to_string(), audio_16k, text: transcript.to_string() });
    }
    if recordings.is_empty() {
        bail!("{} lists no recordings", tsv.display());
    }
    Ok(recordings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(dir: &Path) -> String {
        format!("{:#}", load_recordings(dir).unwrap_err())
    }

    #[test]
    fn bad_directories_get_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(message(&d.join("nope")).contains("is not a directory"));
        assert!(message(d).contains("transcripts.tsv is missing"));
        std::fs::write(d.join(TRANSCRIPTS), "\n").unwrap();
        assert!(message(d).contains("lists no recordings"));
        std::fs::write(d.join(TRANSCRIPTS), "a hello\n").unwrap();
        assert!(message(d).contains("line 1: expected `id<TAB>text`"));
        std::fs::write(d.join(TRANSCRIPTS), "a\thello\n").unwrap();
        assert!(message(d).contains("a.wav does not exist"));
        std::fs::write(d.join("a.wav"), b"not audio at all").unwrap();
        assert!(message(d).contains("is not a WAV file"));
        crate::audio::write_wav_16k(&d.join("a.wav"), &[0.1; 16_000]).unwrap();
        std::fs::write(d.join(TRANSCRIPTS), "a\thello\na\tagain\n").unwrap();
        assert!(message(d).contains("line 2: id `a` appears twice"));
        std::fs::write(d.join(TRANSCRIPTS), "a\thello there\n").unwrap();
        let loaded = load_recordings(d).unwrap();
        assert_eq!((loaded[0].id.as_str(), loaded[0].text.as_str(), loaded[0].audio_16k.len()), ("a", "hello there", 16_000));
    }
}
