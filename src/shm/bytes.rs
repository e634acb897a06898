//! Runs of bytes through serde as one copy: `Vec<u8>` and `[u8]` serialize as a sequence
//! of `u8` elements and deserialize one element at a time, which costs nanoseconds per
//! byte. The codec recognises them by type id (lifetimes aside, which these types have
//! none of) and copies the run whole; the casts that needs live here.

use std::mem::ManuallyDrop;

/// The bytes of `seq` when it is a `&Vec<u8>` or a `&[u8]`: what `Vec<u8>`, `[u8]` and
/// `Box<[u8]>` hand to `Serializer::collect_seq`.
pub(crate) fn byte_run<I>(seq: &I) -> Option<&[u8]> {
    let id = typeid::of::<I>();
    if id == typeid::of::<&Vec<u8>>() {
        // SAFETY: `I` is `&'x Vec<u8>` for some lifetime `'x` (type ids differ for every
        // other type); `&'a I` implies `'x: 'a`, so the borrow returned is valid.
        Some(unsafe { &**(seq as *const I).cast::<&Vec<u8>>() })
    } else if id == typeid::of::<&[u8]>() {
        // SAFETY: as above, for `&'x [u8]`.
        Some(unsafe { *(seq as *const I).cast::<&[u8]>() })
    } else {
        None
    }
}

/// `bytes` as a `T`, when `T` is `Vec<u8>`.
pub(crate) fn byte_vec_as<T>(bytes: Vec<u8>) -> Result<T, Vec<u8>> {
    if typeid::of::<T>() != typeid::of::<Vec<u8>>() {
        return Err(bytes);
    }
    let bytes = ManuallyDrop::new(bytes);
    // SAFETY: `T` is `Vec<u8>` (a type without lifetimes, so equal ids mean the same type);
    // the original is not dropped, so ownership moves into the copy.
    Ok(unsafe { std::mem::transmute_copy::<Vec<u8>, T>(&bytes) })
}

/// `bytes` as text, as `std::str::from_utf8` reads it; text that is all ASCII (most of it)
/// is recognised by `<[u8]>::is_ascii`, two to three times faster than std's UTF-8 check on
/// ASCII, which was a tenth of a typed message's cost with a 1 KiB `String` field.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if bytes.is_ascii() {
        // SAFETY: every byte is below 0x80: ASCII, which is UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_byte_runs_are_recognised() {
        let v = vec![1u8, 2, 3];
        assert_eq!(byte_run(&&v), Some(&[1u8, 2, 3][..]));
        assert_eq!(byte_run(&&v[1..]), Some(&[2u8, 3][..]));
        assert_eq!(byte_run(&&vec![1i8]), None);
        assert_eq!(byte_run(&v), None, "a Vec by value is not what collect_seq gets");
        assert_eq!(byte_vec_as::<Vec<u8>>(vec![4]), Ok(vec![4]));
        assert_eq!(byte_vec_as::<Vec<i8>>(vec![4]).unwrap_err(), vec![4]);
    }

    #[test]
    fn text_is_checked_as_std_checks_it() {
        let mut cases: Vec<Vec<u8>> = vec![Vec::new(), b"ascii".to_vec(), vec![b'x'; 1024]];
        for at in [0, 5, 31, 32, 33, 63, 64, 100, 1022] {
            let mut high = vec![b'x'; 1024];
            high[at] = 0xc3;
            cases.push(high.clone()); // a lone lead byte: not UTF-8
            high[at + 1] = 0xa9;
            cases.push(high); // é: UTF-8 past the ASCII fast path
        }
        cases.push([&[b'x'; 1023][..], &[0xc3]].concat());
        for case in &cases {
            assert_eq!(utf8(case), std::str::from_utf8(case), "{case:?}");
        }
    }
}
