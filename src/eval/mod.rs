//! Measuring the assistant: word error rates, answer agreement, and the
//! forgetting report that compares adapted arms with the base model.

pub mod forgetting;
pub mod metrics;
pub mod plot;
pub mod pocketsphinx;
pub mod report;
pub mod sets;
