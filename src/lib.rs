//! kioku: a private voice assistant runtime. One memory-mapped speech-text model
//! file, answers to spoken questions computed locally, and offline adaptation to
//! a new speaker.
//!
//! The path of a question: [`audio`] (WAV / microphone -> 16 kHz -> log-mel) ->
//! [`model::whisper`] (encoder, ASR decoder) -> [`model::llama`] (answer), glued
//! together by [`assistant`]; [`model::file`] is the single-file model format and
//! [`import`] builds it from the pinned upstream checkpoints. [`adapt`] holds what
//! speaker adaptation needs to keep old skills, starting with the replay buffer.

pub mod adapt;
pub mod align;
pub mod assistant;
pub mod atomic;
pub mod audio;
pub mod corpus;
pub mod device;
pub mod eval;
pub mod generation;
pub mod home;
pub mod import;
pub mod listen;
pub mod model;
pub mod parity;
pub mod server;
pub mod train;
