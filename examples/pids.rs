//! A child prints its pid and its parent's; the parent prints its own.
//!
//! Python:
//! ```python
//! def run_proc(name):
//!     print('Run child process %s (%s), parent %s...' % (name, os.getpid(), os.getppid()))
//!
//! if __name__ == '__main__':
//!     print('Parent process %s.' % os.getpid())
//!     p = Process(target=run_proc, args=('test',))
//!     print('Child process will start.')
//!     p.start()
//!     p.join()
//!     print('Child process end.')
//! ```
//!
//! `MULTIPROC_START_METHOD=spawn|fork|forkserver` picks the start method.

use multiproc::{Process, StartMethod};

fn run_proc(name: String) {
    let parent = multiproc::parent_process().map_or(0, |p| p.pid());
    println!("Run child process {name} ({}), parent {parent}...", std::process::id());
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let method = match std::env::var("MULTIPROC_START_METHOD").as_deref() {
        Ok("spawn") => StartMethod::Spawn,
        Ok("fork") => StartMethod::Fork,
        _ => StartMethod::ForkServer,
    };
    println!("Parent process {}.", std::process::id());
    let p = Process::new(run_proc, "test".to_string()).start_method(method);
    println!("Child process will start.");
    p.start()?.join()?;
    println!("Child process end.");
    Ok(())
}
