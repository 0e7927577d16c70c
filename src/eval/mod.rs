//! Measuring the assistant: word error rates and answer agreement
//! ([`metrics`]), the end-to-end alignment report ([`align`]), and the
//! forgetting report that compares adapted arms with the base model, and the
//! study that adapts with every remedy against forgetting ([`study`]).

pub mod align;
pub mod forgetting;
pub mod metrics;
pub mod plot;
pub mod pocketsphinx;
pub mod report;
pub mod sets;
pub mod study;
