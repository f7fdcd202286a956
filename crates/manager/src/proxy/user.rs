//! The proxy of registered types.

use std::fmt;
use std::marker::PhantomData;

use multiproc_wire::Typed;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::AnyProxy;
use crate::error::{Error, Result};
use crate::managed::Managed;

/// A proxy of an object of a registered type `T` (CPython's `AutoProxy`): its methods are
/// called by name, with serde arguments and results.
///
/// Wrap it in a type of your own to give the methods Rust signatures:
///
/// ```no_run
/// # use multiproc_manager::{Args, Managed, Reply, Result, Error, Proxy};
/// # struct Counter;
/// # impl Managed for Counter {
/// #     const TYPE_ID: &'static str = "Counter";
/// #     type Init = i64;
/// #     fn create(_: i64) -> Result<Counter> { Ok(Counter) }
/// #     fn call(&mut self, _: &str, _: Args<'_>) -> Result<Reply> { Reply::encode(&0i64) }
/// # }
/// struct CounterProxy(Proxy<Counter>);
///
/// impl CounterProxy {
///     fn add(&self, by: i64) -> Result<i64> {
///         self.0.call("add", &by)
///     }
/// }
/// ```
pub struct Proxy<T> {
    proxy: AnyProxy,
    types: PhantomData<fn() -> T>,
}

impl<T: Managed> Proxy<T> {
    /// Calls the method `method` with `args` (a tuple for several) and returns its result.
    ///
    /// # Errors
    /// What the method returned ([`ErrorKind::User`](crate::ErrorKind::User), ...),
    /// [`ErrorKind::UnknownMethod`](crate::ErrorKind::UnknownMethod),
    /// [`ErrorKind::Panicked`](crate::ErrorKind::Panicked) when it panicked in the server,
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected),
    /// [`ErrorKind::Codec`](crate::ErrorKind::Codec).
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R> {
        // Typed both ways: the object refuses arguments of another type than it decodes, and
        // a result of another type than `R` is a codec error.
        self.proxy.call::<_, Typed<R>>(method, &Typed(args)).map(|Typed(result)| result)
    }
}

impl<T> Clone for Proxy<T> {
    fn clone(&self) -> Self {
        Proxy { proxy: self.proxy.clone(), types: PhantomData }
    }
}

impl<T> fmt::Debug for Proxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy").field("type_id", &self.proxy.type_id()).field("id", &self.proxy.id()).finish()
    }
}

impl<T> From<Proxy<T>> for AnyProxy {
    fn from(proxy: Proxy<T>) -> AnyProxy {
        proxy.proxy
    }
}

impl<T: Managed> TryFrom<AnyProxy> for Proxy<T> {
    type Error = Error;

    fn try_from(proxy: AnyProxy) -> Result<Proxy<T>> {
        proxy.expect_type(T::TYPE_ID)?;
        Ok(Proxy { proxy, types: PhantomData })
    }
}

impl<T> AsRef<AnyProxy> for Proxy<T> {
    fn as_ref(&self) -> &AnyProxy {
        &self.proxy
    }
}

impl<T> Serialize for Proxy<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.proxy.serialize(serializer)
    }
}

impl<'de, T: Managed> Deserialize<'de> for Proxy<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Proxy<T>, D::Error> {
        let proxy = AnyProxy::deserialize(deserializer)?;
        Proxy::try_from(proxy).map_err(<D::Error as serde::de::Error>::custom)
    }
}
