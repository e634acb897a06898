//! `DictProxy`: a dict on the manager's server.

use std::borrow::Borrow;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ManagerError;
use super::handle::proxy_handle;
use super::link::{ProxyCore, unexpected};
use super::protocol::{Item, Kind, Op, Out};

/// A dict on a manager's server (Python's `DictProxy`, from `manager.dict()`).
///
/// Keys and values are typed on the client and stored encoded on the server, in insertion
/// order, as Python keeps them. Two keys are the same key when they encode the same
/// (`String` and `&str` do, so `get("a")` finds `"a".to_string()`). Every call is one
/// round trip to the server; each returns a copy (a value that holds proxies returns
/// proxies to the same objects).
///
/// A proxy is a handle: clone it, pass it to a child process, send it through a queue, or
/// store it in another managed container (a list of dicts); the dict lives as long as
/// something refers to it.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{DictProxy, Manager, Process};
///
/// fn fill(d: DictProxy<String, i32>) {
///     d.insert("answer".into(), 42).unwrap();
/// }
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let d = manager.dict::<String, i32>()?;
/// Process::new(fill, d.clone()).start()?.join()?;
/// assert_eq!(d.get("answer")?, Some(42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "dict")]
pub struct DictProxy<K, V> {
    core: ProxyCore,
    _types: PhantomData<Types<K, V>>,
}

/// The marker of a dict's key and value types (invariant, and `Send + Sync` whatever
/// they are: the proxy holds none of them).
type Types<K, V> = fn(K, V) -> (K, V);

proxy_handle!(DictProxy<K, V>, Kind::Dict);

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn item<Q: Serialize + ?Sized>(&self, value: &Q) -> Result<super::protocol::Item<u64>, ManagerError> {
        self.core.encode(value)
    }

    fn maybe(&self, out: Out<super::link::Ref>) -> Result<Option<V>, ManagerError> {
        match out {
            Out::MaybeItem(item) => item.map(|i| self.core.decode(i)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// Sets `d[key] = value`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone, [`ManagerError::Codec`] when
    /// a key or value does not encode, [`ManagerError::ForeignProxy`] for a proxy of
    /// another manager inside the value; the same for every method.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.insert("a".into(), 1)?;
    /// assert_eq!(d.get("a")?, Some(1));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__setitem__")]
    pub fn insert(&self, key: K, value: V) -> Result<(), ManagerError> {
        self.core.call(Op::DictSet(self.item(&key)?, self.item(&value)?)).map(drop)
    }

    /// `d.get(key)`: a copy of the value, `None` if the key is absent.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::insert`]; [`ManagerError::Codec`] when the stored value is not a `V`.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.insert("a".into(), 1)?;
    /// assert_eq!(d.get("a")?, Some(1));
    /// assert_eq!(d.get("b")?, None);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__getitem__")]
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let out = self.core.call(Op::DictGet(self.item(key)?))?;
        self.maybe(out)
    }

    /// Whether the key is there (`key in d`).
    ///
    /// # Errors
    ///
    /// As [`DictProxy::insert`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.insert("a".into(), 1)?;
    /// assert!(d.contains_key("a")?);
    /// assert!(!d.contains_key("b")?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__contains__")]
    pub fn contains_key<Q>(&self, key: &Q) -> Result<bool, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        match self.core.call(Op::Contains(self.item(key)?))? {
            Out::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// Removes the key; its value, `None` if it was absent (`del d[key]`, `d.pop(key, None)`).
    ///
    /// # Errors
    ///
    /// As [`DictProxy::get`]. A value that is not a `V` ([`ManagerError::Codec`]) was not
    /// taken: it is put back under its key, where it was in the order (at the index the
    /// pair had: if other clients removed or inserted pairs in between, at that index
    /// among theirs, last if it is past the end; dropped if another client set the key in
    /// between, which then holds the newer value).
    /// A remote client cannot put back an item larger than its server's
    /// [`max_message_size`](crate::ManagerBuilder::max_message_size) (a family producer's
    /// items are not bound by it): such an item is lost, the error still `Codec`.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.insert("a".into(), 1)?;
    /// assert_eq!(d.remove("a")?, Some(1));
    /// assert_eq!(d.remove("a")?, None);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__delitem__")]
    pub fn remove<Q>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        match self.core.call(Op::DictRemove(self.item(key)?))? {
            // A value that is not a `V` goes back under its key where it was (unless the
            // key was set again meanwhile).
            Out::Removed { index, item } => {
                self.core.decode_taken(item).map(Some).map_err(|(e, item)| match self.item(key) {
                    Ok(k) => self.core.put_back(item, |v| Op::DictPutBack { index, key: k, value: v }, e),
                    Err(_) => e.into(),
                })
            }
            Out::MaybeItem(None) => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Removes the key and returns its value, or `default` if it was absent
    /// (`d.pop(key, default)`).
    ///
    /// # Errors
    ///
    /// As [`DictProxy::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.insert("a".into(), 1)?;
    /// assert_eq!(d.pop("a", 0)?, 1);
    /// assert_eq!(d.pop("a", 0)?, 0); // absent: the default
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn pop<Q>(&self, key: &Q, default: V) -> Result<V, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        Ok(self.remove(key)?.unwrap_or(default))
    }

    /// Removes and returns the last inserted pair (`d.popitem()`), `None` when empty.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::get`]. A pair that is not a `(K, V)` ([`ManagerError::Codec`]) was
    /// not taken: it is put back last, where it was. As [`DictProxy::remove`] for a remote
    /// client's item larger than its server's message limit.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.insert("a".into(), 1)?;
    /// d.insert("b".into(), 2)?;
    /// assert_eq!(d.popitem()?, Some(("b".to_string(), 2))); // the last inserted
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn popitem(&self) -> Result<Option<(K, V)>, ManagerError> {
        match self.core.call(Op::DictPopItem)? {
            Out::Pairs(pairs) => match pairs.into_iter().next() {
                // A pair that is not a `(K, V)` goes back last, where it was. Its key is
                // plain bytes (no proxy): kept for the value's decoding, which may fail too.
                Some((k, v)) => {
                    let key = Item { bytes: k.bytes.clone(), refs: Vec::new() };
                    let k = match self.core.decode_taken(k) {
                        Ok(k) => k,
                        Err((e, _)) => return Err(self.core.put_back(v, |v| Op::DictSetDefault(key, v), e)),
                    };
                    match self.core.decode_taken(v) {
                        Ok(v) => Ok(Some((k, v))),
                        Err((e, v)) => Err(self.core.put_back(v, |v| Op::DictSetDefault(key, v), e)),
                    }
                }
                None => Ok(None),
            },
            other => Err(unexpected(other)),
        }
    }

    /// The value of `key`, inserting `default` first if the key is absent
    /// (`d.setdefault(key, default)`).
    ///
    /// # Errors
    ///
    /// As [`DictProxy::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// assert_eq!(d.setdefault("a".into(), 5)?, 5);
    /// assert_eq!(d.setdefault("a".into(), 9)?, 5); // already there
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn setdefault(&self, key: K, default: V) -> Result<V, ManagerError> {
        match self.core.call(Op::DictSetDefault(self.item(&key)?, self.item(&default)?))? {
            Out::Item(item) => self.core.decode(item),
            other => Err(unexpected(other)),
        }
    }

    /// Inserts every pair, in one round trip (`d.update(pairs)`).
    ///
    /// # Errors
    ///
    /// As [`DictProxy::insert`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.update([("a".to_string(), 1), ("b".to_string(), 2)])?;
    /// assert_eq!(d.len()?, 2);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<(), ManagerError> {
        // The pairs (their proxies) live until the call is answered, as `list.extend`'s.
        let values: Vec<(K, V)> = pairs.into_iter().collect();
        let pairs =
            values.iter().map(|(k, v)| Ok((self.item(k)?, self.item(v)?))).collect::<Result<Vec<_>, ManagerError>>()?;
        let answer = self.core.call(Op::DictUpdate(pairs));
        drop(values);
        answer.map(drop)
    }

    /// The number of pairs (`len(d)`).
    ///
    /// # Errors
    ///
    /// As [`DictProxy::insert`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.insert("a".into(), 1)?;
    /// assert_eq!(d.len()?, 1);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__len__")]
    pub fn len(&self) -> Result<usize, ManagerError> {
        match self.core.call(Op::Len)? {
            Out::Count(n) => Ok(n as usize),
            other => Err(unexpected(other)),
        }
    }

    /// Whether the dict is empty.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::insert`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// assert!(d.is_empty()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// Removes every pair.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::insert`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.insert("a".into(), 1)?;
    /// d.clear()?;
    /// assert!(d.is_empty()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.core.call(Op::Clear).map(drop)
    }

    /// The keys, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.insert("b".into(), 2)?;
    /// d.insert("a".into(), 1)?;
    /// assert_eq!(d.keys()?, ["b", "a"]); // insertion order
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        match self.core.call(Op::Keys)? {
            Out::Items(items) => items.into_iter().map(|i| self.core.decode(i)).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// The values, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`DictProxy::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.insert("b".into(), 2)?;
    /// d.insert("a".into(), 1)?;
    /// assert_eq!(d.values()?, [2, 1]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        match self.core.call(Op::Values)? {
            Out::Items(items) => items.into_iter().map(|i| self.core.decode(i)).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// The pairs, in insertion order (a copy of the whole dict: Python's `d.copy()`).
    ///
    /// # Errors
    ///
    /// As [`DictProxy::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, i32>()?;
    /// d.insert("a".into(), 1)?;
    /// assert_eq!(d.items()?, [("a".to_string(), 1)]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "copy")]
    #[doc(alias = "_getvalue")]
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        match self.core.call(Op::Items)? {
            Out::Pairs(pairs) => {
                pairs.into_iter().map(|(k, v)| Ok((self.core.decode(k)?, self.core.decode(v)?))).collect()
            }
            other => Err(unexpected(other)),
        }
    }
}
