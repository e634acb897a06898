//! [`Argument`], what a process pool's tasks take; `starmap`'s functions: a function of several arguments, called with a tuple; and
//! [`ThreadTarget`], what a `ThreadPool`'s `apply` runs.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a [`Pool`](crate::Pool)'s task takes: an owned serde value (it crosses a process
/// boundary), which may hold handles (queues, locks, values). Implemented for every
/// `Serialize + DeserializeOwned + 'static` type; not meant to be implemented. It exists
/// for its error message: a borrowed argument (`fn f(x: &Item)`) is refused with "`&Item`
/// cannot cross a process boundary" and the hint to take it owned. (A `&str` or `&[u8]`
/// argument is refused too, with the compiler's own words: "implementation of
/// `Deserialize` is not general enough"; take a `String` or a `Vec<u8>`.)
///
/// # Examples
///
/// ```
/// use multiproc::Argument;
///
/// fn crosses<A: Argument>(_: &A) {}
/// crosses(&("bob".to_string(), 2u32, vec![1.5f64]));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross a process boundary",
    label = "not an owned serde type",
    note = "arguments cross a process boundary: take an owned type (`T` for `&T`, a `String` for a `&str`, a `Vec<T>` for a `&[T]`) that implements `Serialize` and `Deserialize`"
)]
pub trait Argument: Serialize + DeserializeOwned + 'static {}

impl<T: Serialize + DeserializeOwned + 'static> Argument for T {}

/// A function called with its arguments unpacked from a tuple (Python's `func(*args)`):
/// implemented for every `Fn(A) -> R`, `Fn(A, B) -> R`, ... up to six arguments, with
/// `Args = (A,)`, `(A, B)`, ...
///
/// # Examples
///
/// ```
/// use multiproc::StarFn;
///
/// fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
///
/// assert_eq!(add.call((2, 3)), 5);
/// ```
pub trait StarFn<Args>: Send + Sync + 'static {
    /// What the function returns.
    type Output;

    /// Calls the function with the tuple's elements as arguments.
    fn call(&self, args: Args) -> Self::Output;
}

macro_rules! star_fn {
    ($($arg:ident),+) => {
        impl<F, Ret, $($arg),+> StarFn<($($arg,)+)> for F
        where
            F: Fn($($arg),+) -> Ret + Send + Sync + 'static,
        {
            type Output = Ret;

            #[allow(non_snake_case)]
            fn call(&self, ($($arg,)+): ($($arg,)+)) -> Ret {
                self($($arg),+)
            }
        }
    };
}

star_fn!(A);
star_fn!(A, B);
star_fn!(A, B, C);
star_fn!(A, B, C, D);
star_fn!(A, B, C, D, E);
star_fn!(A, B, C, D, E, G);

/// What [`ThreadPool::apply`](crate::ThreadPool::apply) and its async forms run: any
/// `Fn` closure or function (closures may capture: nothing crosses a process), of one
/// argument (`Args` = `A` for `Fn(A) -> R`) or of several, up to six, which come as a tuple
/// (`Args` = `(A, B)` for `Fn(A, B) -> R`, ...): the same shapes as a process pool's
/// [`Target`](crate::Target). `Marker` is the function's signature, which lets the compiler
/// tell one argument from several; it is inferred. Implemented for every such function;
/// not meant to be implemented.
///
/// # Examples
///
/// ```
/// use multiproc::ThreadTarget;
///
/// fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
///
/// fn run<Args, M, F: ThreadTarget<Args, M>>(f: F, args: Args) -> F::Output {
///     f.call_unpacked(args)
/// }
/// assert_eq!(run(add, (2, 3)), 5); // several arguments: a tuple
/// assert_eq!(run(|x: u32| x + 1, 2), 3); // one argument: itself
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a thread pool task for the arguments `{Args}`",
    label = "not a function of `{Args}` that a thread pool can run",
    note = "a task is a function or a closure (`Send + Sync + 'static`); several arguments travel as a tuple: `pool.apply(f, (a, b))` for `fn f(a: A, b: B)`"
)]
pub trait ThreadTarget<Args, Marker>: Send + Sync + 'static {
    /// What the function returns.
    type Output;

    /// Calls the function with `args` unpacked (a tuple for several arguments).
    fn call_unpacked(&self, args: Args) -> Self::Output;
}

impl<F, A, R> ThreadTarget<A, fn(A) -> R> for F
where
    F: Fn(A) -> R + Send + Sync + 'static,
{
    type Output = R;

    fn call_unpacked(&self, args: A) -> R {
        self(args)
    }
}

macro_rules! thread_target {
    ($($arg:ident),+) => {
        impl<F, Ret, $($arg),+> ThreadTarget<($($arg,)+), fn($($arg),+) -> Ret> for F
        where
            F: Fn($($arg),+) -> Ret + Send + Sync + 'static,
        {
            type Output = Ret;

            #[allow(non_snake_case)]
            fn call_unpacked(&self, ($($arg,)+): ($($arg,)+)) -> Ret {
                self($($arg),+)
            }
        }
    };
}

thread_target!(A, B);
thread_target!(A, B, C);
thread_target!(A, B, C, D);
thread_target!(A, B, C, D, E);
thread_target!(A, B, C, D, E, G);
