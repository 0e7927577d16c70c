//! kioku: a private voice assistant runtime. One memory-mapped speech-text model
//! file, answers to spoken questions computed locally, and offline adaptation to
//! a new speaker.
//!
//! The path of a question: [`audio`] (WAV / microphone -> 16 kHz -> log-mel) ->
//! [`model::whisper`] (encoder, ASR decoder) -> [`model::llama`] (answer), glued
//! together by [`assistant`]; [`model::file`] is the single-file model format and
//! [`import`] builds it from the pinned upstream checkpoints. [`adapt`] holds what
//! speaker adaptation needs to keep old skills, starting with the replay buffer.
//!
//! The modules form layers, and each uses its own layer or those below: shared
//! pieces ([`atomic`], [`home`], [`generation`], [`training`]), then [`audio`] and
//! [`model`], then [`device`], [`import`] and [`assistant`], then the features
//! ([`listen`], [`server`], [`parity`], [`corpus`], [`adapt`], [`projector_training`],
//! [`eval`]). [`model`] never uses [`import`], and the command line
//! (`src/cli/`, in the binary) uses the library, never the other way.
//! docs/ARCHITECTURE.md has the whole map, the fast and the trainable path, and
//! where to add a model family, an importer or a command.

pub mod adapt;
mod assembly;
pub mod assistant;
pub mod atomic;
pub mod audio;
pub mod corpus;
pub mod device;
pub mod error;
pub mod eval;
pub mod generation;
pub mod home;
pub mod import;
pub mod listen;
pub mod model;
pub mod parity;
pub mod projector_training;
pub mod server;
pub mod training;
pub mod tts;

pub use error::{Error, ErrorKind};
