//! Offline adaptation to a new speaker without forgetting: the [`replay`] buffer of
//! past training items that every adaptation step mixes in, and [`merge`], which
//! bakes adapters and fine-tunes into a new model file.

pub mod merge;
pub mod replay;
