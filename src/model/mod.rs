//! Neural modules (our own code, so they can carry LoRA and be trained through)
//! and the merged model file that holds them. Nothing here uses the importers
//! or the assistant: the modules only read a kioku model file, and each runs
//! on a fast path or a trainable one (docs/ARCHITECTURE.md, "Two ways to run
//! every model: fast and trainable").

pub mod adapter_scope;
pub mod audio_turn;
pub mod bpe;
pub mod components;
pub mod cpu_pool;
pub mod file;
pub mod gguf_layout;
pub mod gguf_lora;
pub mod hf_names;
pub mod linear;
pub mod llama;
pub mod lora;
pub mod mapped;
pub mod norm;
pub mod ops;
pub mod packed;
pub mod peft;
pub mod projector;
pub mod silero;
pub mod weights;
pub mod whisper;
