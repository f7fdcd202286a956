//! Naming a Rust function so that a fresh exec of the same executable can call it.
//!
//! A target is a `fn` item or a non-capturing closure: a zero-sized type that the child can
//! rebuild from nothing. The parent sends the address of a monomorphised trampoline as an
//! offset from [`anchor`] (offsets inside one image survive ASLR) together with a hash of the
//! trampoline's type; the child checks that its executable is the parent's before it turns
//! the offset back into a function, and the trampoline checks the hash before decoding.

use std::any::type_name;
use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use multiproc_wire::Error as WireError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{sys, transfer};

/// The trampoline type: (type hash, encoded arguments, their descriptors, the result socket)
/// to exit code.
pub(crate) type RawEntry = fn(u64, &[u8], Vec<OwnedFd>, BorrowedFd<'_>) -> i32;

/// A fixed point of this crate's code that entry offsets are measured from.
#[inline(never)]
pub(crate) fn anchor() -> usize {
    anchor as fn() -> usize as usize
}

/// A trampoline named so that another process running the same executable can find it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) offset: i64,
    pub(crate) type_hash: u64,
}

/// The entry of target `F` with arguments `A` and result `R`.
pub(crate) fn entry_for<F, A, R>() -> Entry
where
    F: Fn(A) -> R + 'static,
    A: DeserializeOwned,
    R: Serialize,
{
    let trampoline: RawEntry = trampoline::<F, A, R>;
    Entry { offset: (trampoline as usize).wrapping_sub(anchor()) as i64, type_hash: type_hash::<F, A, R>() }
}

fn type_hash<F, A, R>() -> u64 {
    fnv1a(type_name::<(F, A, R)>().as_bytes())
}

/// FNV-1a, 64-bit: a cheap, stable hash for identity checks (not for security).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn trampoline<F, A, R>(hash: u64, args: &[u8], fds: Vec<OwnedFd>, out: BorrowedFd<'_>) -> i32
where
    F: Fn(A) -> R + 'static,
    A: DeserializeOwned,
    R: Serialize,
{
    if hash != type_hash::<F, A, R>() {
        return report_failure(out, "the target function does not match the parent's");
    }
    let args: A = match multiproc_wire::decode(args, fds) {
        Ok(args) => args,
        Err(err) => return report_failure(out, &format!("cannot decode the arguments: {err}")),
    };
    const { assert!(std::mem::size_of::<F>() == 0) };
    let target: F = sys::rebuild_target::<F, A, R>();
    run_and_report(move || target(args), out)
}

thread_local! {
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, sends its result (or its panic) on `out`, and returns the exit code for the child:
/// 0 after a result, 1 after a panic or a failure to send.
pub(crate) fn run_and_report<R: Serialize>(f: impl FnOnce() -> R, out: BorrowedFd<'_>) -> i32 {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        PANIC_LOCATION.with(|cell| *cell.borrow_mut() = location);
        previous(info);
    }));
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => match transfer::send_value(out, &value) {
            Ok(()) => 0,
            // Nothing was sent yet: the parent gets a codec error, not a bootstrap failure.
            Err(err @ WireError::Encode(_)) => {
                let message = format!("the child cannot encode its result: {err}");
                eprintln!("multiproc: child process failed: {message}");
                let _ = transfer::send_failure(out, transfer::TAG_UNENCODABLE, &message);
                1
            }
            Err(err) => report_failure(out, &format!("cannot send the result: {err}")),
        },
        Err(payload) => {
            let message = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_owned()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "Box<dyn Any>".to_owned()
            };
            let location = PANIC_LOCATION.with(|cell| cell.borrow_mut().take());
            // The panic hook has already printed message and location on stderr.
            let _ = transfer::send_panic(out, &message, location.as_deref());
            1
        }
    }
}

/// Reports a failure to run the target (on stderr and to the parent); returns exit code 1.
pub(crate) fn report_failure(out: BorrowedFd<'_>, message: &str) -> i32 {
    eprintln!("multiproc: child process failed: {message}");
    let _ = transfer::send_failure(out, transfer::TAG_FAILED, message);
    1
}
