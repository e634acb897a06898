//! A child process changes a managed dict and reverses a managed list; the parent prints
//! both. Then the same done by ten processes in turn: the list is reversed ten times, so
//! it comes back in order.
//!
//! Python:
//! ```python
//! from multiprocessing import Process, Manager
//!
//! def f(d, l):
//!     d[1] = '1'
//!     d['2'] = 2
//!     d[0.25] = None
//!     l.reverse()
//!
//! if __name__ == '__main__':
//!     with Manager() as manager:
//!         d = manager.dict()
//!         l = manager.list(range(10))
//!
//!         p = Process(target=f, args=(d, l))
//!         p.start()
//!         p.join()
//!
//!         print(d)
//!         print(l)
//!
//!         # The same done by ten processes in turn, on a new dict and list.
//!         d = manager.dict()
//!         l = manager.list(range(10))
//!         for _ in range(10):
//!             p = Process(target=f, args=(d, l))
//!             p.start()
//!             p.join()
//!
//!         print(d)
//!         print(l)
//! ```
//!
//! prints (Python 3.7+, whose dicts keep insertion order):
//! ```text
//! {1: '1', '2': 2, 0.25: None}
//! [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
//! {1: '1', '2': 2, 0.25: None}
//! [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
//! ```

use std::fmt;

use multiproc::{DictProxy, ListProxy, Manager, Process};
use serde::{Deserialize, Serialize};

/// Rust keys are typed: Python's dict mixes an int, a str and a float as keys, so the key
/// type is an enum of the three (keys are equal when they encode the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Key {
    Int(i64),
    Str(String),
    Float(f64),
}

/// And the values mix a str, an int and None.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Val {
    Str(String),
    Int(i64),
    None,
}

/// Python's `repr` of each, so that the output reads as Python's.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(n) => write!(f, "{n}"),
            Key::Str(s) => write!(f, "'{s}'"),
            Key::Float(x) => write!(f, "{x}"),
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Str(s) => write!(f, "'{s}'"),
            Val::Int(n) => write!(f, "{n}"),
            Val::None => write!(f, "None"),
        }
    }
}

fn f((d, l): (DictProxy<Key, Val>, ListProxy<i32>)) {
    d.insert(Key::Int(1), Val::Str("1".into())).unwrap();
    d.insert(Key::Str("2".into()), Val::Int(2)).unwrap();
    d.insert(Key::Float(0.25), Val::None).unwrap();
    l.reverse().unwrap();
}

fn print_both(d: &DictProxy<Key, Val>, l: &ListProxy<i32>) -> Result<(), multiproc::ManagerError> {
    let pairs: Vec<String> = d.items()?.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("{{{}}}", pairs.join(", "));
    println!("{:?}", l.to_vec()?);
    Ok(())
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = Manager::start()?;
    let d = manager.dict::<Key, Val>()?;
    let l = manager.list_from(0..10)?;

    Process::new(f, (d.clone(), l.clone())).start()?.join()?;
    print_both(&d, &l)?;

    let d = manager.dict::<Key, Val>()?;
    let l = manager.list_from(0..10)?;
    for _ in 0..10 {
        Process::new(f, (d.clone(), l.clone())).start()?.join()?;
    }
    print_both(&d, &l)?;
    Ok(())
}
