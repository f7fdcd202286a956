//! Calls that travel: a function and a batch of arguments, encoded in one process and run by
//! another process of the same executable (a pool worker, for instance).
//!
//! The function is named as a [`Process`](crate::Process) target is: by the offset of a
//! monomorphised trampoline, checked against the executable's identity and a hash of its type.
//!
//! ```
//! use multiproc_process::call::{Call, Star};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! // Encoded here; `run` would normally happen in another process.
//! let call = Call::batch(square, &[1u64, 2, 3])?;
//! let results = call.run()?.decode::<u64>()?;
//! let values: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
//! assert_eq!(values, [1, 4, 9]);
//!
//! // Several arguments: `Star` calls the function with a tuple's elements.
//! let sums = Call::batch(Star(|a: i32, b: i32| a + b), &[(1, 2), (3, 4)])?.run()?.decode::<i32>()?;
//! assert_eq!(sums.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [3, 7]);
//! # Ok::<(), multiproc_process::Error>(())
//! ```

use std::any::type_name;
use std::cell::RefCell;
use std::fmt;
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use multiproc_wire::{Bytes, Fd};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::{boot, entry, sys};

/// A function that a call can carry: implemented for every `Fn(A) -> R`, and for [`Star`]
/// over functions of two to four arguments. Only zero-sized implementors (`fn` items,
/// closures that capture nothing) can travel.
pub trait Callable<A, R>: 'static {
    /// Calls the function.
    fn call(&self, args: A) -> R;
}

impl<F, A, R> Callable<A, R> for F
where
    F: Fn(A) -> R + 'static,
{
    fn call(&self, args: A) -> R {
        self(args)
    }
}

/// Calls a function of several arguments with the elements of a tuple (CPython's `starmap`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Star<F>(pub F);

macro_rules! star {
    ($($arg:ident),+) => {
        impl<F, $($arg,)+ R> Callable<($($arg,)+), R> for Star<F>
        where
            F: Fn($($arg),+) -> R + 'static,
        {
            #[allow(non_snake_case, reason = "the tuple's elements are named by their types")]
            fn call(&self, ($($arg,)+): ($($arg,)+)) -> R {
                (self.0)($($arg),+)
            }
        }
    };
}

star!(A, B);
star!(A, B, C);
star!(A, B, C, D);

/// A panic caught while running one item of a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Panic {
    /// The panic message.
    pub message: String,
    /// Where it panicked (`file:line:column`), when known.
    pub location: Option<String>,
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(location) = &self.location {
            write!(f, " at {location}")?;
        }
        Ok(())
    }
}

/// The trampoline of a call: (type hash, encoded `Vec<A>`, descriptors) to reply.
type CallEntry = fn(u64, &[u8], Vec<OwnedFd>) -> std::result::Result<Reply, String>;

/// A function and a batch of arguments, ready to be sent to and run by another process of the
/// same executable.
#[derive(Serialize, Deserialize)]
pub struct Call {
    exe: u64,
    offset: i64,
    type_hash: u64,
    len: u32,
    args: Bytes,
    fds: Vec<Fd>,
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call").field("items", &self.len).field("bytes", &self.args.0.len()).finish()
    }
}

impl Call {
    /// A call of `target` on each of `items`.
    ///
    /// `target` must capture nothing (a compile-time check).
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when the items cannot be encoded; [`ErrorKind::Io`] when their
    /// descriptors cannot be duplicated.
    pub fn batch<C, A, R>(target: C, items: &[A]) -> Result<Call>
    where
        C: Callable<A, R>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        const { assert!(std::mem::size_of::<C>() == 0, "a call target must not capture anything") };
        let _ = target;
        // Sized for the items' in-memory size: encodings are rarely larger, so no regrowth.
        let mut encoded = multiproc_wire::Encoded {
            bytes: Vec::with_capacity(std::mem::size_of_val(items) + 16),
            fds: Vec::new(),
        };
        multiproc_wire::encode_into(items, &mut encoded.bytes, &mut encoded.fds)
            .map_err(|e| Error::codec("cannot encode the arguments", e))?;
        let trampoline: CallEntry = trampoline::<C, A, R>;
        Ok(Call {
            exe: boot::exe_id(),
            offset: (trampoline as usize).wrapping_sub(entry::anchor()) as i64,
            type_hash: type_hash::<C, A, R>(),
            len: items.len() as u32,
            args: Bytes(encoded.bytes),
            fds: dup_all(&encoded.fds)?,
        })
    }

    /// A copy of the call (its descriptors duplicated), to run it again elsewhere.
    ///
    /// # Errors
    /// [`ErrorKind::Io`] when a descriptor cannot be duplicated.
    pub fn try_clone(&self) -> Result<Call> {
        let fds = self
            .fds
            .iter()
            .map(|fd| fd.try_clone().map_err(|e| Error::io("cannot duplicate a descriptor", e)))
            .collect::<Result<_>>()?;
        Ok(Call {
            exe: self.exe,
            offset: self.offset,
            type_hash: self.type_hash,
            len: self.len,
            args: self.args.clone(),
            fds,
        })
    }

    /// How many items the call carries.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// The size of the encoded arguments, in bytes.
    pub fn encoded_len(&self) -> usize {
        self.args.0.len()
    }

    /// Whether the call carries no item.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Runs the call in this process: the function on each item, each under `catch_unwind`.
    ///
    /// # Errors
    /// [`ErrorKind::Bootstrap`] when the call was made by another executable, names another
    /// function, or its arguments do not decode.
    pub fn run(self) -> Result<Reply> {
        let Some(image) = sys::same_image(self.exe) else {
            return Err(Error::new(ErrorKind::Bootstrap, "the call was made by another executable"));
        };
        let target: CallEntry = sys::entry_at(self.offset, image);
        let fds = self.fds.into_iter().map(OwnedFd::from).collect();
        target(self.type_hash, &self.args.0, fds).map_err(|e| Error::new(ErrorKind::Bootstrap, e))
    }
}

/// The results of a [`Call`]: one `Result<R, Panic>` per item, encoded.
#[derive(Serialize, Deserialize)]
pub struct Reply {
    /// Every item returned: `bytes` encode a `Vec<R>`, not a `Vec<Result<R, Panic>>`, which
    /// is much cheaper to decode.
    all_ok: bool,
    bytes: Bytes,
    fds: Vec<Fd>,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply").field("all_ok", &self.all_ok).field("bytes", &self.bytes.0.len()).finish()
    }
}

impl Reply {
    /// Decodes the results, one per item, in order.
    ///
    /// The results carry a fingerprint of their type ([`multiproc_wire::Fingerprint`]): an
    /// `R` other than the function's result type is refused, naming the types.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when they are not results of type `R`.
    pub fn decode<R: DeserializeOwned>(self) -> Result<Vec<std::result::Result<R, Panic>>> {
        Ok(match self.decode_values::<R>()? {
            Values::All(values) => values.into_iter().map(Ok).collect(),
            Values::Mixed(results) => results,
        })
    }

    /// Decodes the results: all the values when every item returned, else one result per
    /// item.
    ///
    /// # Errors
    /// [`ErrorKind::Codec`] when they are not results of type `R`.
    pub fn decode_values<R: DeserializeOwned>(self) -> Result<Values<R>> {
        let fds = self.fds.into_iter().map(OwnedFd::from).collect();
        // Typed: results of another type than the call's are refused, not misread.
        let decoded = if self.all_ok {
            multiproc_wire::decode_typed(&self.bytes.0, fds).map(Values::All)
        } else {
            multiproc_wire::decode_typed(&self.bytes.0, fds).map(Values::Mixed)
        };
        decoded.map_err(|e| Error::codec("cannot decode the results", e))
    }
}

/// The decoded results of a [`Call`].
#[derive(Debug)]
pub enum Values<R> {
    /// Every item returned a value; here they are, in order.
    All(Vec<R>),
    /// At least one item panicked: every item's result, in order.
    Mixed(Vec<std::result::Result<R, Panic>>),
}

fn type_hash<C, A, R>() -> u64 {
    entry::fnv1a(type_name::<(Call, C, A, R)>().as_bytes())
}

fn dup_all(fds: &[std::os::fd::RawFd]) -> Result<Vec<Fd>> {
    fds.iter()
        .map(|&fd| {
            // The descriptors come from encoding a value that the caller still holds.
            sys::dup_fd_number(fd).map(Fd::from).map_err(|e| Error::io("cannot duplicate a descriptor", e))
        })
        .collect()
}

fn trampoline<C, A, R>(hash: u64, args: &[u8], fds: Vec<OwnedFd>) -> std::result::Result<Reply, String>
where
    C: Callable<A, R>,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    if hash != type_hash::<C, A, R>() {
        return Err("the call's function does not match".into());
    }
    let items: Vec<A> =
        multiproc_wire::decode(args, fds).map_err(|e| format!("cannot decode the arguments: {e}"))?;
    const { assert!(std::mem::size_of::<C>() == 0) };
    let target: C = sys::rebuild_target::<C, A, R>();
    // Values only, until an item panics (the common case decodes much faster).
    let mut values: Vec<R> = Vec::with_capacity(items.len());
    let mut mixed: Option<Vec<std::result::Result<R, Panic>>> = None;
    for item in items {
        let result = catch_panic(|| target.call(item));
        match (&mut mixed, result) {
            (None, Ok(value)) => values.push(value),
            (None, Err(panic)) => {
                let mut results: Vec<_> = values.drain(..).map(Ok).collect();
                results.push(Err(panic));
                mixed = Some(results);
            }
            (Some(results), result) => results.push(result),
        }
    }
    let encoded = match &mixed {
        None => multiproc_wire::encode_typed(&values),
        Some(results) => multiproc_wire::encode_typed(results),
    }
    .map_err(|e| format!("cannot encode the results: {e}"))?;
    let fds = dup_all(&encoded.fds).map_err(|e| e.to_string())?;
    Ok(Reply { all_ok: mixed.is_none(), bytes: Bytes(encoded.bytes), fds })
}

thread_local! {
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, turning a panic into a [`Panic`] with its message and location.
///
/// The location comes from a panic hook installed on first use, which records it and then
/// calls the hook that was in place (so the usual report still goes to stderr).
pub fn catch_panic<R>(f: impl FnOnce() -> R) -> std::result::Result<R, Panic> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            LOCATION.with(|cell| *cell.borrow_mut() = location);
            previous(info);
        }));
    });
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_owned()
        };
        Panic { message, location: LOCATION.with(|cell| cell.borrow_mut().take()) }
    })
}
