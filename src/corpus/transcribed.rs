//! A directory of one speaker's clips: `<id>.wav` files and `transcripts.tsv`
//! with one `id<TAB>text` line per clip. It is what `kioku adapt` trains on and
//! what `kioku eval` scores a new speaker on; each corpus split folder has the
//! same layout.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub const TRANSCRIPTS_FILE: &str = "transcripts.tsv";

/// One clip with what is said in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TranscribedClip {
    pub id: String,
    pub path: PathBuf,
    pub text: String,
}

/// The clips listed in `dir/transcripts.tsv`, in file order; every listed
/// WAV must exist and no id may appear twice. Empty lines are skipped; an
/// empty list is an error. Checked up front, so a typo fails in a second,
/// not minutes into training.
pub fn read_transcribed_dir(dir: &Path) -> Result<Vec<TranscribedClip>> {
    if !dir.is_dir() {
        bail!("{} is not a directory (expected WAV files and {TRANSCRIPTS_FILE})", dir.display());
    }
    let tsv = dir.join(TRANSCRIPTS_FILE);
    let text = std::fs::read_to_string(&tsv)
        .with_context(|| format!("{} is missing or unreadable (one `id<TAB>text` line per WAV file)", tsv.display()))?;
    let mut clips = Vec::new();
    let mut seen = HashSet::new();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let where_ = || format!("{} line {}", tsv.display(), number + 1);
        let Some((id, said)) =
            line.split_once('\t').filter(|(id, said)| !id.trim().is_empty() && !said.trim().is_empty())
        else {
            bail!("{}: expected `id<TAB>text`", where_());
        };
        let id = id.trim().trim_end_matches(".wav");
        if !seen.insert(id.to_string()) {
            bail!("{}: id `{id}` appears twice", where_());
        }
        let path = dir.join(format!("{id}.wav"));
        if !path.is_file() {
            bail!("{}: {} not found", where_(), path.display());
        }
        clips.push(TranscribedClip { id: id.to_string(), path, text: said.trim().to_string() });
    }
    if clips.is_empty() {
        bail!("{} lists no clips", tsv.display());
    }
    Ok(clips)
}

/// Writes `texts` spoken by `voice` into `dir` as `<NN>.wav` plus
/// `transcripts.tsv`, written last so that an interrupted run leaves no
/// directory that looks complete. Returns the clips in the order of `texts`.
pub fn synthesize_transcribed_dir(dir: &Path, voice: &super::Voice, texts: &[String]) -> Result<Vec<TranscribedClip>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tsv = String::new();
    let mut clips = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let audio = super::synthesize(text, voice, &super::AUGMENTATIONS[0], i as u64)?;
        let id = format!("{i:02}");
        let path = dir.join(format!("{id}.wav"));
        crate::audio::write_wav_16k(&path, &audio)?;
        tsv.push_str(&format!("{id}\t{text}\n"));
        clips.push(TranscribedClip { id, path, text: text.clone() });
    }
    crate::atomic::write_bytes(&dir.join(TRANSCRIPTS_FILE), tsv.as_bytes())?;
    Ok(clips)
}
