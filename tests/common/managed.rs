//! For the manager's tests (family and remote): a registered type, and signals for
//! stopping a server.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Long enough for a loaded machine's healthy server to answer a ping.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    pub n: i64,
    pub log: Vec<String>,
}

impl Counter {
    pub fn incr(&mut self, by: i64) -> i64 {
        self.n += by;
        self.n
    }

    pub fn get(&self) -> i64 {
        self.n
    }

    pub fn note(&mut self, who: String, what: String) {
        self.log.push(format!("{who}: {what}"));
    }

    pub fn explode(&mut self) -> i64 {
        panic!("the counter exploded");
    }
}

multiproc::managed! {
    /// A `Counter` kept by the manager.
    pub proxy CounterProxy for Counter {
        fn incr(&mut self, by: i64) -> i64;
        fn get(&self) -> i64;
        fn note(&mut self, who: String, what: String);
        fn explode(&mut self) -> i64;
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: sending a signal to a process id has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}
