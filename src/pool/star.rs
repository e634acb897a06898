//! `starmap`'s functions: a function of several arguments, called with a tuple.

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
