//! The names of a model file's components: the prefix of every tensor each one owns
//! (`encoder.layers.0…`). A leaf that imports nothing, so that the file format, the modules
//! and the adapters can all name components without depending on each other.

pub const ENCODER: &str = "encoder";
pub const ASR_DECODER: &str = "asr_decoder";
pub const PROJECTOR: &str = "projector";
/// The LLM adapter trained with the projector, applied on audio turns only.
pub const SPEECH_LORA: &str = "speech_lora";
pub const LLM: &str = "llm";
/// The voice activity detector (Silero VAD), optional: listening falls back to energy endpointing without it.
pub const VAD: &str = "vad";
