//! Measuring the assistant: word error rates and answer agreement
//! ([`metrics`]), the end-to-end report on the projector ([`projector`]), and the
//! forgetting report that compares adapted arms with the base model, and the
//! study that adapts with every remedy against forgetting ([`study`]).

pub mod forgetting;
pub mod metrics;
pub mod plot;
pub mod pocketsphinx;
pub mod projector;
pub mod report;
pub mod sets;
pub mod study;
