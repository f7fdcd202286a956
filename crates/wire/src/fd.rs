use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec;

/// An owned file descriptor that can be sent to another process inside any serde value.
///
/// Encoding an `Fd` records it beside the bytes; the receiving process gets a new descriptor
/// for the same open file description (as `dup` would give), and the sender keeps its own.
/// Outside [`encode`](crate::encode) and [`decode`](crate::decode) (for example with a JSON
/// serializer) serialization fails with an error.
///
/// ```
/// use multiproc_wire::Fd;
/// use std::os::fd::OwnedFd;
///
/// let owned: OwnedFd = std::fs::File::open("/dev/null")?.into();
/// let fd = Fd::from(owned);
/// let back: OwnedFd = fd.into();
/// # drop(back);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Fd(OwnedFd);

impl Fd {
    /// Wraps an owned descriptor.
    pub fn new(fd: OwnedFd) -> Fd {
        Fd(fd)
    }

    /// Returns the owned descriptor.
    pub fn into_inner(self) -> OwnedFd {
        self.0
    }

    /// Duplicates the descriptor (`F_DUPFD_CLOEXEC`).
    ///
    /// # Errors
    /// The operating system's error, for example `EMFILE`.
    pub fn try_clone(&self) -> std::io::Result<Fd> {
        self.0.try_clone().map(Fd)
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd").field(&self.0.as_raw_fd()).finish()
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Fd {
        Fd(fd)
    }
}

impl From<Fd> for OwnedFd {
    fn from(fd: Fd) -> OwnedFd {
        fd.0
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl IntoRawFd for Fd {
    fn into_raw_fd(self) -> RawFd {
        self.0.into_raw_fd()
    }
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fd_serde::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fd, D::Error> {
        fd_serde::deserialize(deserializer).map(Fd)
    }
}

/// Serde functions for descriptor fields: `#[serde(with = "multiproc_wire::fd_serde")]` on an
/// [`OwnedFd`] field (deserialize gives an `OwnedFd`; serialize takes anything [`AsFd`]).
///
/// ```
/// use std::os::fd::OwnedFd;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Job {
///     id: u64,
///     #[serde(with = "multiproc_wire::fd_serde")]
///     log: OwnedFd,
/// }
/// ```
pub mod fd_serde {
    use super::*;

    /// Records the descriptor beside the encoded bytes and writes its index.
    ///
    /// # Errors
    /// Fails outside [`encode`](crate::encode).
    pub fn serialize<F: AsFd, S: Serializer>(fd: &F, serializer: S) -> Result<S::Ok, S::Error> {
        let index = codec::push_out_fd(fd.as_fd().as_raw_fd()).ok_or_else(|| {
            S::Error::custom("file descriptors can only be encoded by multiproc_wire::encode")
        })?;
        serializer.serialize_u32(index)
    }

    /// Reads an index and takes the descriptor received under it.
    ///
    /// # Errors
    /// Fails outside [`decode`](crate::decode), or when the index names no received descriptor.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OwnedFd, D::Error> {
        let index = u32::deserialize(deserializer)?;
        codec::take_in_fd(index).map_err(D::Error::custom)
    }
}
