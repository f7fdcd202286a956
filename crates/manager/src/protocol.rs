//! What client and server say to each other after the authkey handshake.
//!
//! The server speaks first: one [`Hello`] frame. Then every frame from the client is a request:
//! a [`RequestHead`] followed, in the same frame, by the method's encoded arguments; every frame
//! from the server is a reply: a [`ReplyHead`] followed by the encoded result when it has one.
//! Requests are tagged with ids chosen by the client and replies carry the id of their request,
//! so replies may come in any order (a blocked `Queue.get` does not hold back a `dict` read
//! behind it). A request with id [`NO_REPLY`] gets no reply (releasing a reference); a reply
//! with id `NO_REPLY` reports a frame the server could not read at all.

use std::net::SocketAddr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use multiproc_pipe::Address;
use multiproc_wire::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// What the first frame says, so that a client that reached something else notices.
pub(crate) const MAGIC: &str = "multiproc-manager";
/// The protocol's version; a client refuses a server with another.
pub(crate) const VERSION: u32 = 1;

/// The object id of the manager itself (creating objects, references, callables).
pub(crate) const MANAGER: u64 = 0;
/// The request id that asks for no reply; the reply id of errors about unreadable frames.
pub(crate) const NO_REPLY: u64 = 0;

/// The server's greeting.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) magic: String,
    pub(crate) version: u32,
    /// The largest request frame the server accepts.
    pub(crate) max_request: u64,
    /// The server's process id.
    pub(crate) pid: u32,
}

/// The start of a request frame (the client's side: borrows the method name).
#[derive(Debug, Serialize)]
pub(crate) struct RequestHeadRef<'a> {
    pub(crate) id: u64,
    pub(crate) object: u64,
    pub(crate) method: &'a str,
    /// The calling thread, as the owner of locks.
    pub(crate) caller: u64,
}

/// The start of a request frame (the server's side).
#[derive(Debug, Deserialize)]
pub(crate) struct RequestHead {
    pub(crate) id: u64,
    pub(crate) object: u64,
    pub(crate) method: String,
    pub(crate) caller: u64,
}

/// The start of a reply frame: the request's id, and an error or (after the head) the result.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ReplyHead {
    pub(crate) id: u64,
    pub(crate) error: Option<WireError>,
}

/// An error as it travels.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub(crate) kind: u16,
    pub(crate) message: String,
}

impl From<&Error> for WireError {
    fn from(err: &Error) -> WireError {
        WireError { kind: err.kind().code(), message: err.message().to_owned() }
    }
}

impl From<WireError> for Error {
    fn from(err: WireError) -> Error {
        Error::new(ErrorKind::from_code(err.kind), err.message)
    }
}

/// How long a blocking method may wait in the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Wait {
    /// Not at all (`block=False`).
    Now,
    /// At most this long.
    For(Duration),
    /// As long as it takes.
    Forever,
}

/// An object to make in the server; values are encoded by the client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Spec {
    Dict(Vec<(Bytes, Bytes)>),
    List(Vec<Bytes>),
    Namespace,
    Value(Bytes),
    Array(Vec<Bytes>),
    Queue {
        maxsize: usize,
        joinable: bool,
    },
    Lock {
        reentrant: bool,
    },
    Semaphore {
        value: usize,
        bounded: bool,
    },
    /// A condition over the lock object with this id, or over a new `RLock`.
    Condition(Option<u64>),
    Event,
    Barrier(usize),
    /// A registered type, made from its encoded `Init`.
    User {
        type_id: String,
        init: Bytes,
    },
}

/// The reply to making (or being handed) an object: its id and type.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Created {
    pub(crate) id: u64,
    pub(crate) type_id: String,
}

/// An [`Address`] as it travels inside a serialized proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireAddress {
    Unix(Vec<u8>),
    Abstract(Vec<u8>),
    Tcp(SocketAddr),
}

impl From<&Address> for WireAddress {
    fn from(address: &Address) -> WireAddress {
        match address {
            Address::Unix(path) => WireAddress::Unix(path.as_os_str().as_bytes().to_vec()),
            Address::Abstract(name) => WireAddress::Abstract(name.clone()),
            Address::Tcp(addr) => WireAddress::Tcp(*addr),
        }
    }
}

impl From<WireAddress> for Address {
    fn from(address: WireAddress) -> Address {
        match address {
            WireAddress::Unix(path) => Address::Unix(PathBuf::from(std::ffi::OsString::from_vec(path))),
            WireAddress::Abstract(name) => Address::Abstract(name),
            WireAddress::Tcp(addr) => Address::Tcp(addr),
        }
    }
}

/// A user's value in its typed encoding (fingerprint first), refusing file descriptors:
/// objects keep bytes, and a descriptor's index would mean nothing once the message carrying
/// it is gone. Every value a user's type parameter names travels so (container items, keys,
/// queue items, `Value`s, a registered type's initial value, arguments and results), so a
/// proxy that reads it as another type gets a codec error, never a wrong value. Keys compare
/// by these bytes: equal values of one type have equal encodings.
pub(crate) fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, Error> {
    let encoded =
        multiproc_wire::encode_typed(value).map_err(|e| Error::codec("cannot encode a value", e))?;
    if !encoded.fds.is_empty() {
        return Err(Error::new(ErrorKind::Codec, "a value kept by a manager cannot hold file descriptors"));
    }
    Ok(Bytes(encoded.bytes))
}

/// Decodes a value encoded by [`encode_value`], checking its fingerprint first.
pub(crate) fn decode_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    multiproc_wire::decode_typed(bytes, Vec::new()).map_err(|e| Error::codec("cannot decode a value", e))
}
