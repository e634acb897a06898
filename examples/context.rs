//! Python's `get_context` example: a queue and a process from a spawn context, while the
//! rest of the program keeps the default start method.
//!
//! Python:
//! ```python
//! import multiprocessing as mp
//!
//! def foo(q):
//!     q.put('hello')
//!
//! if __name__ == '__main__':
//!     ctx = mp.get_context('spawn')
//!     q = ctx.Queue()
//!     p = ctx.Process(target=foo, args=(q,))
//!     p.start()
//!     print(q.get())
//!     p.join()
//! ```

use multiproc::{Queue, StartMethod, get_context};

fn foo(q: Queue<String>) {
    q.put("hello".to_string()).unwrap();
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let ctx = get_context(Some(StartMethod::Spawn));
    let q = ctx.queue()?;
    let p = ctx.process(foo, q.clone()).start()?;
    println!("{}", q.get()?);
    p.join()?;
    println!(
        "this context starts with {}, the program with {}",
        ctx.start_method().name(),
        multiproc::get_start_method().name()
    );
    Ok(())
}
