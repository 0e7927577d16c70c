//! The error a caller of the library can act on. Inside, kioku uses anyhow;
//! the entry points a program drives (loading a model or an adapter, reading
//! audio, answering, transcribing) return [`Error`], whose [`ErrorKind`] says
//! whose fault it was, so a server picks a status and a script a message
//! without matching strings. The message is anyhow's whole chain, unchanged.

/// Whose fault an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Whisper recognised no speech in the audio: nothing to answer.
    NoSpeech,
    /// The caller's input cannot be used: unreadable or non-WAV audio, audio
    /// too short, or a request the model cannot serve.
    Input,
    /// The model file or an adapter is missing, damaged or does not fit.
    Model,
    /// A fault of kioku or of the machine (memory, a device).
    Internal,
}

/// Input errors raised deep inside the assistant, which give an [`Error`] its
/// kind wherever they surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    /// Whisper recognised no speech in the audio.
    NoSpeech,
    /// Fewer samples than one mel frame pair.
    TooShort { samples: usize },
    /// An end-to-end answer was asked of a model without a projector.
    NoProjector,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSpeech => f.write_str("no speech was recognised in the audio"),
            Self::TooShort { samples } => write!(f, "the audio is too short to contain speech ({samples} samples)"),
            Self::NoProjector => f.write_str(
                "this model has no projector, so it cannot answer end-to-end; use --mode cascade or a model packed with --projector",
            ),
        }
    }
}

impl std::error::Error for InputError {}

#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    inner: anyhow::Error,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// `inner` with the kind an [`InputError`] or an earlier [`Error`] in it
    /// gives, else `otherwise`: what the entry point's own work implies.
    fn classify(inner: anyhow::Error, otherwise: ErrorKind) -> Self {
        let kind = if let Some(error) = inner.downcast_ref::<Error>() {
            error.kind
        } else {
            match inner.downcast_ref::<InputError>() {
                Some(InputError::NoSpeech) => ErrorKind::NoSpeech,
                Some(InputError::TooShort { .. } | InputError::NoProjector) => ErrorKind::Input,
                None => otherwise,
            }
        };
        Self { kind, inner }
    }

    /// A failure while answering or transcribing: the caller's fault only
    /// where an [`InputError`] says so.
    pub(crate) fn working(inner: anyhow::Error) -> Self {
        Self::classify(inner, ErrorKind::Internal)
    }

    /// A failure to load a model file or an adapter.
    pub(crate) fn model(inner: anyhow::Error) -> Self {
        Self::classify(inner, ErrorKind::Model)
    }

    /// A failure to read what the caller gave (an audio file).
    pub(crate) fn input(inner: anyhow::Error) -> Self {
        Self::classify(inner, ErrorKind::Input)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The whole chain, as `{:#}` prints an anyhow error; so no `source()`,
        // which would print the causes twice.
        write!(f, "{:#}", self.inner)
    }
}

impl std::error::Error for Error {}
