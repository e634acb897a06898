//! `SetProxy`: a set on the manager's server.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ManagerError;
use super::handle::proxy_handle;
use super::link::{ProxyCore, Ref, unexpected};
use super::protocol::{Item, Kind, ObjectId, Op, Out, SetAlgebra, SetRelation};

/// A set on a manager's server (Python's `SetProxy`, from `manager.set()`).
///
/// Elements are typed on the client and stored encoded on the server, where two elements
/// are the same element when they encode the same (so `T` needs no `Hash`, and `String`
/// and `&str` agree). They are plain data: a proxy cannot be an element. Every call is one
/// round trip; [`to_vec`](SetProxy::to_vec) (or iterating) takes a snapshot, in insertion
/// order. The operations with another collection ([`union`](SetProxy::union),
/// [`issubset`](SetProxy::issubset), [`update`](SetProxy::update), ...) run on the server
/// in that one round trip, so an in-place one is atomic.
///
/// A proxy is a handle: clone it, pass it to a child process, send it through a queue.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Manager, Process, SetProxy};
///
/// fn tag(s: SetProxy<String>) {
///     s.add("seen by the child".into()).unwrap();
/// }
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let s = manager.set_from(["a".to_string()])?;
/// Process::new(tag, s.clone()).start()?.join()?;
/// assert_eq!(s.len()?, 2);
/// assert!(s.contains("seen by the child")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "set")]
pub struct SetProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn(T) -> T>,
}

proxy_handle!(SetProxy<T>, Kind::Set);

fn flag(out: Out<Ref>) -> Result<bool, ManagerError> {
    match out {
        Out::Bool(b) => Ok(b),
        other => Err(unexpected(other)),
    }
}

impl<T: Serialize + DeserializeOwned> SetProxy<T> {
    fn item<Q: Serialize + ?Sized>(&self, value: &Q) -> Result<Item<ObjectId>, ManagerError> {
        self.core.encode(value)
    }

    fn items(&self, values: &[T]) -> Result<Vec<Item<ObjectId>>, ManagerError> {
        values.iter().map(|v| self.item(v)).collect()
    }

    fn decode_all(&self, items: Vec<Item<Ref>>) -> Result<Vec<T>, ManagerError> {
        items.into_iter().map(|i| self.core.decode(i)).collect()
    }

    fn algebra(
        &self,
        algebra: SetAlgebra,
        other: impl IntoIterator<Item = T>,
        in_place: bool,
    ) -> Result<Out<Ref>, ManagerError> {
        // `other` lives until the call is answered, as `list.extend`'s values.
        let other: Vec<T> = other.into_iter().collect();
        self.core.call(Op::SetAlgebra { algebra, items: self.items(&other)?, in_place })
    }

    fn result(&self, out: Out<Ref>) -> Result<Vec<T>, ManagerError> {
        match out {
            Out::Items(items) => self.decode_all(items),
            other => Err(unexpected(other)),
        }
    }

    fn relation(&self, relation: SetRelation, other: impl IntoIterator<Item = T>) -> Result<bool, ManagerError> {
        let other: Vec<T> = other.into_iter().collect();
        flag(self.core.call(Op::SetRelation { relation, items: self.items(&other)? })?)
    }

    /// Adds `value` (`s.add(value)`); nothing changes if it is there.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone, [`ManagerError::Codec`] when
    /// a value does not encode, [`ManagerError::Protocol`] for a value holding a proxy; the
    /// same for every method.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set::<i32>()?;
    /// s.add(1)?;
    /// s.add(1)?;
    /// assert_eq!(s.len()?, 1);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn add(&self, value: T) -> Result<(), ManagerError> {
        self.core.call(Op::SetAdd(self.item(&value)?)).map(drop)
    }

    /// Removes `value` if it is there; whether it was (`s.discard(value)`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2])?;
    /// assert!(s.discard(&1)?);
    /// assert!(!s.discard(&1)?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn discard<Q: Serialize + ?Sized>(&self, value: &Q) -> Result<bool, ManagerError> {
        flag(self.core.call(Op::SetDiscard(self.item(value)?))?)
    }

    /// Removes `value`, which must be there (`s.remove(value)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ValueNotFound`] when it is not (Python's `KeyError`); otherwise as
    /// [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::ManagerError;
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1])?;
    /// s.remove(&1)?;
    /// assert!(matches!(s.remove(&1), Err(ManagerError::ValueNotFound)));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn remove<Q: Serialize + ?Sized>(&self, value: &Q) -> Result<(), ManagerError> {
        if self.discard(value)? { Ok(()) } else { Err(ManagerError::ValueNotFound) }
    }

    /// Removes and returns an element (the last added), `None` when empty (`s.pop()`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`]; [`ManagerError::Codec`] when the element is not a `T`: it was
    /// not taken, it is put back last, where it was. As
    /// [`ListProxy::pop`](crate::ListProxy::pop) for a remote client's element larger than
    /// its server's message limit.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([7])?;
    /// assert_eq!(s.pop()?, Some(7));
    /// assert_eq!(s.pop()?, None);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        match self.core.call(Op::SetPop)? {
            // An element that is not a `T` goes back last, where it was.
            Out::MaybeItem(item) => item
                .map(|i| self.core.decode_taken(i).map_err(|(e, i)| self.core.put_back(i, Op::SetAdd, e)))
                .transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// Whether `value` is there (`value in s`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from(["a".to_string()])?;
    /// assert!(s.contains("a")?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__contains__")]
    pub fn contains<Q: Serialize + ?Sized>(&self, value: &Q) -> Result<bool, ManagerError> {
        flag(self.core.call(Op::Contains(self.item(value)?))?)
    }

    /// The number of elements (`len(s)`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// assert_eq!(multiproc::Manager::start()?.set_from([1, 2, 2])?.len()?, 2);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__len__")]
    pub fn len(&self) -> Result<usize, ManagerError> {
        match self.core.call(Op::Len)? {
            Out::Count(n) => Ok(n as usize),
            other => Err(unexpected(other)),
        }
    }

    /// Whether the set is empty.
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// assert!(multiproc::Manager::start()?.set::<u8>()?.is_empty()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// Removes every element (`s.clear()`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2])?;
    /// s.clear()?;
    /// assert!(s.is_empty()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.core.call(Op::Clear).map(drop)
    }

    /// A copy of every element, in insertion order (Python's `s.copy()`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::pop`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([3, 1, 3])?;
    /// assert_eq!(s.to_vec()?, [3, 1]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "copy")]
    #[doc(alias = "_getvalue")]
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        match self.core.call(Op::Snapshot)? {
            Out::Versioned { items, .. } => self.decode_all(items),
            other => Err(unexpected(other)),
        }
    }

    /// Iterates over a snapshot taken now.
    ///
    /// # Errors
    ///
    /// As [`SetProxy::pop`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2, 3])?;
    /// assert_eq!(s.iter()?.sum::<i32>(), 6);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__iter__")]
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>, ManagerError> {
        Ok(self.to_vec()?.into_iter())
    }

    /// The elements of this set and of `other` (`s | other`, `s.union(other)`), as a
    /// local `Vec` in the set's order, then `other`'s.
    ///
    /// # Errors
    ///
    /// As [`SetProxy::pop`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2])?;
    /// assert_eq!(s.union([2, 3])?, [1, 2, 3]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__or__")]
    pub fn union(&self, other: impl IntoIterator<Item = T>) -> Result<Vec<T>, ManagerError> {
        let out = self.algebra(SetAlgebra::Union, other, false)?;
        self.result(out)
    }

    /// The elements also in `other` (`s & other`, `s.intersection(other)`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::pop`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2])?;
    /// assert_eq!(s.intersection([2, 3])?, [2]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__and__")]
    pub fn intersection(&self, other: impl IntoIterator<Item = T>) -> Result<Vec<T>, ManagerError> {
        let out = self.algebra(SetAlgebra::Intersection, other, false)?;
        self.result(out)
    }

    /// The elements not in `other` (`s - other`, `s.difference(other)`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::pop`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2])?;
    /// assert_eq!(s.difference([2, 3])?, [1]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__sub__")]
    pub fn difference(&self, other: impl IntoIterator<Item = T>) -> Result<Vec<T>, ManagerError> {
        let out = self.algebra(SetAlgebra::Difference, other, false)?;
        self.result(out)
    }

    /// The elements in exactly one of the two (`s ^ other`,
    /// `s.symmetric_difference(other)`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::pop`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2])?;
    /// assert_eq!(s.symmetric_difference([2, 3])?, [1, 3]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__xor__")]
    pub fn symmetric_difference(&self, other: impl IntoIterator<Item = T>) -> Result<Vec<T>, ManagerError> {
        let out = self.algebra(SetAlgebra::SymmetricDifference, other, false)?;
        self.result(out)
    }

    /// Adds every element of `other`, in one atomic step (`s |= other`, `s.update(other)`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1])?;
    /// s.update([2, 3])?;
    /// assert_eq!(s.len()?, 3);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__ior__")]
    pub fn update(&self, other: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        self.algebra(SetAlgebra::Union, other, true).map(drop)
    }

    /// Keeps only the elements also in `other` (`s &= other`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2])?;
    /// s.intersection_update([2, 3])?;
    /// assert_eq!(s.to_vec()?, [2]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__iand__")]
    pub fn intersection_update(&self, other: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        self.algebra(SetAlgebra::Intersection, other, true).map(drop)
    }

    /// Removes the elements of `other` (`s -= other`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2])?;
    /// s.difference_update([2, 3])?;
    /// assert_eq!(s.to_vec()?, [1]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__isub__")]
    pub fn difference_update(&self, other: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        self.algebra(SetAlgebra::Difference, other, true).map(drop)
    }

    /// Keeps the elements in exactly one of the two (`s ^= other`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2])?;
    /// s.symmetric_difference_update([2, 3])?;
    /// assert_eq!(s.to_vec()?, [1, 3]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__ixor__")]
    pub fn symmetric_difference_update(&self, other: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        self.algebra(SetAlgebra::SymmetricDifference, other, true).map(drop)
    }

    /// Whether every element is in `other` (`s <= other`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1])?;
    /// assert!(s.issubset([1, 2])?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__le__")]
    pub fn issubset(&self, other: impl IntoIterator<Item = T>) -> Result<bool, ManagerError> {
        self.relation(SetRelation::Subset, other)
    }

    /// Whether every element of `other` is in the set (`s >= other`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2])?;
    /// assert!(s.issuperset([2])?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__ge__")]
    pub fn issuperset(&self, other: impl IntoIterator<Item = T>) -> Result<bool, ManagerError> {
        self.relation(SetRelation::Superset, other)
    }

    /// Whether no element is in `other` (`s.isdisjoint(other)`).
    ///
    /// # Errors
    ///
    /// As [`SetProxy::add`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2])?;
    /// assert!(s.isdisjoint([3])?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn isdisjoint(&self, other: impl IntoIterator<Item = T>) -> Result<bool, ManagerError> {
        self.relation(SetRelation::Disjoint, other)
    }
}
