//! Real recorded speech with transcripts: Debian's pocketsphinx-testdata
//! (LibriVox read speech and spoken card names), installed by `make deps`.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub const POCKETSPHINX_DATA: &str = "/usr/share/pocketsphinx/test/data";

/// (wav, reference transcript) pairs from a pocketsphinx transcription file,
/// whose lines look like `<s> words </s> (file_id)`.
pub fn transcribed_clips(dir: &Path, transcription: &str) -> Result<Vec<(PathBuf, String)>> {
    let path = dir.join(transcription);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} (install pocketsphinx-testdata: `make deps`)", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (words, id) = line.rsplit_once('(')?;
            let words = words.replace("<s>", "").replace("</s>", "");
            Some((dir.join(format!("{}.wav", id.trim_end_matches(')').trim())), words.trim().to_string()))
        })
        .collect())
}

/// The 10 clips kioku reports real-speech WER on: 5 LibriVox sentences and 5 card names.
pub fn pocketsphinx_clips() -> Result<Vec<(PathBuf, String)>> {
    let data = Path::new(POCKETSPHINX_DATA);
    let mut clips = transcribed_clips(&data.join("librivox"), "transcription")?;
    clips.extend(transcribed_clips(&data.join("cards"), "cards.transcription")?);
    Ok(clips)
}
