//! The threads that share one matrix product on the CPU, as llama.cpp's do:
//! the calling thread takes chunks of the work too, helpers spin briefly
//! between products and sleep when idle, and a product ends as soon as its
//! chunks are done, whichever threads did them.
//!
//! Why not rayon or candle's barrier pool:
//! - rayon sleeps the caller and wakes its workers for every product: 210
//!   products per token made 130k `sched_yield` calls for a 128-token answer,
//!   with three busy threads on two cores;
//! - candle's barrier pool waits until every worker has checked in, so one
//!   worker that the OS has parked (another program is busy) stalls every
//!   product: decode fell from 58 to 3 tok/s while a compiler ran.

use std::ops::Range;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, OnceLock};

/// Spins a helper makes looking for work before it sleeps (about 1 ms):
/// longer than the gap between two products while a token decodes.
const SPINS_BEFORE_SLEEP: usize = 20_000;
/// Spins the caller makes waiting for a helper's last chunk before yielding its core.
const SPINS_BEFORE_YIELD: usize = 1_000;

type Task<'a> = dyn Fn(Range<usize>) + Sync + 'a;

/// Ranges per thread for work whose ranges cost alike: enough that a thread
/// the OS runs late leaves most of its share to the others.
pub const BALANCED_CHUNKS: usize = 4;

/// One product in flight, on the caller's stack.
struct Job {
    task: *const Task<'static>,
    items: usize,
    chunk: usize,
    next: AtomicUsize,
    done: AtomicUsize,
}

impl Job {
    fn run_chunks(&self) {
        loop {
            let start = self.next.fetch_add(self.chunk, SeqCst);
            if start >= self.items {
                return;
            }
            let end = (start + self.chunk).min(self.items);
            // SAFETY: `task` outlives the job (see `CpuPool::for_each_chunk`).
            unsafe { (*self.task)(start..end) };
            self.done.fetch_add(end - start, SeqCst);
        }
    }
}

#[derive(Default)]
struct Shared {
    /// The job in flight, or null.
    job: AtomicPtr<Job>,
    /// Bumped for every job, so a helper joins each one once.
    job_id: AtomicUsize,
    /// Helpers that may be reading `job`.
    busy: AtomicUsize,
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

pub struct CpuPool {
    shared: &'static Shared,
    helpers: usize,
    /// One product at a time; a concurrent caller runs its product alone.
    submit: Mutex<()>,
}

/// Threads for CPU work: `RAYON_NUM_THREADS` when it is a positive number,
/// else one per physical core.
pub fn threads() -> usize {
    let from_env = std::env::var("RAYON_NUM_THREADS").ok().and_then(|n| n.parse::<usize>().ok()).filter(|&n| n > 0);
    from_env.unwrap_or_else(num_cpus::get_physical).max(1)
}

/// The process's pool: [`threads`] in all, counting the caller.
pub fn global() -> &'static CpuPool {
    static POOL: OnceLock<CpuPool> = OnceLock::new();
    POOL.get_or_init(|| CpuPool::new(threads() - 1))
}

/// One output buffer that a product's chunks write from several threads,
/// each at its own elements.
#[derive(Clone, Copy)]
pub struct SharedOut(*mut f32);
// SAFETY: writers never share an element (see `SharedOut::at`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub fn new(out: &mut [f32]) -> Self {
        Self(out.as_mut_ptr())
    }

    /// Element `i`.
    ///
    /// # Safety
    /// `i` lies in the buffer, the buffer outlives the product, and no other
    /// chunk touches the elements written through it.
    pub unsafe fn at(self, i: usize) -> *mut f32 {
        self.0.add(i)
    }
}

impl CpuPool {
    fn new(helpers: usize) -> Self {
        let shared: &'static Shared = Box::leak(Box::default());
        for i in 0..helpers {
            let spawned = std::thread::Builder::new().name(format!("kioku-cpu-{i}")).spawn(move || help(shared));
            if spawned.is_err() {
                // Fewer helpers only means less parallelism.
                return Self { shared, helpers: i, submit: Mutex::new(()) };
            }
        }
        Self { shared, helpers, submit: Mutex::new(()) }
    }

    /// Calls `task` on disjoint ranges covering `0..items`, on this thread and
    /// the helpers, in about `chunks_per_thread` ranges per thread: more ranges
    /// let a thread that runs late leave its share to the others.
    pub fn for_each_chunk(&self, items: usize, chunks_per_thread: usize, task: &Task<'_>) {
        let submitted = if self.helpers == 0 { None } else { self.submit.try_lock().ok() };
        let Some(_submitted) = submitted else { return task(0..items) };
        let chunk = items.div_ceil((self.helpers + 1) * chunks_per_thread.max(1)).max(1);
        // SAFETY: only the lifetime is erased. Helpers reach the task through
        // `shared.job`, which is cleared, and `busy` drained, before this returns.
        let task: *const Task<'static> = unsafe { std::mem::transmute(task as *const Task<'_>) };
        let job = Job { task, items, chunk, next: AtomicUsize::new(0), done: AtomicUsize::new(0) };
        let shared = self.shared;
        shared.job.store(&job as *const Job as *mut Job, SeqCst);
        shared.job_id.fetch_add(1, SeqCst);
        if shared.sleepers.load(SeqCst) > 0 {
            let _lock = shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        job.run_chunks();
        wait_until(|| job.done.load(SeqCst) == items);
        shared.job.store(std::ptr::null_mut(), SeqCst);
        wait_until(|| shared.busy.load(SeqCst) == 0);
    }
}

fn wait_until(condition: impl Fn() -> bool) {
    let mut spins = 0;
    while !condition() {
        spins += 1;
        if spins < SPINS_BEFORE_YIELD {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

fn help(shared: &'static Shared) {
    let mut joined = 0;
    loop {
        let mut spins = 0;
        while shared.job_id.load(SeqCst) == joined {
            spins += 1;
            if spins < SPINS_BEFORE_SLEEP {
                std::hint::spin_loop();
                continue;
            }
            let mut lock = shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
            shared.sleepers.fetch_add(1, SeqCst);
            while shared.job_id.load(SeqCst) == joined {
                lock = shared.wake.wait(lock).unwrap_or_else(|e| e.into_inner());
            }
            shared.sleepers.fetch_sub(1, SeqCst);
            spins = 0;
        }
        joined = shared.job_id.load(SeqCst);
        shared.busy.fetch_add(1, SeqCst);
        let job = shared.job.load(SeqCst);
        if !job.is_null() {
            // A kernel that panics would leave its caller waiting forever.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*job).run_chunks() }));
            if ran.is_err() {
                std::process::abort();
            }
        }
        shared.busy.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_visited_once_from_many_callers() {
        let pool = CpuPool::new(3);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for (items, chunks_per_thread) in [(1, 4), (7, 4), (1000, 4), (1000, 2), (5, 0)] {
                        let seen: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
                        pool.for_each_chunk(items, chunks_per_thread, &|range: Range<usize>| {
                            for i in range {
                                seen[i].fetch_add(1, SeqCst);
                            }
                        });
                        assert!(seen.iter().all(|n| n.load(SeqCst) == 1));
                    }
                });
            }
        });
    }
}
