//! Measuring the assistant: word error rates and answer agreement
//! ([`metrics`]) and the end-to-end alignment report ([`align`]).

pub mod align;
pub mod metrics;
pub mod real_speech;
