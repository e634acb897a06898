//! A spin that follows the load, for the waits of a start and a join.
//!
//! A start + join of a short child waits twice for another process: the fork server's
//! answer, and the child's end. On a quiet machine the answer comes within a few hundred
//! microseconds and a sleeping waiter takes tens of microseconds to wake (more on a
//! virtual machine whose idle processor the host descheduled), so polling for it pays. On
//! a busy machine the same polling takes the processor the child or the server needs,
//! and the answer comes later than any spin lasts. So a [`LoadSpin`] gives up a spin as
//! soon as the machine shows it is busy: when the spinning thread was kept off the
//! processor for a while (a poll that took longer than [`BUSY_GAP`]), which counts as a
//! miss even if the answer came meanwhile. After spins that missed it spins only once in
//! `2^k` waits (`k` the misses in a row, at most [`MAX_MISSES`]), as the pool's polled
//! futures do; a spin that caught its answer spins every time again.
//!
//! The spinner does not yield between polls: on a busy machine a `sched_yield` puts it
//! behind every runnable task, and it may come back milliseconds after the child ended
//! (a same-run A/B at load 10-11: some runs' median fork start + join was 3.3 ms with a
//! yielding spin), where a sleeper woken by the child's end runs at once. At load 7-8
//! yielding was no better than not.
//!
//! A process that may run on one processor only (`taskset -c 0`, a one-processor
//! container) never spins: the child or the server it waits for inherited that processor
//! and can only run once the spinner stops, so every such spin would be a miss.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A poll that took longer than this means the spinning thread was not running: another
/// process had the processor, so the machine is busy.
const BUSY_GAP: Duration = Duration::from_micros(50);
/// After this many missed spins in a row, one wait in `2^MAX_MISSES` spins.
const MAX_MISSES: u32 = 6;

/// Whether this process may run on one processor only (read once: its affinity mask and
/// cgroup quota, as [`crate::cpu_count`]).
fn one_processor() -> bool {
    static ONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONE.get_or_init(|| crate::cpu_count() == 1)
}

/// The spinning record of one kind of wait in this process.
#[derive(Debug)]
pub(crate) struct LoadSpin {
    /// Spins in a row that ended without their answer.
    misses: AtomicU32,
    /// Waits still to come that do not spin.
    skips: AtomicU32,
}

impl LoadSpin {
    pub(crate) const fn new() -> Self {
        Self { misses: AtomicU32::new(0), skips: AtomicU32::new(0) }
    }

    /// Polls `ready` for up to `limit`, unless recent spins missed (then once only).
    /// `None`: no answer yet, sleep for it. A zero `limit` (a wait that must not wait)
    /// polls once and leaves the record as it is.
    pub(crate) fn spin<T>(&self, limit: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
        if let Some(v) = ready() {
            return Some(v);
        }
        if limit.is_zero() || one_processor() || self.skip() {
            return None;
        }
        let start = Instant::now();
        let mut last = start;
        let (caught, busy) = loop {
            std::hint::spin_loop();
            let polled = ready();
            let now = Instant::now();
            // Kept off the processor: whatever the poll found, spinning did not pay.
            let busy = now - last > BUSY_GAP;
            if polled.is_some() || busy || now - start >= limit {
                break (polled, busy);
            }
            last = now;
        };
        self.record(caught.is_some() && !busy);
        caught
    }

    /// Whether this wait skips its spin (recent spins missed); counts it as skipped. For a
    /// caller that spins its own way (the pool's polled futures), with [`LoadSpin::record`].
    pub(crate) fn skip(&self) -> bool {
        self.skips.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| s.checked_sub(1)).is_ok()
    }

    /// Records how a spin ended: one that caught its answer makes every later wait spin;
    /// after `k` misses in a row, one wait in `2^k` does.
    pub(crate) fn record(&self, caught: bool) {
        if caught {
            self.misses.store(0, Ordering::Relaxed);
        } else {
            let misses = (self.misses.load(Ordering::Relaxed) + 1).min(MAX_MISSES);
            self.misses.store(misses, Ordering::Relaxed);
            self.skips.store((1 << misses) - 1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins with `record` for an answer that never comes; returns how often it looked.
    fn looks_without_answer(record: &LoadSpin, limit: Duration) -> usize {
        let mut looks = 0;
        let answer: Option<()> = record.spin(limit, || {
            looks += 1;
            None
        });
        assert!(answer.is_none());
        looks
    }

    #[test]
    fn an_answer_already_there_is_taken_without_spinning() {
        let record = LoadSpin::new();
        let mut looks = 0;
        let answer = record.spin(Duration::from_secs(1), || {
            looks += 1;
            Some(7)
        });
        assert_eq!((answer, looks), (Some(7), 1));
    }

    #[test]
    fn after_a_missed_spin_the_next_wait_looks_once_then_spins_again() {
        if one_processor() {
            return; // No wait spins there.
        }
        let record = LoadSpin::new();
        assert!(looks_without_answer(&record, Duration::from_micros(200)) > 1, "the first wait spins");
        assert_eq!(looks_without_answer(&record, Duration::from_micros(200)), 1, "one miss: the next wait skips");
        assert!(looks_without_answer(&record, Duration::from_micros(200)) > 1, "then it spins again");
        // Two misses in a row: three waits skip.
        for _ in 0..3 {
            assert_eq!(looks_without_answer(&record, Duration::from_micros(200)), 1);
        }
        assert!(looks_without_answer(&record, Duration::from_micros(200)) > 1);
    }

    #[test]
    fn misses_in_a_row_leave_one_wait_in_two_to_the_max_spinning() {
        let record = LoadSpin::new();
        let mut spun = 0;
        for _ in 0..300 {
            if looks_without_answer(&record, Duration::from_micros(10)) > 1 {
                spun += 1;
            }
        }
        // 1 + 2 + 4 + ... + 64 waits for the first seven spins, then one in 64.
        assert!(spun <= 7 + 300 / (1 << MAX_MISSES), "{spun} of 300 waits spun");
    }

    #[test]
    fn a_wait_that_must_not_wait_looks_once_and_leaves_the_record_alone() {
        if one_processor() {
            return; // No wait spins there.
        }
        let record = LoadSpin::new();
        assert_eq!(looks_without_answer(&record, Duration::ZERO), 1);
        assert!(looks_without_answer(&record, Duration::from_micros(200)) > 1, "no miss was recorded");
    }
}
