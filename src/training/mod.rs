//! What every training loop in kioku shares: the optimizer with its learning
//! rate schedule and gradient clipping, and crash-safe checkpoints.

pub mod checkpoint;
pub mod optimizer;

pub use checkpoint::Checkpoint;
pub use optimizer::{AdamW, AdamWConfig, LrSchedule};
