//! Aligning speech with the LLM: training the projector that turns Whisper
//! encoder frames into LLM input embeddings, on the synthetic corpus, with the
//! encoder and the LLM frozen.

pub mod features;
pub mod session;
pub mod trainer;
