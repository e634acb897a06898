//! A pool of four runs four different functions that sleep a random time and report how
//! long they ran.
//!
//! Python:
//! ```python
//! def worker(name):
//!     start = time.time()
//!     time.sleep(random.random() * 3)
//!     return f'{name} ran {time.time() - start:.2f} s'
//!
//! if __name__ == '__main__':
//!     with Pool(4) as pool:
//!         jobs = [pool.apply_async(f, (name,)) for f, name in ...]
//!         for j in jobs:
//!             print(j.get())
//! ```

use std::time::{Duration, Instant};

use multiproc::Pool;

/// A pseudo-random pause of up to 1.5 s, different in each process.
fn pause(salt: u64) -> Duration {
    let seed = u64::from(std::process::id()).wrapping_mul(2654435761).wrapping_add(salt * 7919);
    Duration::from_millis(seed % 1500)
}

fn download(name: String) -> String {
    let start = Instant::now();
    std::thread::sleep(pause(1));
    format!("download {name}: ran {:.2} s in {}", start.elapsed().as_secs_f64(), std::process::id())
}

fn resize(name: String) -> String {
    let start = Instant::now();
    std::thread::sleep(pause(2));
    format!("resize {name}: ran {:.2} s in {}", start.elapsed().as_secs_f64(), std::process::id())
}

fn compress(name: String) -> String {
    let start = Instant::now();
    std::thread::sleep(pause(3));
    format!("compress {name}: ran {:.2} s in {}", start.elapsed().as_secs_f64(), std::process::id())
}

fn upload(name: String) -> String {
    let start = Instant::now();
    std::thread::sleep(pause(4));
    format!("upload {name}: ran {:.2} s in {}", start.elapsed().as_secs_f64(), std::process::id())
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let pool = Pool::new(4)?;
    let start = Instant::now();
    let jobs = [
        pool.apply_async(download, "a.png".to_string())?,
        pool.apply_async(resize, "b.png".to_string())?,
        pool.apply_async(compress, "c.png".to_string())?,
        pool.apply_async(upload, "d.png".to_string())?,
    ];
    for job in jobs {
        println!("{}", job.get()?);
    }
    println!("all four in {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}
