//! The bytes between multiproc processes: the codec, the frame format, and file descriptors
//! that travel beside the bytes.
//!
//! Every multiproc crate encodes values with [`encode`] and decodes them with [`decode`]; a value
//! whose type the receiver names on its own side travels in the typed encoding
//! ([`encode_typed`], [`decode_typed`]), which checks a [`Fingerprint`] of the type first. A
//! value may contain file descriptors ([`Fd`], or an [`OwnedFd`](std::os::fd::OwnedFd) field
//! marked `#[serde(with = "multiproc_wire::fd_serde")]`): each serializes as an index into a
//! side list, and the descriptors themselves ride in the same `sendmsg` as `SCM_RIGHTS`.
//!
//! ```
//! use multiproc_wire::{decode, encode, Fd};
//! use std::os::fd::OwnedFd;
//!
//! let file: OwnedFd = std::fs::File::open("/dev/null")?.into();
//! let value = (7u32, String::from("seven"), Fd::from(file));
//! let encoded = encode(&value)?;
//! assert_eq!(encoded.fds.len(), 1);
//!
//! // What a receiver gets: the bytes and fresh descriptors for the same open files.
//! let received = vec![value.2.try_clone()?.into_inner()];
//! let (n, s, _fd): (u32, String, Fd) = decode(&encoded.bytes, received)?;
//! assert_eq!((n, s.as_str()), (7, "seven"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bytes;
mod codec;
mod error;
mod fd;
pub mod frame;
pub mod spin;
pub mod sys;

pub use bytes::Bytes;
pub use codec::{
    Encoded, FINGERPRINT_LEN, Fingerprint, MAX_DECODED, Typed, decode, decode_prefix, decode_typed, encode,
    encode_as_into, encode_into, encode_typed, encode_typed_into,
};
pub use error::Error;
pub use fd::{Fd, fd_serde};
