//! The KTV: ten guests, four rooms (a `Semaphore(4)`); each guest walks in, sings for 1
//! to 3 seconds, and walks out. The example checks that never more than four are inside.
//!
//! Python:
//! ```python
//! import random, time
//! from multiprocessing import Process, Semaphore
//!
//! def ktv(i, sem):
//!     sem.acquire()
//!     print(f'guest {i} walks into a room')
//!     time.sleep(random.randint(1, 3))
//!     print(f'guest {i} walks out')
//!     sem.release()
//!
//! if __name__ == '__main__':
//!     sem = Semaphore(4)
//!     ps = [Process(target=ktv, args=(i, sem)) for i in range(10)]
//!     for p in ps: p.start()
//!     for p in ps: p.join()
//! ```

use std::time::Duration;

use multiproc::{Lock, Process, RawValue, Semaphore};

const ROOMS: u32 = 4;

/// How many guests are inside, and the most there ever were; changed under `count_lock`.
type Tally = (RawValue<u32>, RawValue<u32>, Lock);

fn ktv((i, rooms, (inside, most, count_lock)): (u32, Semaphore, Tally)) {
    let room = rooms.acquire().unwrap();
    {
        let _g = count_lock.acquire().unwrap();
        inside.set(inside.get() + 1);
        most.set(most.get().max(inside.get()));
    }
    println!("guest {i} walks into a room");
    // 1 to 3 seconds, spread over the guests (Python draws them at random).
    let seconds = 1 + (i * 7 + std::process::id()) % 3;
    std::thread::sleep(Duration::from_secs(u64::from(seconds)));
    println!("guest {i} walks out");
    {
        let _g = count_lock.acquire().unwrap();
        inside.set(inside.get() - 1);
    }
    drop(room);
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let rooms = Semaphore::new(ROOMS)?;
    let tally: Tally = (RawValue::new(0)?, RawValue::new(0)?, Lock::new()?);
    let guests: Vec<_> =
        (0..10).map(|i| Process::new(ktv, (i, rooms.clone(), tally.clone())).start()).collect::<Result<_, _>>()?;
    for guest in guests {
        guest.join()?;
    }
    let most = tally.1.get();
    println!("at most {most} guests were inside at once ({ROOMS} rooms)");
    assert!(most <= ROOMS, "the semaphore let {most} guests in");
    assert_eq!(rooms.get_value(), ROOMS);
    Ok(())
}
