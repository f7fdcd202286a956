//! Tests that nothing is left behind: no entry in `/dev/shm` after normal use, after a child
//! process is killed, or after the creator of a named segment drops it or dies; no descriptor
//! or mapping after the handles are gone.
//!
//! This binary has its own harness (`harness = false`): its tests run one after the other on
//! the main thread, so that the `/dev/shm` and descriptor counts see no other test's segments.

mod common;

use std::time::{Duration, Instant};

use common::*;
use multiproc_pipe::{Connection, pipe};
use multiproc_process::Process;
use multiproc_shmem::{
    Array, Barrier, Condition, Event, Lock, NAME_PREFIX, RLock, RawArray, RawValue, Semaphore, SharedMemory,
    Value,
};

const TESTS: &[(&str, fn())] = &[
    ("keeps_anonymous_memory_out_of_dev_shm", keeps_anonymous_memory_out_of_dev_shm),
    ("leaves_nothing_when_a_child_is_killed", leaves_nothing_when_a_child_is_killed),
    ("releases_descriptors_and_mappings", releases_descriptors_and_mappings),
    ("removes_named_segments_with_their_creator", removes_named_segments_with_their_creator),
    ("removes_names_a_killed_creator_left", removes_names_a_killed_creator_left),
    ("removes_names_an_exited_creator_left", removes_names_an_exited_creator_left),
    ("keeps_names_handed_over", keeps_names_handed_over),
];

fn main() -> std::process::ExitCode {
    multiproc_process::testing::run_serially(TESTS, std::time::Duration::from_secs(120))
}

/// The `/dev/shm` names that processes `pids` created with [`SharedMemory::create`].
fn named_by(pids: &[i32]) -> Vec<String> {
    let mut names = Vec::new();
    for pid in pids {
        names.extend(shm_entries(&format!("{NAME_PREFIX}{pid}-")));
    }
    names
}

/// The `/dev/shm` files mapped by this process.
fn mapped_from_dev_shm() -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    maps.lines().filter(|l| l.contains("/dev/shm/")).map(String::from).collect()
}

/// How many mappings of anonymous shared segments this process has.
fn memfd_mappings() -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    maps.lines().filter(|l| l.contains("/memfd:multiproc-shmem")).count()
}

/// Waits (at most [`LIMIT`]) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One handle of (almost) every kind.
type Everything = (Value<u64>, Array<f64>, RawValue<u32>, RawArray<u8>, Lock, RLock, Semaphore);

/// In a child: uses every kind of handle it received.
fn use_everything((v, arr, raw, raw_arr, lock, rlock, sem): Everything) -> u64 {
    v.update(|x| *x += 1).expect("lock");
    arr.lock().expect("lock")[0] = 1.0;
    raw.set(raw.get() + 1);
    raw_arr.set(0, 1);
    drop(lock.acquire().expect("lock"));
    drop(rlock.acquire().expect("rlock"));
    sem.release();
    v.get().expect("lock")
}

fn keeps_anonymous_memory_out_of_dev_shm() {
    let before = shm_entries(NAME_PREFIX);
    let mut pids = vec![std::process::id() as i32];
    for method in METHODS {
        let v = Value::new(1u64).unwrap();
        let big = Array::<f64>::new(100_000).unwrap();
        let args = (
            v.clone(),
            big.clone(),
            RawValue::new(0u32).unwrap(),
            RawArray::<u8>::new(10).unwrap(),
            Lock::new().unwrap(),
            RLock::new().unwrap(),
            Semaphore::new(0).unwrap(),
        );
        let p = start(method, use_everything, args);
        pids.push(p.pid().unwrap());
        assert_eq!(finish(p), 2, "{method}");
        assert!(mapped_from_dev_shm().is_empty(), "{method}: values live in memfds, not /dev/shm");
        assert!(memfd_mappings() > 0, "{method}: the segments are memfd mappings");
    }
    assert_eq!(shm_entries(NAME_PREFIX), before, "no new /dev/shm entry");
    assert!(named_by(&pids).is_empty());
}

/// In a child: takes the locks and values it received, says so, and waits to be killed.
fn hold_everything((v, arr, cond, barrier, held): (Value<u64>, Array<u8>, Condition, Barrier, Event)) {
    let _v = v.lock().expect("lock");
    let _a = arr.lock().expect("lock");
    let _c = cond.acquire().expect("condition");
    held.set();
    // A barrier of 2 that the parent never joins: the child sleeps in it until killed.
    let _ = barrier.wait_timeout(LIMIT * 2);
}

fn leaves_nothing_when_a_child_is_killed() {
    let before = shm_entries(NAME_PREFIX);
    for method in METHODS {
        let v = Value::new(0u64).unwrap();
        let arr = Array::<u8>::new(1 << 20).unwrap();
        let held = Event::new().unwrap();
        let cond = Condition::new().unwrap();
        let barrier = Barrier::new(2).unwrap();
        let p = start(
            method,
            hold_everything,
            (v.clone(), arr.clone(), cond.clone(), barrier.clone(), held.clone()),
        );
        let pid = p.pid().unwrap();
        assert!(held.wait_timeout(LIMIT), "{method}: the child never took its locks");
        eventually("the child waits at the barrier", || barrier.n_waiting() == 1);
        kill(p);
        assert!(named_by(&[pid]).is_empty(), "{method}");
        // Everything the child held is usable again.
        assert!(v.lock().is_err_and(|died| *died.into_inner() == 0), "{method}: owner died");
        assert!(arr.lock().is_err(), "{method}: owner died");
        assert!(cond.acquire().is_err(), "{method}: owner died");
        assert_eq!(barrier.n_waiting(), 1, "{method}: the dead child's arrival stays counted");
        barrier.reset();
    }
    assert_eq!(shm_entries(NAME_PREFIX), before, "no new /dev/shm entry");
    assert!(mapped_from_dev_shm().is_empty());
}

fn releases_descriptors_and_mappings() {
    // The current arena stays (new small objects go there): make sure it exists first.
    drop(Value::new(0u8).unwrap());
    let (fds, maps) = (open_fds(), memfd_mappings());
    for _ in 0..3 {
        let values: Vec<Value<u64>> = (0..2000).map(|i| Value::new(i).unwrap()).collect();
        let arrays: Vec<RawArray<f64>> = (0..20).map(|_| RawArray::new(100_000).unwrap()).collect();
        let (mut a, mut b): (Connection, Connection) = pipe(true).unwrap();
        a.send(&(&values[..100], &arrays[..3])).unwrap();
        let received: (Vec<Value<u64>>, Vec<RawArray<f64>>) = b.recv_timeout(LIMIT).unwrap();
        assert!(open_fds() > fds);
        drop((values, arrays, received, a, b));
    }
    assert_eq!(open_fds(), fds, "descriptors left open");
    assert!(memfd_mappings() <= maps, "mappings left: {} (was {maps})", memfd_mappings());
}

/// In a child: attaches to a segment by name and waits to be killed.
fn attach_and_wait((name, attached): (String, Event)) {
    let _shm = SharedMemory::attach(&name).expect("child: attach");
    attached.set();
    std::thread::sleep(LIMIT * 2);
}

fn removes_named_segments_with_their_creator() {
    let me = std::process::id() as i32;
    assert!(named_by(&[me]).is_empty(), "left over from before");
    let shm = SharedMemory::create(1 << 16).unwrap();
    let name = shm.name().to_owned();
    assert_eq!(named_by(&[me]), std::slice::from_ref(&name));
    for method in METHODS {
        let attached = Event::new().unwrap();
        let p = start(method, attach_and_wait, (name.clone(), attached.clone()));
        assert!(attached.wait_timeout(LIMIT), "{method}: the child never attached");
        kill(p);
        assert!(shm_exists(&name), "{method}: an attached process never removes the name, even killed");
    }
    drop(shm);
    assert!(!shm_exists(&name), "the creator's drop removes the name");
    assert!(named_by(&[me]).is_empty());
}

/// In a child: creates a named segment, sends its name, and waits to be killed, or exits
/// without dropping the handle once `exit` is set.
fn create_and_die((mut conn, exit): (Connection, Option<Event>)) {
    let shm = SharedMemory::create(4096).expect("child: create");
    conn.send(&shm.name()).expect("child: send");
    if let Some(exit) = exit {
        assert!(exit.wait_timeout(LIMIT), "child: never told to exit");
        std::process::exit(0);
    }
    std::thread::sleep(LIMIT * 2);
}

fn removes_names_left_by(exit: bool) {
    for method in METHODS {
        let (mut ours, theirs) = pipe(true).unwrap();
        let go = exit.then(|| Event::new().unwrap());
        let mut p: Process = start(method, create_and_die, (theirs, go.clone()));
        let name: String = ours.recv_timeout(LIMIT).unwrap();
        assert!(shm_exists(&name), "{method}: the child's segment exists while it lives");
        match go {
            Some(go) => {
                go.set();
                assert_eq!(reap(&mut p), 0, "{method}");
            }
            None => kill(p),
        }
        eventually(&format!("{method}: the tracker removes {name}"), || !shm_exists(&name));
    }
}

fn removes_names_a_killed_creator_left() {
    removes_names_left_by(false);
}

fn removes_names_an_exited_creator_left() {
    removes_names_left_by(true);
}

/// In a child: creates a named segment that it leaves to others, sends its name, and exits.
fn create_and_hand_over(mut conn: Connection) {
    let mut shm = SharedMemory::create(4096).expect("child: create");
    shm.set_unlink_on_drop(false);
    conn.send(&shm.name()).expect("child: send");
}

fn keeps_names_handed_over() {
    let (mut ours, theirs) = pipe(true).unwrap();
    let p = start(METHODS[0], create_and_hand_over, theirs);
    let name: String = ours.recv_timeout(LIMIT).unwrap();
    finish(p);
    // Give a tracker the time to (wrongly) remove it.
    std::thread::sleep(Duration::from_millis(200));
    let mut shm = SharedMemory::attach(&name).expect("the handed-over segment stays");
    shm.set_unlink_on_drop(true);
    drop(shm);
    assert!(!shm_exists(&name), "the new owner removed it");
}
