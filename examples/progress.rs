//! A progress bar over a pool call: `imap` over a `Vec` knows its length, so the bar has
//! a total; after `map` the next line starts on a line of its own. On a non-terminal (a
//! CI log, a pipe) nothing is drawn.
//!
//! Python (with `tqdm`):
//! ```python
//! with Pool(2) as pool:
//!     squares = list(tqdm(pool.imap(square, list(range(200))), total=200))
//!     print('imap done')
//!     pool.map(square, range(200))
//!     print('map done')
//! ```

use multiproc::{MapOptions, Pool};

fn square(x: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(2));
    x * x
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let pool = Pool::new(2)?;
    let items: Vec<u64> = (0..200).collect();
    let squares: Vec<u64> =
        pool.imap_with(square, items, MapOptions::new().progress(true))?.collect::<Result<_, _>>()?;
    println!("imap done: {}", squares.len());
    let squares = pool.map_with(square, 0..200u64, MapOptions::new().progress(true))?;
    println!("map done: {}", squares.len());
    Ok(())
}
