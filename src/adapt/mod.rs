//! Offline adaptation to a new speaker without forgetting: the [`replay`] buffer of
//! past training items that every adaptation step mixes in.

pub mod replay;
