//! User types: objects of your own type living in the server, their methods called by name
//! (CPython's `BaseManager.register(typeid, callable)`).

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

/// A type whose objects live in a manager's server and are used through
/// [`Proxy<Self>`](crate::Proxy).
///
/// Register it in the server with [`ManagerServer::register`](crate::ManagerServer::register)
/// (for a server started by [`Manager::start`](crate::Manager::start): in the
/// [`setup`](crate::ManagerBuilder::setup) function), make objects with
/// [`Manager::create`](crate::Manager::create), and call their methods by name with
/// [`Proxy::call`](crate::Proxy::call): arguments and results are any serde types.
///
/// Methods run in the server on the calling client's connection thread, one at a time per
/// object: they should not block for long. An error they return reaches the caller as it is;
/// a panic reaches it as [`ErrorKind::Panicked`]; neither stops the server.
///
/// ```
/// use multiproc_manager::{Args, Managed, Reply, Result, Error};
///
/// struct Counter {
///     n: i64,
/// }
///
/// impl Managed for Counter {
///     const TYPE_ID: &'static str = "Counter";
///     type Init = i64;
///
///     fn create(start: i64) -> Result<Counter> {
///         Ok(Counter { n: start })
///     }
///
///     fn call(&mut self, method: &str, args: Args<'_>) -> Result<Reply> {
///         match method {
///             "add" => {
///                 let by: i64 = args.decode()?;
///                 self.n = self.n.checked_add(by).ok_or_else(|| Error::user("counter overflow"))?;
///                 Reply::encode(&self.n)
///             }
///             "get" => Reply::encode(&self.n),
///             _ => Err(Error::unknown_method(Self::TYPE_ID, method)),
///         }
///     }
/// }
/// ```
pub trait Managed: Send + 'static {
    /// The name the type is registered and made under (CPython's `typeid`); it must differ
    /// from the built-in types' names (`dict`, `list`, `Queue`, ...).
    const TYPE_ID: &'static str;

    /// What [`Manager::create`](crate::Manager::create) sends to make an object.
    type Init: Serialize + DeserializeOwned;

    /// Makes an object in the server.
    ///
    /// # Errors
    /// Whatever should reach the caller of `create`.
    fn create(init: Self::Init) -> Result<Self>
    where
        Self: Sized;

    /// Runs the method `method` with its encoded arguments.
    ///
    /// # Errors
    /// Whatever should reach the caller; [`Error::unknown_method`] for a name the type does
    /// not know.
    fn call(&mut self, method: &str, args: Args<'_>) -> Result<Reply>;
}

/// The encoded arguments of a method call on a [`Managed`] object.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    bytes: &'a [u8],
}

impl<'a> Args<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Args<'a> {
        Args { bytes }
    }

    /// The arguments as a `T` (a tuple for several).
    ///
    /// They carry a fingerprint of the type the caller sent: arguments of another type are
    /// refused, naming the types.
    ///
    /// # Errors
    /// [`ErrorKind::BadRequest`] when they are not a `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        typed_args(self.bytes)
    }
}

impl fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Args({} bytes)", self.bytes.len())
    }
}

/// The encoded result of a method call on a [`Managed`] object.
pub struct Reply {
    bytes: Vec<u8>,
}

impl Reply {
    /// A result holding `value`.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when the value cannot be encoded, or holds file descriptors.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Reply> {
        crate::protocol::encode_value(value).map(|b| Reply { bytes: b.0 })
    }

    /// The result of a method that returns nothing (`()`).
    pub fn unit() -> Reply {
        Reply { bytes: multiproc_wire::Fingerprint::of::<()>().to_bytes().to_vec() }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply({} bytes)", self.bytes.len())
    }
}

/// A registered object, as the server holds it.
pub(crate) trait DynManaged: Send {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>>;
}

impl<T: Managed> DynManaged for T {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        Managed::call(self, method, Args::new(args)).map(Reply::into_bytes)
    }
}

/// Decodes arguments whose type a user's code chose (a registered type's method, a registered
/// callable): in the typed encoding, so arguments of another type are refused by name.
pub(crate) fn typed_args<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    multiproc_wire::decode_typed(bytes, Vec::new())
        .map_err(|e| Error::bad_request("cannot decode the arguments", e))
}

/// Makes a registered object from its encoded `Init`.
pub(crate) fn construct<T: Managed>(init: &[u8]) -> Result<Box<dyn DynManaged>> {
    let init: T::Init = multiproc_wire::decode_typed(init, Vec::new())
        .map_err(|e| Error::bad_request("cannot decode the initial value", e))?;
    Ok(Box::new(T::create(init)?))
}

/// Checks a registered name.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() || crate::proxy::type_ids::ALL.contains(&name) {
        return Err(Error::new(ErrorKind::InvalidValue, format!("'{name}' cannot name a registered {kind}")));
    }
    Ok(())
}
