//! Real recorded speech with transcripts: Debian's pocketsphinx-testdata
//! (LibriVox read speech, then spoken card names), whose transcription files
//! have lines like `<s> words </s> (file_id)`.

use crate::corpus::TranscribedClip;
use anyhow::{Context, Result};
use std::path::Path;

/// Where the Debian package installs the clips.
pub const DATA_DIR: &str = "/usr/share/pocketsphinx/test/data";

/// The clips listed in `DATA_DIR/<subdir>/<transcription>`, in file order.
pub fn clips(subdir: &str, transcription: &str) -> Result<Vec<TranscribedClip>> {
    let dir = Path::new(DATA_DIR).join(subdir);
    let path = dir.join(transcription);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot read {} (install it with `apt-get install pocketsphinx-testdata`)", path.display())
    })?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (words, id) = line.rsplit_once('(')?;
            let id = id.trim_end_matches(')').trim();
            let words = words.replace("<s>", "").replace("</s>", "");
            Some(TranscribedClip {
                id: format!("{subdir}/{id}"),
                path: dir.join(format!("{id}.wav")),
                text: words.trim().to_string(),
            })
        })
        .collect())
}

/// All ten clips: the five LibriVox sentences, then the five card-name clips.
pub fn real_speech() -> Result<Vec<TranscribedClip>> {
    let mut all = clips("librivox", "transcription")?;
    all.extend(clips("cards", "cards.transcription")?);
    Ok(all)
}
