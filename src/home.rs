//! Where kioku finds its default model, so that an installed `kioku` works
//! from any directory: `$KIOKU_MODEL` (read by the CLI), then `./models/` (a
//! checkout, where `make model` builds it), then the data directory that
//! `make install` fills, `${XDG_DATA_HOME:-~/.local/share}/kioku/models/`.

use std::path::{Path, PathBuf};

/// The file name of the default model.
pub const DEFAULT_MODEL_FILE: &str = "kioku-tiny-en.safetensors";

/// `${XDG_DATA_HOME:-~/.local/share}/kioku`, or `None` without a home directory.
pub fn data_dir() -> Option<PathBuf> {
    // The XDG spec ignores a relative XDG_DATA_HOME.
    let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let base =
        xdg.or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join(".local/share")))?;
    Some(base.join("kioku"))
}

/// The places the default model is looked for, in order.
pub fn default_model_candidates() -> Vec<PathBuf> {
    let mut places = vec![Path::new("models").join(DEFAULT_MODEL_FILE)];
    places.extend(data_dir().map(|d| d.join("models").join(DEFAULT_MODEL_FILE)));
    places
}

/// The first candidate that exists; the first one if none does (the loader
/// then says it is missing and how to build it).
pub fn default_model() -> PathBuf {
    let places = default_model_candidates();
    places.iter().find(|p| p.is_file()).unwrap_or(&places[0]).clone()
}
