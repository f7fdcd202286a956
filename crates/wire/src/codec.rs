//! The one place that knows the encoding: bincode 2 through serde, plus the side lists of file
//! descriptors that [`Fd`](crate::Fd) fills while a value is encoded or decoded.

use std::cell::RefCell;
use std::os::fd::{OwnedFd, RawFd};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// The most bytes one decoded value may claim, whatever its size: a length read from
/// untrusted bytes is checked against the value's allowance before anything is allocated.
pub const MAX_DECODED: usize = 4 << 30;

/// How much memory a value may claim per byte of its encoding. Decoded values are rarely more
/// than a few times larger in memory than encoded (an empty `String` is 24 bytes for its
/// 8-byte length); a garbage length claiming more is refused.
const CLAIM_PER_BYTE: usize = 16;

type Config<const LIMIT: usize> = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<LIMIT>,
>;

/// Fixed-width integers (encoding and decoding are copies, not varint loops) and a limit on
/// what lengths may claim.
const fn config<const LIMIT: usize>() -> Config<LIMIT> {
    bincode::config::standard().with_fixed_int_encoding().with_limit::<LIMIT>()
}

/// Encoding has no limit of its own (the value is ours).
const CONFIG: Config<MAX_DECODED> = config::<MAX_DECODED>();

/// Decodes with an allowance scaled to the input: a few tiers, since bincode's limit is a
/// constant.
fn decode_limited<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), bincode::error::DecodeError> {
    let allowance = bytes.len().saturating_mul(CLAIM_PER_BYTE).saturating_add(4096);
    if allowance <= 64 << 10 {
        bincode::serde::decode_from_slice(bytes, config::<{ 64 << 10 }>())
    } else if allowance <= 1 << 20 {
        bincode::serde::decode_from_slice(bytes, config::<{ 1 << 20 }>())
    } else if allowance <= 16 << 20 {
        bincode::serde::decode_from_slice(bytes, config::<{ 16 << 20 }>())
    } else if allowance <= 256 << 20 {
        bincode::serde::decode_from_slice(bytes, config::<{ 256 << 20 }>())
    } else {
        bincode::serde::decode_from_slice(bytes, config::<MAX_DECODED>())
    }
}

thread_local! {
    /// Descriptors met while encoding on this thread; `None` outside [`encode_into`].
    static OUT_FDS: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    /// Descriptors received with the message being decoded on this thread.
    static IN_FDS: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// An encoded value: its bytes and the descriptors it refers to.
///
/// The descriptors are borrowed from the value that was encoded: they stay valid while that
/// value lives, and must be sent (for example with [`sys::send_with_fds`](crate::sys::send_with_fds))
/// before it is dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The encoded bytes.
    pub bytes: Vec<u8>,
    /// Descriptors referred to by index from `bytes`, in index order.
    pub fds: Vec<RawFd>,
}

/// Encodes `value`.
///
/// # Errors
/// [`Error::Encode`] if the value's `Serialize` implementation fails.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Encoded, Error> {
    let mut out = Encoded::default();
    encode_into(value, &mut out.bytes, &mut out.fds)?;
    Ok(out)
}

/// Encodes `value`, appending its bytes to `bytes` and its descriptors to `fds`.
///
/// On error, `bytes` and `fds` are restored to what they held before the call.
///
/// # Errors
/// [`Error::Encode`] if the value's `Serialize` implementation fails.
pub fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    bytes: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
) -> Result<(), Error> {
    let (len, nfds) = (bytes.len(), fds.len());
    let previous = OUT_FDS.with(|cell| cell.replace(Some(std::mem::take(fds))));
    let result = bincode::serde::encode_into_std_write(value, bytes, CONFIG);
    *fds = OUT_FDS.with(|cell| cell.replace(previous)).unwrap_or_default();
    match result {
        Ok(_) => Ok(()),
        Err(err) => {
            bytes.truncate(len);
            fds.truncate(nfds);
            Err(Error::Encode(err.to_string()))
        }
    }
}

/// Decodes a `T` from `bytes`, taking the descriptors it refers to from `fds`.
///
/// Descriptors that the value does not refer to are closed.
///
/// # Errors
/// [`Error::Decode`] if the bytes are not exactly one valid `T`, or refer to a descriptor that
/// was not received.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, Error> {
    // Descriptors the value did not take are dropped (closed) inside decode_prefix.
    match decode_prefix(bytes, fds)? {
        (value, used) if used == bytes.len() => Ok(value),
        (_, used) => Err(Error::Decode(format!("{} trailing bytes after the value", bytes.len() - used))),
    }
}

/// Decodes a `T` from the start of `bytes`; returns it with the number of bytes it used, so
/// that a header and a body can share one frame.
///
/// # Errors
/// As [`decode`], except that trailing bytes are allowed.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<(T, usize), Error> {
    let received = fds.into_iter().map(Some).collect();
    let previous = IN_FDS.with(|cell| cell.replace(Some(received)));
    let result = decode_limited::<T>(bytes);
    drop(IN_FDS.with(|cell| cell.replace(previous)));
    result.map_err(|err| Error::Decode(err.to_string()))
}

/// Records `fd` in the current encoding's side list and returns its index, or `None` outside
/// an encoding.
pub(crate) fn push_out_fd(fd: RawFd) -> Option<u32> {
    OUT_FDS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let list = slot.as_mut()?;
        list.push(fd);
        Some((list.len() - 1) as u32)
    })
}

/// Takes descriptor `index` of the message being decoded.
pub(crate) fn take_in_fd(index: u32) -> Result<OwnedFd, &'static str> {
    IN_FDS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let list = slot.as_mut().ok_or("file descriptors can only be decoded by multiproc_wire::decode")?;
        list.get_mut(index as usize)
            .ok_or("message refers to a file descriptor that was not received")?
            .take()
            .ok_or("message refers to the same file descriptor twice")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_huge_claimed_lengths_without_allocating() {
        // A String claiming u64::MAX / 2 bytes, then nothing.
        let mut bytes = (u64::MAX / 2).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        assert!(decode::<String>(&bytes, Vec::new()).is_err());
        let mut bytes = (1u64 << 21).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        assert!(decode::<Vec<u8>>(&bytes, Vec::new()).is_err());
        assert!(decode::<Vec<u64>>(&bytes, Vec::new()).is_err());
    }

    #[test]
    fn round_trips_values() {
        let value = (1u64, -2i32, String::from("three"), vec![4u8, 5], Some(6.5f64));
        let encoded = encode(&value).unwrap();
        assert_eq!(
            decode::<(u64, i32, String, Vec<u8>, Option<f64>)>(&encoded.bytes, Vec::new()).unwrap(),
            value
        );
        assert!(decode::<u64>(&encoded.bytes, Vec::new()).is_err(), "trailing bytes are refused");
    }
}
