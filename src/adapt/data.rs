//! A new speaker's recordings (the layout of [`crate::corpus::read_transcribed_dir`]),
//! loaded as audio: everything is read and checked before training starts.

use crate::assistant::load_audio_16k;
use crate::corpus::read_transcribed_dir;
use anyhow::{Context, Result};
use std::path::Path;

/// One recording of the new speaker, as 16 kHz mono samples.
#[derive(Debug, Clone)]
pub struct Recording {
    pub id: String,
    pub audio_16k: Vec<f32>,
    pub text: String,
    /// The base model's answer to `text` typed: filled in by the adaptation
    /// when its spoken task targets typed answers.
    pub typed_answer: Option<String>,
}

/// Reads and validates `dir` (see [`read_transcribed_dir`]) and decodes every WAV.
pub fn load_recordings(dir: &Path) -> Result<Vec<Recording>> {
    read_transcribed_dir(dir)?
        .into_iter()
        .map(|clip| {
            let audio_16k =
                load_audio_16k(&clip.path).with_context(|| format!("recording `{}` of {}", clip.id, dir.display()))?;
            Ok(Recording { id: clip.id, audio_16k, text: clip.text, typed_answer: None })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::TRANSCRIPTS_FILE;

    fn message(dir: &Path) -> String {
        format!("{:#}", load_recordings(dir).unwrap_err())
    }

    #[test]
    fn bad_directories_get_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(message(&d.join("nope")).contains("is not a directory"));
        assert!(message(d).contains("transcripts.tsv is missing"));
        std::fs::write(d.join(TRANSCRIPTS_FILE), "\n").unwrap();
        assert!(message(d).contains("lists no clips"));
        std::fs::write(d.join(TRANSCRIPTS_FILE), "a hello\n").unwrap();
        assert!(message(d).contains("line 1: expected `id<TAB>text`"));
        std::fs::write(d.join(TRANSCRIPTS_FILE), "a\thello\n").unwrap();
        assert!(message(d).contains("a.wav not found"));
        std::fs::write(d.join("a.wav"), b"not audio at all").unwrap();
        assert!(message(d).contains("is not a WAV file"));
        crate::audio::write_wav_16k(&d.join("a.wav"), &[0.1; 16_000]).unwrap();
        std::fs::write(d.join(TRANSCRIPTS_FILE), "a\thello\na\tagain\n").unwrap();
        assert!(message(d).contains("line 2: id `a` appears twice"));
        std::fs::write(d.join(TRANSCRIPTS_FILE), "a\thello there\n").unwrap();
        let loaded = load_recordings(d).unwrap();
        assert_eq!(
            (loaded[0].id.as_str(), loaded[0].text.as_str(), loaded[0].audio_16k.len()),
            ("a", "hello there", 16_000)
        );
    }
}
