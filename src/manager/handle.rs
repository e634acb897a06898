//! What every proxy type is: a handle (clone, debug, send to another process, store in a
//! managed container), defined once for all of them.

/// Implements the handle traits of a proxy type `$name` holding `core: ProxyCore` (and
/// `_types: PhantomData` when generic), whose objects are of kinds `$kind`.
macro_rules! proxy_handle {
    ($name:ident < $($p:ident),* >, $($kind:pat_param)|+) => {
        impl<$($p),*> $name<$($p),*> {
            pub(crate) fn from_core(core: $crate::manager::link::ProxyCore) -> Self {
                Self { core, _types: ::std::marker::PhantomData }
            }

            /// Whether two proxies refer to the same object on the same server.
            pub fn same_object(&self, other: &Self) -> bool {
                self.core.same(&other.core)
            }
        }
        $crate::manager::handle::proxy_handle!(@traits $name < $($p),* >, $($kind)|+);
    };
    ($name:ident, $($kind:pat_param)|+) => {
        impl $name {
            pub(crate) fn from_core(core: $crate::manager::link::ProxyCore) -> Self {
                Self { core }
            }

            /// Whether two proxies refer to the same object on the same server.
            pub fn same_object(&self, other: &Self) -> bool {
                self.core.same(&other.core)
            }
        }
        $crate::manager::handle::proxy_handle!(@traits $name < >, $($kind)|+);
    };
    (@traits $name:ident < $($p:ident),* >, $($kind:pat_param)|+) => {
        impl<$($p),*> ::std::clone::Clone for $name<$($p),*> {
            fn clone(&self) -> Self {
                Self::from_core(self.core.clone())
            }
        }

        impl<$($p),*> ::std::fmt::Debug for $name<$($p),*> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(&self.core, f)
            }
        }

        impl<$($p),*> ::serde::Serialize for $name<$($p),*> {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> ::std::result::Result<S::Ok, S::Error> {
                ::serde::Serialize::serialize(&self.core, serializer)
            }
        }

        impl<'de, $($p),*> ::serde::Deserialize<'de> for $name<$($p),*> {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> ::std::result::Result<Self, D::Error> {
                let core = <$crate::manager::link::ProxyCore as ::serde::Deserialize<'de>>::deserialize(deserializer)?;
                match core.kind {
                    $($kind)|+ => Ok(Self::from_core(core)),
                    other => Err(<D::Error as ::serde::de::Error>::custom(format_args!(
                        "expected a proxy of a {}, got one of a {}",
                        stringify!($name),
                        other.name()
                    ))),
                }
            }
        }
    };
}

pub(crate) use proxy_handle;

use std::time::Duration;

use super::protocol::Wait;

/// A timeout as the protocol carries it.
pub(crate) fn wait_for(timeout: Duration) -> Wait {
    Some(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX))
}
