//! `ListProxy` and `ArrayProxy`: sequences on the manager's server.

use std::cmp::Ordering;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ManagerError;
use super::handle::proxy_handle;
use super::link::{ProxyCore, Ref, unexpected};
use super::protocol::{Item, Kind, ObjectId, Op, Out};

/// How often a sort retries when the list changed between its snapshot and its write.
const SORT_ATTEMPTS: usize = 64;

fn index(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

/// Calls `op` on element `i`. An index error names `i` as the caller passed it: the
/// server's indexes are Python's, signed, and an index past `i64::MAX` (out of range of
/// any list) goes to it as `i64::MAX`.
fn at(core: &ProxyCore, i: usize, op: impl FnOnce(i64) -> Op) -> Result<Out<Ref>, ManagerError> {
    core.call(op(index(i))).map_err(|e| match e {
        ManagerError::IndexOutOfRange { len, .. } => ManagerError::IndexOutOfRange { index: i, len },
        e => e,
    })
}

fn count(out: Out<Ref>) -> Result<usize, ManagerError> {
    match out {
        Out::Count(n) => Ok(n as usize),
        other => Err(unexpected(other)),
    }
}

fn flag(out: Out<Ref>) -> Result<bool, ManagerError> {
    match out {
        Out::Bool(b) => Ok(b),
        other => Err(unexpected(other)),
    }
}

fn decode_all<T: DeserializeOwned>(core: &ProxyCore, items: Vec<Item<Ref>>) -> Result<Vec<T>, ManagerError> {
    items.into_iter().map(|i| core.decode(i)).collect()
}

fn snapshot<T: DeserializeOwned>(core: &ProxyCore) -> Result<(u64, Vec<T>), ManagerError> {
    match core.call(Op::Snapshot)? {
        Out::Versioned { version, items } => Ok((version, decode_all(core, items)?)),
        other => Err(unexpected(other)),
    }
}

/// A list on a manager's server (Python's `ListProxy`, from `manager.list()`).
///
/// Elements are typed on the client and stored encoded on the server; `remove`, `index`,
/// `count` and `contains` compare encodings. Every call is one round trip; `to_vec` (or
/// iterating) takes a snapshot. `sort` sorts a snapshot on the client and writes it back
/// only if the list did not change meanwhile (else it tries again), so it needs no
/// comparison on the server.
///
/// # Examples
///
/// ```no_run
/// use multiproc::Manager;
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let l = manager.list_from(0..10)?;
/// l.reverse()?;
/// assert_eq!(l.to_vec()?, (0..10).rev().collect::<Vec<i32>>());
/// l.sort()?;
/// assert_eq!(l.get(0)?, Some(0));
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[doc(alias = "list")]
pub struct ListProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn(T) -> T>,
}

proxy_handle!(ListProxy<T>, Kind::List);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    fn item(&self, value: &T) -> Result<Item<ObjectId>, ManagerError> {
        self.core.encode(value)
    }

    /// Appends an element (`l.append(x)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone, [`ManagerError::Codec`] when
    /// the element does not encode; the same for every method.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// l.push(4)?;
    /// assert_eq!(l.to_vec()?, [3, 1, 2, 4]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "append")]
    pub fn push(&self, value: T) -> Result<(), ManagerError> {
        self.core.call(Op::ListPush(self.item(&value)?)).map(drop)
    }

    /// Appends every element, in one round trip (`l.extend(xs)`).
    ///
    /// # Errors
    ///
    /// As [`ListProxy::push`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// l.extend([5, 6])?;
    /// assert_eq!(l.len()?, 5);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        // The values (their proxies) live until the call is answered: a proxy held nowhere
        // else would otherwise free its object before the server stores the reference.
        let values: Vec<T> = values.into_iter().collect();
        let items = values.iter().map(|v| self.item(v)).collect::<Result<Vec<_>, _>>()?;
        let answer = self.core.call(Op::ListExtend(items));
        drop(values);
        answer.map(drop)
    }

    /// Inserts before position `i`; past the end appends (`l.insert(i, x)`).
    ///
    /// # Errors
    ///
    /// As [`ListProxy::push`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// l.insert(0, 0)?;
    /// l.insert(99, 9)?; // past the end: appended
    /// assert_eq!(l.to_vec()?, [0, 3, 1, 2, 9]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn insert(&self, i: usize, value: T) -> Result<(), ManagerError> {
        self.core.call(Op::ListInsert(index(i), self.item(&value)?)).map(drop)
    }

    /// A copy of element `i`, `None` past the end (`l[i]`).
    ///
    /// # Errors
    ///
    /// As [`ListProxy::push`]; [`ManagerError::Codec`] when the element is not a `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// assert_eq!(l.get(0)?, Some(3));
    /// assert_eq!(l.get(3)?, None);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__getitem__")]
    pub fn get(&self, i: usize) -> Result<Option<T>, ManagerError> {
        match at(&self.core, i, Op::ListGet) {
            Ok(Out::Item(item)) => Ok(Some(self.core.decode(item)?)),
            Ok(other) => Err(unexpected(other)),
            Err(ManagerError::IndexOutOfRange { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces element `i` (`l[i] = x`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::IndexOutOfRange`] past the end, and as [`ListProxy::push`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ManagerError;
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// l.set(0, 30)?;
    /// assert_eq!(l.get(0)?, Some(30));
    /// assert!(matches!(l.set(3, 0), Err(ManagerError::IndexOutOfRange { .. })));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__setitem__")]
    pub fn set(&self, i: usize, value: T) -> Result<(), ManagerError> {
        let item = self.item(&value)?;
        at(&self.core, i, |i| Op::ListSet(i, item)).map(drop)
    }

    /// Removes and returns the last element, `None` when empty (`l.pop()`).
    ///
    /// # Errors
    ///
    /// As [`ListProxy::get`]. An element that is not a `T` ([`ManagerError::Codec`]) was
    /// not taken: it is put back at the end, where it was.
    /// A remote client cannot put back an item larger than its server's
    /// [`max_message_size`](crate::ManagerBuilder::max_message_size) (a family producer's
    /// items are not bound by it): such an item is lost, the error still `Codec`.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// assert_eq!(l.pop()?, Some(2));
    /// assert_eq!(l.len()?, 2);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        match self.core.call(Op::ListPop(None)) {
            // An element that is not a `T` goes back to the end, where it was.
            Ok(Out::Item(item)) => {
                self.core.decode_taken(item).map(Some).map_err(|(e, item)| self.core.put_back(item, Op::ListPush, e))
            }
            Ok(other) => Err(unexpected(other)),
            Err(ManagerError::IndexOutOfRange { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes and returns element `i` (`l.pop(i)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::IndexOutOfRange`] past the end, and as [`ListProxy::get`]. An
    /// element that is not a `T` ([`ManagerError::Codec`]) was not taken: it is put back
    /// at index `i`, where it was (if another client changed the list in between, at `i`
    /// of the list as it then is). As [`ListProxy::pop`] for a remote client's item larger
    /// than its server's message limit.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// assert_eq!(l.pop_at(0)?, 3);
    /// assert_eq!(l.to_vec()?, [1, 2]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn pop_at(&self, i: usize) -> Result<T, ManagerError> {
        match at(&self.core, i, |i| Op::ListPop(Some(i)))? {
            // An element that is not a `T` goes back to index `i`, where it was.
            Out::Item(item) => self
                .core
                .decode_taken(item)
                .map_err(|(e, item)| self.core.put_back(item, |item| Op::ListInsert(index(i), item), e)),
            other => Err(unexpected(other)),
        }
    }

    /// Removes the first element equal to `value`; whether there was one (`l.remove(x)`,
    /// which raises `ValueError` in Python when there is none).
    ///
    /// # Errors
    ///
    /// As [`ListProxy::push`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// assert!(l.remove(&1)?);
    /// assert!(!l.remove(&1)?);
    /// assert_eq!(l.to_vec()?, [3, 2]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn remove(&self, value: &T) -> Result<bool, ManagerError> {
        flag(self.core.call(Op::ListRemove(self.item(value)?))?)
    }

    /// The position of the first element equal to `value` (`l.index(x)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ValueNotFound`] when there is none, and as [`ListProxy::push`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ManagerError;
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// assert_eq!(l.index(&2)?, 2);
    /// assert!(matches!(l.index(&7), Err(ManagerError::ValueNotFound)));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn index(&self, value: &T) -> Result<usize, ManagerError> {
        count(self.core.call(Op::ListIndex(self.item(value)?))?)
    }

    /// How many elements equal `value` (`l.count(x)`).
    ///
    /// # Errors
    ///
    /// As [`ListProxy::push`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([1, 2, 1])?;
    /// assert_eq!(l.count(&1)?, 2);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn count(&self, value: &T) -> Result<usize, ManagerError> {
        count(self.core.call(Op::ListCount(self.item(value)?))?)
    }

    /// Whether an element equals `value` (`x in l`).
    ///
    /// # Errors
    ///
    /// As [`ListProxy::push`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// assert!(l.contains(&3)?);
    /// assert!(!l.contains(&7)?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__contains__")]
    pub fn contains(&self, value: &T) -> Result<bool, ManagerError> {
        flag(self.core.call(Op::Contains(self.item(value)?))?)
    }

    /// The number of elements (`len(l)`).
    ///
    /// # Errors
    ///
    /// As [`ListProxy::push`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// assert_eq!(l.len()?, 3);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__len__")]
    pub fn len(&self) -> Result<usize, ManagerError> {
        count(self.core.call(Op::Len)?)
    }

    /// Whether the list is empty.
    ///
    /// # Errors
    ///
    /// As [`ListProxy::push`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<u32>()?;
    /// assert!(l.is_empty()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// Reverses the list in place, on the server (`l.reverse()`).
    ///
    /// # Errors
    ///
    /// As [`ListProxy::push`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// l.reverse()?;
    /// assert_eq!(l.to_vec()?, [2, 1, 3]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn reverse(&self) -> Result<(), ManagerError> {
        self.core.call(Op::ListReverse).map(drop)
    }

    /// Removes every element.
    ///
    /// # Errors
    ///
    /// As [`ListProxy::push`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// l.clear()?;
    /// assert!(l.is_empty()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.core.call(Op::Clear).map(drop)
    }

    /// A copy of every element (Python's `l[:]`, `list(l)`).
    ///
    /// # Errors
    ///
    /// As [`ListProxy::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// let copy: Vec<i32> = l.to_vec()?;
    /// assert_eq!(copy, [3, 1, 2]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "copy")]
    #[doc(alias = "_getvalue")]
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        Ok(snapshot(&self.core)?.1)
    }

    /// Iterates over a snapshot taken now.
    ///
    /// # Errors
    ///
    /// As [`ListProxy::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// let total: i32 = l.iter()?.sum();
    /// assert_eq!(total, 6);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__iter__")]
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>, ManagerError> {
        Ok(self.to_vec()?.into_iter())
    }

    /// Sorts the list with `compare`: on a snapshot, written back if the list did not
    /// change meanwhile (retried otherwise).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Contended`] if other processes kept changing the list through many
    /// attempts, and as [`ListProxy::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// l.sort_by(|a, b| b.cmp(a))?; // descending
    /// assert_eq!(l.to_vec()?, [3, 2, 1]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn sort_by(&self, mut compare: impl FnMut(&T, &T) -> Ordering) -> Result<(), ManagerError> {
        for _ in 0..SORT_ATTEMPTS {
            let (version, mut values) = snapshot::<T>(&self.core)?;
            values.sort_by(&mut compare);
            let items = values.iter().map(|v| self.item(v)).collect::<Result<Vec<_>, _>>()?;
            match self.core.call(Op::ListReplace { version, items }) {
                Ok(_) => return Ok(()),
                Err(ManagerError::Contended) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ManagerError::Contended)
    }

    /// Sorts the list in ascending order (`l.sort()`).
    ///
    /// # Errors
    ///
    /// As [`ListProxy::sort_by`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from([3, 1, 2])?;
    /// l.sort()?;
    /// assert_eq!(l.to_vec()?, [1, 2, 3]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn sort(&self) -> Result<(), ManagerError>
    where
        T: Ord,
    {
        self.sort_by(T::cmp)
    }
}

/// A fixed-length array on a manager's server (Python's `ArrayProxy`, from
/// `manager.Array(typecode, sequence)`): elements are read and written in place, the
/// length never changes.
///
/// # Examples
///
/// ```no_run
/// use multiproc::Manager;
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let a = manager.array([1.0f64, 2.0, 3.0])?;
/// a.set(1, 20.0)?;
/// assert_eq!(a.to_vec()?, [1.0, 20.0, 3.0]);
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[doc(alias = "Array")]
pub struct ArrayProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn(T) -> T>,
}

proxy_handle!(ArrayProxy<T>, Kind::Array);

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// A copy of element `i` (`a[i]`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::IndexOutOfRange`] past the end, [`ManagerError::ServerGone`] when
    /// the server is gone, [`ManagerError::Codec`] when the element is not a `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([1.0, 2.0, 3.0])?;
    /// assert_eq!(a.get(1)?, 2.0);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__getitem__")]
    pub fn get(&self, i: usize) -> Result<T, ManagerError> {
        match at(&self.core, i, Op::ListGet)? {
            Out::Item(item) => self.core.decode(item),
            other => Err(unexpected(other)),
        }
    }

    /// Writes element `i` (`a[i] = x`).
    ///
    /// # Errors
    ///
    /// As [`ArrayProxy::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([1.0, 2.0, 3.0])?;
    /// a.set(1, 20.0)?;
    /// assert_eq!(a.to_vec()?, [1.0, 20.0, 3.0]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__setitem__")]
    pub fn set(&self, i: usize, value: T) -> Result<(), ManagerError> {
        let item = self.core.encode(&value)?;
        at(&self.core, i, |i| Op::ListSet(i, item)).map(drop)
    }

    /// The length (`len(a)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([1.0, 2.0, 3.0])?;
    /// assert_eq!(a.len()?, 3); // fixed
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__len__")]
    pub fn len(&self) -> Result<usize, ManagerError> {
        count(self.core.call(Op::Len)?)
    }

    /// Whether the array has no element.
    ///
    /// # Errors
    ///
    /// As [`ArrayProxy::len`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([1.0, 2.0, 3.0])?;
    /// assert!(!a.is_empty()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// A copy of every element (`a[:]`).
    ///
    /// # Errors
    ///
    /// As [`ArrayProxy::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([1.0, 2.0, 3.0])?;
    /// assert_eq!(a.to_vec()?, [1.0, 2.0, 3.0]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        Ok(snapshot(&self.core)?.1)
    }
}
