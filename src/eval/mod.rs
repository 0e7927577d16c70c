//! Measuring the assistant: word error rates and answer agreement.

pub mod metrics;
