//! Enrolment: the sentences a new speaker reads aloud, and the directory of
//! their recordings (`1.wav` … `N.wav`, by prompt number) turned into the
//! layout adaptation reads ([`super::data`]).

use crate::corpus::utterance_bank;
use crate::corpus::TRANSCRIPTS_FILE;
use anyhow::{bail, ensure, Result};
use std::path::{Path, PathBuf};

/// Most prompts enrolment offers.
pub const MAX_PROMPTS: usize = 200;

/// `n` sentences of 4 to 12 words spread over the corpus text bank (questions,
/// commands, requests, dictation), the same on every run.
pub fn prompts(n: usize) -> Result<Vec<String>> {
    ensure!((1..=MAX_PROMPTS).contains(&n), "--sentences must be between 1 and {MAX_PROMPTS}");
    let candidates: Vec<String> = utterance_bank()
        .into_iter()
        .map(|u| u.text)
        .filter(|t| (4..=12).contains(&t.split_whitespace().count()))
        .collect();
    let stride = (candidates.len() / n).max(1);
    Ok(candidates.into_iter().step_by(stride).take(n).collect())
}

/// Where prompt `number` (from 1) is recorded in `dir`.
pub fn recording_path(dir: &Path, number: usize) -> PathBuf {
    dir.join(format!("{number}.wav"))
}

/// Checks that `dir` holds a recording of every prompt and writes
/// `dir/transcripts.tsv` for them.
pub fn write_transcripts(dir: &Path, prompts: &[String]) -> Result<()> {
    if !dir.is_dir() {
        bail!("{} is not a directory (expected 1.wav … {}.wav, one per prompt)", dir.display(), prompts.len());
    }
    let missing: Vec<String> =
        (1..=prompts.len()).filter(|&i| !recording_path(dir, i).is_file()).map(|i| format!("{i}.wav")).collect();
    if !missing.is_empty() {
        bail!("{} lacks {} of the {} recordings: {}", dir.display(), missing.len(), prompts.len(), missing.join(", "));
    }
    let tsv: String = prompts.iter().enumerate().map(|(i, text)| format!("{}\t{text}\n", i + 1)).collect();
    crate::atomic::write_bytes(&dir.join(TRANSCRIPTS_FILE), tsv.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_fixed_distinct_sentences() {
        let p = prompts(24).unwrap();
        assert_eq!(p.len(), 24);
        assert_eq!(p, prompts(24).unwrap());
        assert_eq!(p.iter().collect::<std::collections::HashSet<_>>().len(), 24);
        assert!(prompts(0).is_err() && prompts(MAX_PROMPTS + 1).is_err());
    }

    #[test]
    fn transcripts_need_every_recording() {
        let dir = tempfile::tempdir().unwrap();
        let p = prompts(2).unwrap();
        crate::audio::write_wav_16k(&recording_path(dir.path(), 1), &[0.1; 16_000]).unwrap();
        let err = write_transcripts(dir.path(), &p).unwrap_err().to_string();
        assert!(err.contains("lacks 1 of the 2 recordings: 2.wav"), "{err}");
        crate::audio::write_wav_16k(&recording_path(dir.path(), 2), &[0.1; 16_000]).unwrap();
        write_transcripts(dir.path(), &p).unwrap();
        let loaded = crate::adapt::data::load_recordings(dir.path()).unwrap();
        assert_eq!(loaded.iter().map(|r| r.text.clone()).collect::<Vec<_>>(), p);
    }
}
