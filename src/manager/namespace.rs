//! `NamespaceProxy` and `ValueProxy`: named attributes, and one value, on the manager's
//! server.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ManagerError;
use super::handle::proxy_handle;
use super::link::{ProxyCore, unexpected};
use super::protocol::{Kind, Op, Out};

/// Named attributes of any serde type on a manager's server (Python's `Namespace`, from
/// `manager.Namespace()`: `ns.x = 1` is `ns.set("x", 1)`, `ns.x` is `ns.get::<i32>("x")`).
///
/// # Examples
///
/// ```no_run
/// use multiproc::Manager;
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let ns = manager.namespace()?;
/// ns.set("x", 1)?;
/// ns.set("name", "ada")?;
/// assert_eq!(ns.get::<i32>("x")?, 1);
/// assert_eq!(ns.get::<String>("name")?, "ada");
/// assert_eq!(ns.names()?, ["x", "name"]);
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[doc(alias = "Namespace")]
pub struct NamespaceProxy {
    core: ProxyCore,
}

proxy_handle!(NamespaceProxy, Kind::Namespace);

impl NamespaceProxy {
    /// Sets attribute `name` (`setattr(ns, name, value)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone, [`ManagerError::Codec`] when
    /// the value does not encode; the same for every method.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("x", 1.5)?;
    /// assert_eq!(ns.get::<f64>("x")?, 1.5);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__setattr__")]
    pub fn set<T: Serialize>(&self, name: &str, value: T) -> Result<(), ManagerError> {
        self.core.call(Op::AttrSet(name.to_string(), self.core.encode(&value)?)).map(drop)
    }

    /// A copy of attribute `name`, decoded as a `T` (`getattr(ns, name)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::NoSuchAttribute`] when it is not set, [`ManagerError::Codec`] when
    /// it is not a `T`, and as [`NamespaceProxy::set`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ManagerError;
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("name", "run-7")?;
    /// assert_eq!(ns.get::<String>("name")?, "run-7");
    /// assert!(matches!(ns.get::<u8>("missing"), Err(ManagerError::NoSuchAttribute(_))));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__getattr__")]
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T, ManagerError> {
        match self.core.call(Op::AttrGet(name.to_string()))? {
            Out::Item(item) => self.core.decode(item),
            other => Err(unexpected(other)),
        }
    }

    /// Removes attribute `name` (`delattr(ns, name)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::NoSuchAttribute`] when it is not set, and as [`NamespaceProxy::set`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("x", 1)?;
    /// ns.remove("x")?;
    /// assert!(!ns.contains("x")?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "__delattr__")]
    pub fn remove(&self, name: &str) -> Result<(), ManagerError> {
        self.core.call(Op::AttrDel(name.to_string())).map(drop)
    }

    /// Whether attribute `name` is set (`hasattr(ns, name)`).
    ///
    /// # Errors
    ///
    /// As [`NamespaceProxy::set`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("x", 1)?;
    /// assert!(ns.contains("x")?);
    /// assert!(!ns.contains("y")?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn contains(&self, name: &str) -> Result<bool, ManagerError> {
        Ok(self.names()?.iter().any(|n| n == name))
    }

    /// The attributes' names, in the order they were first set.
    ///
    /// # Errors
    ///
    /// As [`NamespaceProxy::set`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("b", 1)?;
    /// ns.set("a", 2)?;
    /// assert_eq!(ns.names()?, ["b", "a"]);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn names(&self) -> Result<Vec<String>, ManagerError> {
        match self.core.call(Op::AttrNames)? {
            Out::Names(names) => Ok(names),
            other => Err(unexpected(other)),
        }
    }
}

/// One value on a manager's server (Python's `ValueProxy`, from
/// `manager.Value(typecode, value)`; `v.value` is `v.get()`, `v.value = x` is `v.set(x)`).
///
/// Each `get` and `set` is atomic; a read-modify-write is not: hold a managed lock around
/// it, as in Python.
///
/// # Examples
///
/// ```no_run
/// use multiproc::Manager;
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let v = manager.value(10i64)?;
/// let lock = manager.lock()?;
/// {
///     let _held = lock.acquire()?;
///     v.set(v.get()? - 1)?;
/// }
/// assert_eq!(v.get()?, 9);
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[doc(alias = "Value")]
pub struct ValueProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn(T) -> T>,
}

proxy_handle!(ValueProxy<T>, Kind::Value);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// A copy of the value (`v.value`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone, [`ManagerError::Codec`] when
    /// the value is not a `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let v = manager.value(10i64)?;
    /// assert_eq!(v.get()?, 10);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "value")]
    pub fn get(&self) -> Result<T, ManagerError> {
        match self.core.call(Op::ValueGet)? {
            Out::Item(item) => self.core.decode(item),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces the value (`v.value = x`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone, [`ManagerError::Codec`] when
    /// the value does not encode.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let v = manager.value(10i64)?;
    /// v.set(11)?;
    /// assert_eq!(v.get()?, 11);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn set(&self, value: T) -> Result<(), ManagerError> {
        self.core.call(Op::ValueSet(self.core.encode(&value)?)).map(drop)
    }
}
