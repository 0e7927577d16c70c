//! Quiet device probing. Listing or opening sound devices makes the C libraries under cpal print
//! their failed attempts straight to stderr, while cpal reports the same failures as errors:
//! - alsa-lib: eight lines of "ALSA lib confmisc.c:855:(parse_card) cannot find card '0'" on a
//!   machine without sound cards;
//! - libjack, loaded by ALSA's jack plugin (Debian's libasound2-plugins): about twenty lines of
//!   "Cannot connect to server socket" and "jack server is not running" per probe.
//!
//! A [`Guard`] points the process's stderr at /dev/null while it lives. Probing is brief and
//! happens before kioku starts its own work, so nothing else is printed meanwhile.

#[cfg(unix)]
pub struct Guard {
    /// The real stderr, to put back; None if it could not be saved (then nothing is silenced).
    saved: Option<libc::c_int>,
}

#[cfg(unix)]
impl Guard {
    pub fn new() -> Self {
        use std::io::Write;
        let _ = std::io::stderr().flush();
        // SAFETY: plain descriptor calls on descriptors this function owns; each result is checked.
        let saved = unsafe {
            let saved = libc::dup(libc::STDERR_FILENO);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            let silenced = saved >= 0 && null >= 0 && libc::dup2(null, libc::STDERR_FILENO) >= 0;
            if null >= 0 {
                libc::close(null);
            }
            match (silenced, saved >= 0) {
                (true, _) => Some(saved),
                (false, true) => {
                    libc::close(saved);
                    None
                }
                (false, false) => None,
            }
        };
        Self { saved }
    }
}

#[cfg(unix)]
impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            // SAFETY: puts back the descriptor saved in `new`, then closes the copy.
            unsafe {
                libc::dup2(saved, libc::STDERR_FILENO);
                libc::close(saved);
            }
        }
    }
}

#[cfg(not(unix))]
pub struct Guard;

#[cfg(not(unix))]
impl Guard {
    pub fn new() -> Self {
        Self
    }
}
