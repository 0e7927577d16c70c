//! Offline adaptation to a new speaker without forgetting: LoRA adapters
//! trained on the speaker's [`data`] by the [`trainer`], with items of the
//! [`replay`] buffer mixed into every step; [`session`] runs one adaptation
//! end to end; [`enroll`] gathers a speaker's recordings; [`merge`] bakes
//! adapters and fine-tunes into a new model file.

pub mod data;
pub mod enroll;
pub mod merge;
pub mod replay;
pub mod session;
pub mod trainer;
