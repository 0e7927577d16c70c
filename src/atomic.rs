//! Crash-safe file replacement: write a temp file beside the target, fsync it,
//! rename it over the target, fsync the directory. A killed process leaves
//! either the old file or the new one, never half of one.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Calls `write` with a temporary path in the target's directory, then makes
/// that file durable and moves it to `path`. The temp file is removed on error.
/// The file keeps the mode of the one it replaces; a new file is 0644, so other
/// users of a workstation can read a shared model (some writers, such as
/// safetensors', create 0600 files).
pub fn replace_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    let name = path.file_name().with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = write(&tmp).and_then(|()| {
        set_mode_like(&tmp, path)?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself; not every platform lets a directory be opened.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(unix)]
fn set_mode_like(tmp: &Path, target: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(target).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode_like(_tmp: &Path, _target: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Atomically replaces `path` with `bytes`.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_with(path, |tmp| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)?;
        Ok(())
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_file_is_0644_and_a_replaced_one_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        // A writer that creates its file 0600, as safetensors' does.
        let private_writer = |tmp: &Path| -> Result<()> {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(tmp)?
                .write_all(b"x")?;
            Ok(())
        };
        replace_with(&path, private_writer).unwrap();
        assert_eq!(mode(&path), 0o644);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace_with(&path, private_writer).unwrap();
        assert_eq!(mode(&path), 0o640);
        write_bytes(&path, b"y").unwrap();
        assert_eq!(mode(&path), 0o640);
    }
}
