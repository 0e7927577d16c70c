//! Whether the LLM is reading an audio turn, on this thread. Adapters made for
//! spoken input (the model's speech adapter, and speaker adapters trained with
//! the gate) act on the LLM inside an audio turn only, so typed questions and
//! the cascade's transcripts run the unchanged LLM. Like adapter scopes, the
//! gate is per thread: a model's layers are walked on their caller's thread.

use std::cell::Cell;
use std::marker::PhantomData;

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Opens the gate until dropped.
pub struct AudioTurn {
    /// Dropped on the thread that made it.
    _not_send: PhantomData<*const ()>,
}

impl AudioTurn {
    pub fn enter() -> Self {
        DEPTH.with(|depth| depth.set(depth.get() + 1));
        Self { _not_send: PhantomData }
    }
}

impl Drop for AudioTurn {
    fn drop(&mut self) {
        DEPTH.with(|depth| depth.set(depth.get() - 1));
    }
}

/// Whether an audio turn is open on this thread.
pub fn is_open() -> bool {
    DEPTH.with(|depth| depth.get() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_is_open_inside_a_turn_only_and_on_its_thread() {
        assert!(!is_open());
        {
            let _turn = AudioTurn::enter();
            assert!(is_open());
            {
                let _nested = AudioTurn::enter();
                assert!(is_open());
            }
            assert!(is_open(), "the outer turn is still open");
            assert!(!std::thread::scope(|s| s.spawn(is_open).join().unwrap()), "another thread");
        }
        assert!(!is_open());
    }
}
