//! Targets that take and return plain values (a number, a `bool`, a `char`, `()`), which a
//! child reads and reports without the codec's general path (start40): each value must
//! come back exactly, and a panic as a panic, whatever the child reports through (its
//! boot socket or its report room).

use multiproc::{JoinError, Process, StartMethod};

fn widest(x: u128) -> u128 {
    x
}

fn negated(x: i128) -> i128 {
    x.wrapping_neg()
}

fn next_char(c: char) -> char {
    char::from_u32(c as u32 + 1).unwrap_or(c)
}

fn halved(x: f64) -> f64 {
    x / 2.0
}

fn not(b: bool) -> bool {
    !b
}

fn nothing(_: ()) {}

fn refuse(n: u8) -> u8 {
    panic!("refused {n}");
}

/// Starts each plain target with `method` and checks what comes back.
pub fn values_and_panics_come_back(method: StartMethod) {
    let widest = Process::new(widest, u128::MAX).start_method(method).start().unwrap();
    assert_eq!(widest.join().unwrap(), u128::MAX, "{method:?}");
    let negated = Process::new(negated, i128::MAX).start_method(method).start().unwrap();
    assert_eq!(negated.join().unwrap(), -i128::MAX, "{method:?}");
    let next_char = Process::new(next_char, '\u{10fffe}').start_method(method).start().unwrap();
    assert_eq!(next_char.join().unwrap(), '\u{10ffff}', "{method:?}");
    let halved = Process::new(halved, f64::MAX).start_method(method).start().unwrap();
    assert_eq!(halved.join().unwrap(), f64::MAX / 2.0, "{method:?}");
    assert!(Process::new(not, false).start_method(method).start().unwrap().join().unwrap(), "{method:?}");
    Process::new(nothing, ()).start_method(method).start().unwrap().join().unwrap();
    match Process::new(refuse, 7).start_method(method).start().unwrap().join() {
        Err(JoinError::Panicked(info)) => assert_eq!(info.message, "refused 7", "{method:?}"),
        other => panic!("{method:?}: {other:?}"),
    }
}
