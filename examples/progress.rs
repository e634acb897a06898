//! A progress bar over a pool call: `imap` over a `Vec` knows its length, so the bar has
//! a total; after `map` the next line starts on a line of its own. On a non-terminal (a
//! CI log, a pipe) nothing is drawn. With the argument `fail`, a task of a `map` panics:
//! the bar stops there and the error is printed on a line of its own.
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

fn square_but_100(x: u64) -> u64 {
    assert_ne!(x, 100, "no square for 100");
    square(x)
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let pool = Pool::new(2)?;
    if std::env::args().nth(1).as_deref() == Some("fail") {
        let failed = pool.map_with(square_but_100, 0..200u64, MapOptions::new().progress(true)).unwrap_err();
        println!("map failed: {failed}");
        return Ok(());
    }
    let items: Vec<u64> = (0..200).collect();
    let squares: Vec<u64> =
        pool.imap_with(square, items, MapOptions::new().progress(true))?.collect::<Result<_, _>>()?;
    println!("imap done: {}", squares.len());
    let squares = pool.map_with(square, 0..200u64, MapOptions::new().progress(true))?;
    println!("map done: {}", squares.len());
    Ok(())
}
