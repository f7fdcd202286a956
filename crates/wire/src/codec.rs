//! The one place that knows the encoding: bincode 2 through serde, plus the side lists of file
//! descriptors that [`Fd`](crate::Fd) fills while a value is encoded or decoded, and the
//! fingerprints that make a typed message say what type it holds.
//!
//! # Typed encodings
//!
//! Bincode is not self-describing: the bytes of an empty `String` are a valid `u64`. Every
//! message whose type the receiver names independently of the sender (a `Connection`'s
//! `recv::<T>`, a manager value or user-object call, a call's results) is therefore *typed*:
//! an 8-byte [`Fingerprint`] of the Rust type (little endian), then the value's bincode bytes.
//! The receiver compares the fingerprint before it decodes anything, and refuses bytes left
//! over after the value. Both rules together turn a message of another type into
//! [`Error::Decode`] naming the expected type (and the sender's, when this process knows the
//! fingerprint), never into a wrong value.
//!
//! The layout is exactly the bincode encoding of the pair `(fingerprint, value)`, so
//! [`Typed`] (a serde wrapper) and [`encode_typed`] / [`decode_typed`] (the fast path) produce
//! and accept the same bytes.
//!
//! A fingerprint hashes the type's name ([`std::any::type_name`]) after mapping the types
//! that serde writes alike to one name: a reference is its referent (`&T` is `T`), `str` is
//! `String`, a slice `[T]` is `Vec<T>`, and `Box`, `Rc`, `Arc` and `Cow` are what they hold.
//! So `send("text")` is received as a `String` and `send(&[1, 2][..])` as a `Vec<i32>`, while
//! `[i32; 2]` (a tuple on the wire) is not a `Vec<i32>`. Type names are stable for one build
//! of one program; peers built from other sources may need to send the same type paths.
//!
//! Hashing a name costs a pass over it, so each thread keeps the last few fingerprints it
//! computed, keyed by the address of the name (a static string): on the hot path a
//! fingerprint is a table look-up.

use std::any::type_name;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

// ---------------------------------------------------------------------------- typed encodings

/// How many bytes a [`Fingerprint`] takes at the front of a typed encoding.
pub const FINGERPRINT_LEN: usize = 8;

/// The identity of a Rust type in a typed message: a 64-bit hash of its name, with the name
/// itself for error messages (it never travels).
///
/// The hash is of the name after mapping the types that serde writes alike to one name: a
/// reference is its referent (`&T` is `T`), `str` is `String`, a slice `[T]` is `Vec<T>`, and
/// `Box`, `Rc`, `Arc` and `Cow` are what they hold. So `&str` is received as a `String`, while
/// `[i32; 2]` (a tuple on the wire) is not a `Vec<i32>`. Names are those of one build of one
/// program: peers built from other sources must use the same type paths.
///
/// ```
/// use multiproc_wire::{Fingerprint, decode_typed, encode_typed};
///
/// assert_eq!(Fingerprint::of::<(&str, &[u8])>(), Fingerprint::of::<(String, Vec<u8>)>());
/// let bytes = encode_typed(&String::new())?.bytes;
/// let err = decode_typed::<u64>(&bytes, Vec::new()).unwrap_err();
/// assert!(err.to_string().contains("expected a `u64`, found a `alloc::string::String`"));
/// # Ok::<(), multiproc_wire::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Fingerprint {
    hash: u64,
    name: &'static str,
}

impl Fingerprint {
    /// The fingerprint of `T`.
    #[inline]
    pub fn of<T: ?Sized>() -> Fingerprint {
        let name = type_name::<T>();
        Fingerprint { hash: cached_hash(name), name }
    }

    /// The hash that travels.
    pub fn hash(self) -> u64 {
        self.hash
    }

    /// The type's name, as [`std::any::type_name`] gives it.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// The bytes that travel: the hash, little endian.
    #[inline]
    pub fn to_bytes(self) -> [u8; FINGERPRINT_LEN] {
        self.hash.to_le_bytes()
    }

    /// Checks that `bytes` start with this fingerprint; returns the bytes after it.
    ///
    /// # Errors
    /// [`Error::Decode`] naming the expected type, and the type found when this process has
    /// met its fingerprint (it always names the hashes).
    #[inline]
    pub fn check(self, bytes: &[u8]) -> Result<&[u8], Error> {
        match bytes.split_first_chunk::<FINGERPRINT_LEN>() {
            Some((found, rest)) if *found == self.to_bytes() => Ok(rest),
            Some((found, _)) => Err(Error::Decode(self.mismatch(u64::from_le_bytes(*found)))),
            None => Err(Error::Decode(format!(
                "expected a `{}`, found {} bytes, too short for a typed message",
                self.name,
                bytes.len()
            ))),
        }
    }

    /// The text of a mismatch with a message whose fingerprint is `found`.
    #[cold]
    fn mismatch(self, found: u64) -> String {
        match known_name(found) {
            Some(sender) => format!("expected a `{}`, found a `{sender}`", self.name),
            None => format!(
                "expected a `{}` (fingerprint {:#018x}), found a value of another type (fingerprint \
                 {found:#018x}, a type this process has not used)",
                self.name, self.hash
            ),
        }
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Fingerprint) -> bool {
        self.hash == other.hash
    }
}

impl Eq for Fingerprint {}

/// How many fingerprints a thread remembers (a power of two).
const CACHE_SLOTS: usize = 16;

thread_local! {
    /// Direct-mapped by the name's address: (address, length, hash); address 0 is empty.
    static CACHE: [Cell<(usize, usize, u64)>; CACHE_SLOTS] =
        const { [const { Cell::new((0, 0, 0)) }; CACHE_SLOTS] };
}

/// Every fingerprint this process has computed, with its type's name, for error messages.
/// Names are canonical (`&str` is named `alloc::string::String`), so the name does not depend on
/// which of the equivalent types was met first.
fn names() -> &'static Mutex<HashMap<u64, String>> {
    static NAMES: OnceLock<Mutex<HashMap<u64, String>>> = OnceLock::new();
    NAMES.get_or_init(Mutex::default)
}

/// The registry, unless it stays locked: a child forked while another thread held it would
/// wait forever, so after a while of trying it goes without (a name is only for messages).
fn lock_names() -> Option<std::sync::MutexGuard<'static, HashMap<u64, String>>> {
    for _ in 0..10_000 {
        match names().try_lock() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    None
}

fn known_name(hash: u64) -> Option<String> {
    lock_names()?.get(&hash).cloned()
}

#[inline]
fn cached_hash(name: &'static str) -> u64 {
    let key = (name.as_ptr() as usize, name.len());
    let slot = (key.0 >> 3 ^ key.0 >> 9 ^ key.1) & (CACHE_SLOTS - 1);
    let hit = CACHE.try_with(|cache| {
        let (addr, len, hash) = cache[slot].get();
        ((addr, len) == key).then_some(hash)
    });
    if let Ok(Some(hash)) = hit {
        return hash;
    }
    remember(name, key, slot)
}

#[cold]
#[inline(never)]
fn remember(name: &'static str, key: (usize, usize), slot: usize) -> u64 {
    let canonical = canonical(name);
    let hash = fnv1a(canonical.as_bytes());
    let _ = CACHE.try_with(|cache| cache[slot].set((key.0, key.1, hash)));
    if let Some(mut names) = lock_names() {
        names.entry(hash).or_insert(canonical);
    }
    hash
}

/// FNV-1a, 64-bit.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Wrappers that serde writes as what they hold.
const TRANSPARENT: [&[u8]; 4] =
    [b"alloc::boxed::Box", b"alloc::rc::Rc", b"alloc::sync::Arc", b"alloc::borrow::Cow"];

/// A type name read as a stream of tokens with the equivalences of the module docs applied:
/// one name for all the types serde writes alike. Any input is accepted (unbalanced brackets
/// are kept as they are).
fn canonical(name: &str) -> String {
    /// What a closing bracket becomes, by depth: b'>' or b']' written, 0 dropped.
    const DEPTH: usize = 64;
    let bytes = name.as_bytes();
    let mut h = String::with_capacity(name.len() + 16);
    let mut closers = [0u8; DEPTH];
    let mut depth = 0usize;
    // Brackets opened beyond DEPTH: hashed as they are.
    let mut deep = 0usize;
    let push = |closers: &mut [u8; DEPTH], depth: &mut usize, deep: &mut usize, closer: u8| {
        if *depth < DEPTH {
            closers[*depth] = closer;
            *depth += 1;
        } else {
            *deep += 1;
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'&' => {
                i += 1;
                if bytes[i..].starts_with(b"mut ") {
                    i += 4;
                }
            }
            b'\'' => {
                // A lifetime (`'_`, `'a`, `'static`) and the separator after it.
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if bytes[i..].starts_with(b", ") {
                    i += 2;
                } else if bytes[i..].starts_with(b" ") {
                    i += 1;
                }
            }
            b'-' if bytes[i..].starts_with(b"->") => {
                h.push_str("->");
                i += 2;
            }
            b'[' => {
                if is_slice(&bytes[i + 1..]) {
                    h.push_str("alloc::vec::Vec<");
                    push(&mut closers, &mut depth, &mut deep, b'>');
                } else {
                    h.push('[');
                    push(&mut closers, &mut depth, &mut deep, b']');
                }
                i += 1;
            }
            b'<' => {
                h.push('<');
                push(&mut closers, &mut depth, &mut deep, b'>');
                i += 1;
            }
            b'>' | b']' => {
                if deep > 0 {
                    deep -= 1;
                    h.push(char::from(c));
                } else if depth > 0 {
                    depth -= 1;
                    if closers[depth] != 0 {
                        h.push(char::from(closers[depth]));
                    }
                } else {
                    h.push(char::from(c));
                }
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b':' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
                {
                    i += 1;
                }
                let path = &bytes[start..i];
                if path == b"str" {
                    h.push_str("alloc::string::String");
                } else if bytes.get(i) == Some(&b'<') && TRANSPARENT.contains(&path) {
                    // The wrapper and its brackets vanish.
                    push(&mut closers, &mut depth, &mut deep, 0);
                    i += 1;
                } else {
                    h.push_str(&name[start..i]);
                }
            }
            _ => {
                // Any other character (a bracket, a space, a letter beyond ASCII), as it is.
                let ch = name[i..].chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                h.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    h
}

/// Whether the bracket that `rest` follows is a slice `[T]`, not an array `[T; N]`: no `;`
/// at its own level before it closes.
fn is_slice(rest: &[u8]) -> bool {
    let mut level = 0usize;
    for &c in rest {
        match c {
            b'[' => level += 1,
            b']' if level == 0 => return true,
            b']' => level -= 1,
            b';' if level == 0 => return false,
            _ => {}
        }
    }
    true
}

/// A value in its typed encoding: serialized as the pair (fingerprint of `T`, value), and
/// deserialized only after the fingerprint is checked. The same bytes as [`encode_typed`].
///
/// Use it where a typed value travels inside a larger message, or through an API that takes
/// any serde value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Typed<T>(pub T);

impl<T: Serialize> Serialize for Typed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut pair = serializer.serialize_tuple(2)?;
        pair.serialize_element(&Fingerprint::of::<T>().hash())?;
        pair.serialize_element(&self.0)?;
        pair.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Typed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Typed<T>, D::Error> {
        struct Pair<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Pair<T> {
            type Value = Typed<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a typed `{}`", type_name::<T>())
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Typed<T>, A::Error> {
                use serde::de::Error as _;
                let expected = Fingerprint::of::<T>();
                let found: u64 = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(0, &self))?;
                if found != expected.hash {
                    return Err(A::Error::custom(expected.mismatch(found)));
                }
                let value = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(1, &self))?;
                Ok(Typed(value))
            }
        }

        deserializer.deserialize_tuple(2, Pair(PhantomData))
    }
}

/// Encodes `value` in its typed encoding: its [`Fingerprint`], then its bytes.
///
/// # Errors
/// As [`encode`].
pub fn encode_typed<T: Serialize + ?Sized>(value: &T) -> Result<Encoded, Error> {
    let mut out = Encoded::default();
    encode_typed_into(value, &mut out.bytes, &mut out.fds)?;
    Ok(out)
}

/// [`encode_into`] in the typed encoding: appends the fingerprint of `T`, then the value.
///
/// # Errors
/// As [`encode_into`] (on error, `bytes` and `fds` are restored).
#[inline]
pub fn encode_typed_into<T: Serialize + ?Sized>(
    value: &T,
    bytes: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
) -> Result<(), Error> {
    encode_as_into(Fingerprint::of::<T>(), value, bytes, fds)
}

/// [`encode_typed_into`] with the fingerprint of another type than the value's: for a type
/// that serializes exactly as the one the receiver decodes (a borrowing mirror of an owned
/// message type, say).
///
/// # Errors
/// As [`encode_into`] (on error, `bytes` and `fds` are restored).
#[inline]
pub fn encode_as_into<V: Serialize + ?Sized>(
    fingerprint: Fingerprint,
    value: &V,
    bytes: &mut Vec<u8>,
    fds: &mut Vec<RawFd>,
) -> Result<(), Error> {
    let len = bytes.len();
    bytes.extend_from_slice(&fingerprint.to_bytes());
    encode_into(value, bytes, fds).inspect_err(|_| bytes.truncate(len))
}

/// Decodes a `T` from its typed encoding: checks the fingerprint before anything else, then
/// decodes as [`decode`] (every byte must belong to the value).
///
/// # Errors
/// [`Error::Decode`] for a message of another type (naming both types when the sender's is
/// known here), and as [`decode`].
#[inline]
pub fn decode_typed<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, Error> {
    let rest = Fingerprint::of::<T>().check(bytes)?;
    decode(rest, fds)
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
    fn decode_error<T: DeserializeOwned>(bytes: &[u8]) -> String {
        match decode_typed::<T>(bytes, Vec::new()) {
            Err(Error::Decode(message)) => message,
            Err(other) => panic!("expected a decode error, got {other:?}"),
            Ok(_) => panic!("a `{}` was decoded from {bytes:02x?}", type_name::<T>()),
        }
    }

    #[test]
    fn typed_values_of_another_type_are_refused_naming_both_types() {
        // The three cases untyped decoding gets wrong.
        let empty = encode_typed(&String::new()).unwrap().bytes;
        assert_eq!(
            decode::<u64>(&empty[FINGERPRINT_LEN..], Vec::new()).unwrap(),
            0,
            "untyped: a wrong value"
        );
        let message = decode_error::<u64>(&empty);
        assert!(message.contains("`u64`") && message.contains("`alloc::string::String`"), "{message}");
        let message = decode_error::<f64>(&encode_typed(&42u64).unwrap().bytes);
        assert!(message.contains("`f64`") && message.contains("`u64`"), "{message}");
        let message = decode_error::<u64>(&encode_typed(&-1i64).unwrap().bytes);
        assert!(message.contains("`u64`") && message.contains("`i64`"), "{message}");
        // The right type decodes.
        assert_eq!(decode_typed::<String>(&empty, Vec::new()).unwrap(), "");
        assert_eq!(decode_typed::<i64>(&encode_typed(&-1i64).unwrap().bytes, Vec::new()).unwrap(), -1);
    }

    #[test]
    fn typed_decoding_refuses_short_unknown_and_trailing_input() {
        let message = decode_error::<u8>(&[1, 2, 3]);
        assert!(message.contains("too short"), "{message}");
        let mut unknown = 0x0123_4567_89ab_cdefu64.to_le_bytes().to_vec();
        unknown.push(7);
        let message = decode_error::<u8>(&unknown);
        assert!(message.contains("`u8`") && message.contains("0x0123456789abcdef"), "{message}");
        let mut trailing = encode_typed(&7u8).unwrap().bytes;
        trailing.push(0);
        let message = decode_error::<u8>(&trailing);
        assert!(message.contains("trailing"), "{message}");
    }

    #[test]
    fn types_serde_writes_alike_share_a_fingerprint() {
        use std::borrow::Cow;
        use std::rc::Rc;
        use std::sync::Arc;
        fn same<A: ?Sized, B: ?Sized>() {
            assert_eq!(
                Fingerprint::of::<A>(),
                Fingerprint::of::<B>(),
                "{} vs {}",
                type_name::<A>(),
                type_name::<B>()
            );
        }
        fn differ<A: ?Sized, B: ?Sized>() {
            assert_ne!(
                Fingerprint::of::<A>(),
                Fingerprint::of::<B>(),
                "{} vs {}",
                type_name::<A>(),
                type_name::<B>()
            );
        }
        same::<str, String>();
        same::<&&str, String>();
        same::<(&str, u32), (String, u32)>();
        same::<[u32], Vec<u32>>();
        same::<&mut [u16], Vec<u16>>();
        same::<Box<[u8]>, Vec<u8>>();
        same::<Box<str>, String>();
        same::<Cow<'static, str>, String>();
        same::<Arc<Vec<Rc<u8>>>, Vec<u8>>();
        same::<Option<&[(&str, [u8; 2])]>, Option<Vec<(String, [u8; 2])>>>();
        differ::<[u8; 3], Vec<u8>>();
        differ::<u64, i64>();
        differ::<u64, f64>();
        differ::<Vec<u8>, Vec<i8>>();
        differ::<(u8, u16), (u16, u8)>();
        differ::<Option<u8>, u8>();
        // The fast path and the serde wrapper agree on the layout.
        let value = ("seven", 7u32);
        assert_eq!(encode(&Typed(value)).unwrap().bytes, encode_typed(&value).unwrap().bytes);
        let bytes = encode_typed(&value).unwrap().bytes;
        let Typed(back): Typed<(String, u32)> = decode(&bytes, Vec::new()).unwrap();
        assert_eq!(back, ("seven".to_string(), 7));
        let err = decode::<Typed<(String, u64)>>(&bytes, Vec::new()).unwrap_err().to_string();
        assert!(err.contains("expected a `(alloc::string::String, u64)`"), "{err}");
    }

    #[test]
    fn hashes_any_name_without_panicking() {
        let deep = format!("{}u8{}", "alloc::vec::Vec<[".repeat(100), "]>".repeat(100));
        for name in
            ["", "&", "'", "'a", "[", "]", ">>>", "<<<", "[u8; ", "a::b<", "-", "->", "&mut", "é<ü>", &deep]
        {
            canonical(name);
        }
        assert_eq!(
            canonical("(&str, &mut [u8], alloc::borrow::Cow<'_, str>)"),
            "(alloc::string::String, alloc::vec::Vec<u8>, alloc::string::String)"
        );
        assert_eq!(canonical("[u8; 1]"), "[u8; 1]");
        assert_eq!(canonical("é<ü>"), "é<ü>");
    }
}
