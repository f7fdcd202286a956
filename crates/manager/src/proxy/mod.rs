//! Proxies: what a client holds of an object in the server.
//!
//! Every proxy wraps an [`AnyProxy`]: the object's id and type, and the process's connection to
//! the server. Clones share one reference in the server; the last clone to go releases it.
//! Serializing a proxy (to pass it to a child, through a `Connection`, or into another managed
//! object) asks the server for a ticket that holds a reference while the proxy travels; the
//! receiving process connects (once per process) and claims the ticket, taking a reference of
//! its own.

mod collections;
mod queue;
mod sync;
mod user;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use multiproc_pipe::Address;
use multiproc_wire::Bytes;
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use collections::{ArrayProxy, DictProxy, ListProxy, NamespaceProxy, ValueProxy};
pub use queue::{JoinableQueueProxy, QueueProxy};
pub use sync::{
    BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, EventProxy, LockGuard, LockProxy, RLockProxy,
    SemaphoreProxy,
};
pub use user::Proxy;

use crate::client::{self, ClientConn, REPLY_GRACE, current_pid, lock};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{Created, MANAGER, Wait, WireAddress};

/// The type ids of the built-in objects (CPython's names).
pub(crate) mod type_ids {
    pub(crate) const DICT: &str = "dict";
    pub(crate) const LIST: &str = "list";
    pub(crate) const NAMESPACE: &str = "Namespace";
    pub(crate) const VALUE: &str = "Value";
    pub(crate) const ARRAY: &str = "Array";
    pub(crate) const QUEUE: &str = "Queue";
    pub(crate) const JOINABLE_QUEUE: &str = "JoinableQueue";
    pub(crate) const LOCK: &str = "Lock";
    pub(crate) const RLOCK: &str = "RLock";
    pub(crate) const SEMAPHORE: &str = "Semaphore";
    pub(crate) const BOUNDED_SEMAPHORE: &str = "BoundedSemaphore";
    pub(crate) const CONDITION: &str = "Condition";
    pub(crate) const EVENT: &str = "Event";
    pub(crate) const BARRIER: &str = "Barrier";

    /// Every built-in type id: a registered type may not take one.
    pub(crate) const ALL: [&str; 14] = [
        DICT,
        LIST,
        NAMESPACE,
        VALUE,
        ARRAY,
        QUEUE,
        JOINABLE_QUEUE,
        LOCK,
        RLOCK,
        SEMAPHORE,
        BOUNDED_SEMAPHORE,
        CONDITION,
        EVENT,
        BARRIER,
    ];
}

/// A proxy of any type: the object's id and type id, and the connection to its server.
///
/// Every typed proxy converts into one (`AnyProxy::from(proxy)`) and back
/// ([`downcast`](AnyProxy::downcast), which checks the type id). Registered callables return
/// one (see [`ManagerServer::register_callable`](crate::ManagerServer::register_callable)).
///
/// Clones share one reference in the server; the object lives while any proxy of it exists in
/// any process.
#[derive(Clone)]
pub struct AnyProxy {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    type_id: String,
    /// The connection of the process that holds the reference; replaced (with a new
    /// reference) on first use in a forked child.
    binding: Mutex<Arc<ClientConn>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let conn = self.binding.get_mut().unwrap_or_else(|e| e.into_inner());
        // A forked child that never used the proxy holds no reference of its own.
        if conn.pid() == current_pid() {
            let _ = conn.notify(MANAGER, "decref", &self.id);
        }
    }
}

impl fmt::Debug for AnyProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let binding = lock(&self.inner.binding);
        f.debug_struct("AnyProxy")
            .field("type_id", &self.inner.type_id)
            .field("id", &self.inner.id)
            .field("address", binding.address())
            .finish()
    }
}

impl AnyProxy {
    /// A proxy for an object the server has just made or handed out with a reference for
    /// `conn`.
    pub(crate) fn new(conn: Arc<ClientConn>, created: Created) -> AnyProxy {
        AnyProxy {
            inner: Arc::new(Inner { id: created.id, type_id: created.type_id, binding: Mutex::new(conn) }),
        }
    }

    /// The object's type id: CPython's names for the built-in types (`dict`, `list`,
    /// `Queue`, ...), [`Managed::TYPE_ID`](crate::Managed::TYPE_ID) for registered ones.
    pub fn type_id(&self) -> &str {
        &self.inner.type_id
    }

    /// The object's id in its server.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The address this process reaches the object's server at.
    pub fn address(&self) -> Address {
        lock(&self.inner.binding).address().clone()
    }

    /// This proxy as a typed proxy `P`.
    ///
    /// # Errors
    /// [`ErrorKind::WrongType`] when the object is not of `P`'s type.
    pub fn downcast<P: TryFrom<AnyProxy, Error = Error>>(self) -> Result<P> {
        P::try_from(self)
    }

    /// Checks the type id.
    pub(crate) fn expect_type(&self, type_id: &str) -> Result<()> {
        if self.inner.type_id == type_id {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::WrongType,
                format!(
                    "a proxy of a '{}' object cannot be used as a proxy of '{type_id}'",
                    self.inner.type_id
                ),
            ))
        }
    }

    /// Whether the proxy's object lives in the server of process `pid` with `authkey`.
    pub(crate) fn served_by(&self, pid: u32, authkey: &[u8]) -> bool {
        let binding = lock(&self.inner.binding);
        binding.server_pid() == pid && binding.authkey() == authkey
    }

    /// The process's connection to the server: after a fork, a new connection and a new
    /// reference of this process's own.
    pub(crate) fn conn(&self) -> Result<Arc<ClientConn>> {
        let mut binding = lock(&self.inner.binding);
        if binding.pid() == current_pid() {
            return Ok(binding.clone());
        }
        let conn = client::connect(binding.address(), binding.authkey())?;
        conn.call::<_, ()>(MANAGER, "incref", &self.inner.id, None)?;
        *binding = conn.clone();
        Ok(conn)
    }

    /// Calls a method that answers at once.
    pub(crate) fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R> {
        self.conn()?.call(self.inner.id, method, args, None)
    }

    /// Calls a method that may wait in the server as `wait` says (the wait is in `args`): the
    /// client waits as long, plus a grace period for the server's answer.
    pub(crate) fn call_waiting<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
        wait: Wait,
    ) -> Result<R> {
        let deadline = match wait {
            Wait::Now => Instant::now().checked_add(REPLY_GRACE),
            Wait::For(timeout) => {
                Instant::now().checked_add(timeout).and_then(|d| d.checked_add(REPLY_GRACE))
            }
            Wait::Forever => None,
        };
        self.conn()?.call(self.inner.id, method, args, deadline)
    }
}

/// A proxy as it travels: where its server is, the key, the object, and a ticket holding a
/// reference in the server until the receiver claims it.
#[derive(Serialize, Deserialize)]
struct WireProxy {
    address: WireAddress,
    authkey: Bytes,
    id: u64,
    type_id: String,
    ticket: u64,
}

impl Serialize for AnyProxy {
    /// Asks the server for a ticket (one round trip), then writes the address, the authkey,
    /// the object and the ticket. The authkey travels with the proxy, as in CPython: send
    /// proxies only to processes you would give the key to.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let conn = self.conn().map_err(S::Error::custom)?;
        let ticket: u64 = conn.call(MANAGER, "ticket", &self.inner.id, None).map_err(S::Error::custom)?;
        WireProxy {
            address: WireAddress::from(conn.address()),
            authkey: Bytes(conn.authkey().to_vec()),
            id: self.inner.id,
            type_id: self.inner.type_id.clone(),
            ticket,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AnyProxy {
    /// Connects to the server (once per process) and claims the ticket: the receiving process
    /// holds a reference of its own from here on.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<AnyProxy, D::Error> {
        let wire = WireProxy::deserialize(deserializer)?;
        let address = Address::from(wire.address);
        let conn = client::connect(&address, &wire.authkey.0).map_err(D::Error::custom)?;
        conn.call::<_, ()>(MANAGER, "claim", &(wire.id, wire.ticket), None).map_err(D::Error::custom)?;
        Ok(AnyProxy::new(conn, Created { id: wire.id, type_id: wire.type_id }))
    }
}

impl AsRef<AnyProxy> for AnyProxy {
    fn as_ref(&self) -> &AnyProxy {
        self
    }
}

/// Clone, Debug, conversions to and from [`AnyProxy`] and serde for a typed proxy
/// `$name { proxy: AnyProxy, types: PhantomData<..> }` (or without `types` when not generic).
macro_rules! typed_proxy {
    ($name:ident < $($t:ident),+ >, $type_id:expr) => {
        impl<$($t),+> Clone for $name<$($t),+> {
            fn clone(&self) -> Self {
                $name { proxy: self.proxy.clone(), types: std::marker::PhantomData }
            }
        }

        impl<$($t),+> std::fmt::Debug for $name<$($t),+> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).field("id", &self.proxy.id()).finish()
            }
        }

        impl<$($t),+> From<$name<$($t),+>> for $crate::AnyProxy {
            fn from(proxy: $name<$($t),+>) -> $crate::AnyProxy {
                proxy.proxy
            }
        }

        impl<$($t),+> TryFrom<$crate::AnyProxy> for $name<$($t),+> {
            type Error = $crate::Error;

            fn try_from(proxy: $crate::AnyProxy) -> $crate::Result<Self> {
                proxy.expect_type($type_id)?;
                Ok($name { proxy, types: std::marker::PhantomData })
            }
        }

        impl<$($t),+> AsRef<$crate::AnyProxy> for $name<$($t),+> {
            fn as_ref(&self) -> &$crate::AnyProxy {
                &self.proxy
            }
        }

        impl<$($t),+> serde::Serialize for $name<$($t),+> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                self.proxy.serialize(serializer)
            }
        }

        impl<'de, $($t),+> serde::Deserialize<'de> for $name<$($t),+> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let proxy = $crate::AnyProxy::deserialize(deserializer)?;
                Self::try_from(proxy).map_err(<D::Error as serde::de::Error>::custom)
            }
        }
    };
    ($name:ident, $type_id:expr) => {
        impl Clone for $name {
            fn clone(&self) -> Self {
                $name { proxy: self.proxy.clone() }
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).field("id", &self.proxy.id()).finish()
            }
        }

        impl From<$name> for $crate::AnyProxy {
            fn from(proxy: $name) -> $crate::AnyProxy {
                proxy.proxy
            }
        }

        impl TryFrom<$crate::AnyProxy> for $name {
            type Error = $crate::Error;

            fn try_from(proxy: $crate::AnyProxy) -> $crate::Result<Self> {
                proxy.expect_type($type_id)?;
                Ok($name { proxy })
            }
        }

        impl AsRef<$crate::AnyProxy> for $name {
            fn as_ref(&self) -> &$crate::AnyProxy {
                &self.proxy
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                self.proxy.serialize(serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let proxy = $crate::AnyProxy::deserialize(deserializer)?;
                Self::try_from(proxy).map_err(<D::Error as serde::de::Error>::custom)
            }
        }
    };
}

pub(crate) use typed_proxy;
