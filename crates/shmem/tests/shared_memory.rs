//! Tests for `SharedMemory`: creating, attaching by name, sizes, errors, who removes the name,
//! and sharing with child processes (Spawn and ForkServer) by name and as an argument.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use multiproc_shmem::{ErrorKind, NAME_PREFIX, SharedMemory};

/// A name no other test (in this or another process) uses.
fn unique(tag: &str) -> String {
    use std::sync::atomic::AtomicUsize;
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("multiproc-shmem-test-{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[test]
fn creates_under_a_random_name_and_unlinks_on_drop() {
    let shm = SharedMemory::create(10_000).unwrap();
    let name = shm.name().to_owned();
    assert!(name.starts_with(&format!("{NAME_PREFIX}{}-", std::process::id())), "{name}");
    assert_eq!(name.len(), NAME_PREFIX.len() + std::process::id().to_string().len() + 17);
    assert_eq!(shm.size(), 10_000);
    assert!(shm.is_creator() && shm.unlinks_on_drop());
    assert!(shm_exists(&name));
    assert_eq!(shm.to_vec(), vec![0; 10_000], "zero-filled");
    let other = SharedMemory::create(1).unwrap();
    assert_ne!(other.name(), name, "names do not collide");
    drop(shm);
    assert!(!shm_exists(&name), "the creator's drop removes the name");
}

#[test]
fn attaches_by_name_and_reads_the_size() {
    let name = unique("attach");
    let shm = SharedMemory::create_named(&name, 5000).unwrap();
    shm.write(4990, b"0123456789");
    let other = SharedMemory::attach(&format!("/{name}")).unwrap();
    assert_eq!((other.name(), other.size()), (name.as_str(), 5000));
    assert!(!other.is_creator() && !other.unlinks_on_drop());
    let mut buf = [0u8; 10];
    other.read(4990, &mut buf);
    assert_eq!(&buf, b"0123456789");
    other.buf()[0].store(42, Ordering::Relaxed);
    assert_eq!(shm.buf()[0].load(Ordering::Relaxed), 42, "the same memory");
    drop(other);
    assert!(shm_exists(&name), "attaching never removes the name");
    drop(shm);
    assert!(!shm_exists(&name));
}

#[test]
fn reports_clear_errors() {
    let missing = unique("missing");
    let err = SharedMemory::attach(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), format!("no shared memory segment named {missing}"));

    let name = unique("exists");
    let shm = SharedMemory::create_named(&name, 100).unwrap();
    let err = SharedMemory::create_named(&name, 100).unwrap_err();
    assert!(err.is_already_exists(), "{err:?}");
    assert_eq!(err.to_string(), format!("shared memory segment {name} already exists"));
    assert_eq!(shm.size(), 100, "the existing segment is untouched");

    let err = SharedMemory::create_named(&unique("empty"), 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.to_string(), "a shared memory segment cannot have size 0");
    assert_eq!(SharedMemory::create(0).unwrap_err().kind(), ErrorKind::InvalidInput);
    for bad in ["", "/", "a/b", "..", &"x".repeat(300), "nul\0byte"] {
        assert_eq!(SharedMemory::attach(bad).unwrap_err().kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    // A segment created by someone else, not sized yet.
    let unsized_name = unique("unsized");
    std::fs::File::create(std::path::Path::new("/dev/shm").join(&unsized_name)).unwrap();
    let err = SharedMemory::attach(&unsized_name).unwrap_err();
    std::fs::remove_file(std::path::Path::new("/dev/shm").join(&unsized_name)).unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err:?}");
    assert_eq!(err.to_string(), format!("cannot map shared memory segment {unsized_name}"));
    assert_eq!(
        std::error::Error::source(&err).map(ToString::to_string).as_deref(),
        Some("shared memory segment has size 0")
    );

    let io: std::io::Error = SharedMemory::attach(&missing).unwrap_err().into();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn unlinks_and_closes_explicitly() {
    let name = unique("unlink");
    let shm = SharedMemory::create_named(&name, 64).unwrap();
    let other = SharedMemory::attach(&name).unwrap();
    other.unlink().unwrap();
    assert!(!shm_exists(&name), "any handle may unlink explicitly");
    assert!(other.unlink().unwrap_err().is_not_found());
    shm.write(0, b"still mapped");
    let mut buf = [0u8; 12];
    other.read(0, &mut buf);
    assert_eq!(&buf, b"still mapped", "the memory outlives the name");
    assert!(shm.close().is_ok(), "closing after the name is gone is fine");
    other.close().unwrap();

    let name = unique("keep");
    let mut shm = SharedMemory::create_named(&name, 64).unwrap();
    shm.set_unlink_on_drop(false);
    shm.close().unwrap();
    assert!(shm_exists(&name), "a creator may leave the segment to others");
    let other = SharedMemory::attach(&name).unwrap();
    assert_eq!(other.size(), 64);
    other.unlink().unwrap();
    assert!(!shm_exists(&name));
}

#[test]
#[should_panic(expected = "outside 8 bytes")]
fn panics_on_access_out_of_bounds() {
    let shm = SharedMemory::create(8).unwrap();
    shm.write(4, b"12345");
}

/// In a child: attaches by name, checks the parent's bytes, writes its own, and drops its handle.
fn attach_and_write(name: String) -> usize {
    let shm = SharedMemory::attach(&name).expect("child: attach");
    let mut buf = [0u8; 6];
    shm.read(0, &mut buf);
    assert_eq!(&buf, b"parent");
    shm.write(100, b"child");
    shm.size()
}

#[test]
fn shares_by_name_with_child_processes() {
    for method in METHODS {
        let shm = SharedMemory::create(4096).unwrap();
        shm.write(0, b"parent");
        let p = start(method, attach_and_write, shm.name().to_owned());
        assert_eq!(finish(p), 4096, "{method}");
        let mut buf = [0u8; 5];
        shm.read(100, &mut buf);
        assert_eq!(&buf, b"child", "{method}");
        assert!(shm_exists(shm.name()), "{method}: the child's attach did not remove the name");
        let name = shm.name().to_owned();
        drop(shm);
        assert!(!shm_exists(&name), "{method}");
    }
}

/// In a child: writes into a segment received as an argument (its descriptor travelled).
fn write_received(shm: SharedMemory) -> (bool, String) {
    shm.write(0, b"fd");
    (shm.is_creator(), shm.name().to_owned())
}

#[test]
fn passes_segments_to_child_processes() {
    for method in METHODS {
        let shm = SharedMemory::create(64).unwrap();
        // Even without a name, the descriptor reaches the same memory.
        shm.unlink().unwrap();
        let p = start(method, write_received, shm);
        let (creator, name) = finish(p);
        assert!(!creator, "{method}: a receiver is not the creator");
        assert!(name.starts_with(NAME_PREFIX), "{method}");
    }
    let shm = SharedMemory::create(64).unwrap();
    let p = start(METHODS[0], write_received, SharedMemory::attach(shm.name()).unwrap());
    finish(p);
    assert_eq!(&shm.to_vec()[..2], b"fd");
    assert!(shm_exists(shm.name()), "the receiver never unlinks");
}

/// Runs `script` with the installed `python3`; `None` when there is none.
fn python(script: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("python3").arg("-c").arg(script).args(args).output().ok()?;
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).expect("utf-8").trim().to_owned())
}

#[test]
fn interoperates_with_cpython() {
    // CPython attaches to ours by name (and, being 3.11, must be told not to remove it: the
    // bug this crate avoids), reads and writes it.
    let shm = SharedMemory::create(4096).unwrap();
    shm.write(0, b"from rust");
    let script = "
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1])
resource_tracker.unregister(shm._name, 'shared_memory')
print(bytes(shm.buf[:9]).decode(), shm.size >= 4096)
shm.buf[100:111] = b'from python'
shm.close()
";
    let Some(out) = python(script, &[shm.name()]) else { return };
    assert_eq!(out, "from rust True");
    let mut buf = [0u8; 11];
    shm.read(100, &mut buf);
    assert_eq!(&buf, b"from python");

    // And we attach to CPython's.
    let script = "
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(create=True, size=1000)
resource_tracker.unregister(shm._name, 'shared_memory')
shm.buf[:6] = b'cpython'[:6]
print(shm.name)
shm.close()
";
    let name = python(script, &[]).expect("python3 ran above");
    let theirs = SharedMemory::attach(&name).unwrap();
    assert!(theirs.size() >= 1000);
    assert_eq!(&theirs.to_vec()[..6], b"cpytho");
    theirs.unlink().unwrap();
}
