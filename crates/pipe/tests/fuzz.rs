//! Tests for bad input, property style: thousands of random byte strings, random frames with
//! valid headers and garbage bodies, and huge claimed lengths fed to a `Connection` through a
//! raw socket; random and mutated typed messages fed to the typed decoder and through real
//! connections (shared rings and sockets); random frames thrown at both sides of the authkey
//! handshake. Nothing may panic, hang, or allocate what a peer merely claims. A counting
//! allocator in this test binary records, per thread, the largest block asked for and the peak
//! of the bytes allocated and not yet freed.
//!
//! `MULTIPROC_FUZZ_ITERS` sets how many mutated typed messages
//! `survives_mutated_typed_messages` tries (default 50 000, about a second).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use common::*;
use multiproc_pipe::{Client, Connection, DEFAULT_MAX_MESSAGE, Error, Listener};
use multiproc_wire::Fingerprint;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The global allocator of this test binary: the system's, recording per thread the largest
/// block asked for.
mod sys {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LARGEST: Cell<usize> = const { Cell::new(0) };
        /// Bytes this thread allocated minus those it freed, since [`reset_peak`], and the
        /// most that difference reached.
        static LIVE: Cell<(isize, isize)> = const { Cell::new((0, 0)) };
    }

    fn note(size: usize) {
        // Const-initialised Cells without a destructor: no allocation, usable at any time.
        let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        live(size as isize);
    }

    fn live(change: isize) {
        let _ = LIVE.try_with(|live| {
            let (now, peak) = live.get();
            let now = now + change;
            live.set((now, peak.max(now)));
        });
    }

    /// Starts counting this thread's peak of live bytes from zero.
    pub(crate) fn reset_peak() {
        LIVE.with(|live| live.set((0, 0)));
    }

    /// The most bytes this thread held allocated at once since [`reset_peak`].
    pub(crate) fn peak() -> usize {
        LIVE.with(|live| live.get().1.max(0) as usize)
    }

    /// Forgets what this thread allocated so far.
    pub(crate) fn reset_largest() {
        LARGEST.with(|largest| largest.set(0));
    }

    /// The largest block this thread asked for since [`reset_largest`].
    pub(crate) fn largest() -> usize {
        LARGEST.with(Cell::get)
    }

    pub(crate) struct Counting;

    // SAFETY: every method forwards to the system allocator with the caller's arguments
    // unchanged; recording a size touches only a thread-local Cell and never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: the caller's contract for `alloc` is passed on unchanged.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            live(-(layout.size() as isize));
            // SAFETY: `ptr` was allocated by System with `layout` (every block of this
            // allocator is); the caller's contract is passed on unchanged.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            live(-(layout.size() as isize));
            // SAFETY: as for `realloc`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: sys::Counting = sys::Counting;

/// The read-ahead buffer of a connection, plus the longest header.
const READ_AHEAD: usize = (64 << 10) + 12;

/// Limits the fuzzed connections run with.
const LIMITS: [u64; 5] = [0, 16, 1000, 70_000, 1 << 20];

/// Receives from `conn` until the stream ends or stays silent; panics on anything that should
/// not happen. Returns the messages received.
fn drain(conn: &mut Connection, timeout: Duration, what: &str) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    for _ in 0..200 {
        match conn.recv_bytes_timeout(timeout) {
            Ok(message) => messages.push(message),
            Err(Error::TooLarge { len, max }) => assert!(len > max, "{what}: TooLarge {len} <= {max}"),
            Err(Error::Decode(_)) => {}
            Err(Error::Disconnected | Error::Truncated | Error::Timeout) => return messages,
            Err(err) => panic!("{what}: unexpected error {err:?}"),
        }
    }
    panic!("{what}: the connection never reached the end of its input");
}

#[test]
fn survives_random_bytes() {
    let mut rng = Rng::new(0x5eed_0001);
    for case in 0..3000 {
        let (mut conn, mut raw) = raw_pair();
        let limit = LIMITS[rng.below(LIMITS.len() as u64) as usize];
        conn.set_max_message_size(limit);
        let len = rng.below(80) as usize;
        let mut bytes = rng.bytes(len);
        if rng.one_in(3) && len >= 4 {
            // A plausible length, so that some inputs get past the header.
            bytes[..4].copy_from_slice(&(rng.below(len as u64) as i32).to_be_bytes());
        }
        write_raw(&mut raw, &bytes);
        let keep_open = rng.one_in(8);
        if !keep_open {
            drop(raw);
        }
        let what = format!("case {case} (limit {limit}, {bytes:02x?})");
        sys::reset_largest();
        let started = Instant::now();
        drain(&mut conn, if keep_open { Duration::ZERO } else { LIMIT }, &what);
        assert!(started.elapsed() < LIMIT, "{what}: took {:?}", started.elapsed());
        let largest = sys::largest();
        assert!(largest <= READ_AHEAD.max(limit as usize), "{what}: allocated {largest} bytes");
    }
}

#[test]
fn survives_random_frames_with_valid_headers() {
    let mut rng = Rng::new(0x5eed_0002);
    for case in 0..1000 {
        let (mut conn, mut raw) = raw_pair();
        let mut sent = Vec::new();
        let mut stream = Vec::new();
        for _ in 0..rng.below(6) {
            let body = rng.some_bytes(300);
            stream.extend(header(body.len() as u64, rng.one_in(4)));
            stream.extend(&body);
            sent.push(body);
        }
        // Sometimes a last frame cut short.
        let cut = rng.one_in(3);
        if cut {
            let len = 1 + rng.below(300) as usize;
            let body = rng.bytes(len);
            stream.extend(header(body.len() as u64, rng.one_in(4)));
            let cut = rng.below(body.len() as u64) as usize;
            stream.extend(&body[..cut]);
        }
        write_raw(&mut raw, &stream);
        drop(raw);
        sys::reset_largest();
        let what = format!("case {case}");
        let got = drain(&mut conn, LIMIT, &what);
        assert_eq!(got, sent, "{what}: the frames were not received as sent");
        assert!(sys::largest() <= READ_AHEAD, "{what}: allocated {} bytes", sys::largest());
    }
}

/// Receives one `T` from a frame holding `body` (a descriptor count, then the bytes of a
/// value) with `T`'s fingerprint inserted after the count, so that the decoder runs; only `Ok`
/// or `Decode` are acceptable.
fn decode_as<T: DeserializeOwned>(body: &[u8], what: &str) -> bool {
    let (mut conn, mut raw) = raw_pair();
    let body = typed::<T>(body);
    write_raw(&mut raw, &[header(body.len() as u64, false), body].concat());
    drop(raw);
    match conn.recv_timeout::<T>(LIMIT) {
        Ok(_) => true,
        Err(Error::Decode(_)) => false,
        Err(err) => panic!("{what}: unexpected error {err:?}"),
    }
}

/// `body` (a descriptor count, then the bytes of a value) with `T`'s fingerprint after the count.
fn typed<T>(body: &[u8]) -> Vec<u8> {
    let Some((count, rest)) = body.split_first() else { return Vec::new() };
    [&[*count][..], &Fingerprint::of::<T>().to_bytes(), rest].concat()
}

#[derive(Deserialize)]
#[allow(dead_code, reason = "only decoded")]
enum Shape {
    Point,
    Circle { radius: f64 },
    Polygon(Vec<(i32, i32)>),
    Tagged(BTreeMap<u8, Option<u16>>),
}

/// A random message body for a typed receive: a descriptor count (mostly 0), then bytes.
fn random_body(rng: &mut Rng) -> Vec<u8> {
    let count = if rng.one_in(4) { rng.next_u64() as u8 } else { 0 };
    let mut body = vec![count];
    body.extend(rng.some_bytes(40));
    body
}

#[test]
fn survives_random_typed_messages() {
    // Types whose decoding allocates no more than the input justifies (see the ignored
    // test below for strings and byte buffers).
    let mut rng = Rng::new(0x5eed_0003);
    let mut decoded = 0;
    for case in 0..3000 {
        let body = random_body(&mut rng);
        let what = format!("case {case} ({body:02x?})");
        decoded += usize::from(match case % 6 {
            0 => decode_as::<u64>(&body, &what),
            1 => decode_as::<(u8, i32, bool)>(&body, &what),
            2 => decode_as::<Option<u32>>(&body, &what),
            3 => decode_as::<Vec<u32>>(&body, &what),
            4 => decode_as::<Result<u16, [u8; 4]>>(&body, &what),
            _ => decode_as::<Shape>(&body, &what),
        });
    }
    // Some random inputs are valid values: the decoder did run.
    assert!(decoded > 0);
}

/// In a child, since an allocation failure aborts: decodes random messages as strings and
/// byte buffers, including ones that claim huge lengths. Returns how many decoded.
fn decode_random_strings(seed: u64) -> usize {
    let mut rng = Rng::new(seed);
    let mut bodies: Vec<Vec<u8>> = (0..2000).map(|_| random_body(&mut rng)).collect();
    // A descriptor count of 0, then a bincode length of 2^40 or 2^62 and a few bytes.
    for len in [1u64 << 40, 1 << 62] {
        bodies.push([vec![0], claimed_length(len), b"abc".to_vec()].concat());
    }
    // And a valid one, so that something decodes.
    bodies.push([vec![0], multiproc_wire::encode("valid").unwrap().bytes].concat());
    let mut decoded = 0;
    for (case, body) in bodies.iter().enumerate() {
        let what = format!("case {case}");
        decoded += usize::from(decode_as::<String>(body, &what));
        decoded += usize::from(decode_as::<Vec<u8>>(body, &what));
        decoded += usize::from(decode_as::<(u8, String)>(body, &what));
    }
    decoded
}

/// How the codec writes a length of `len` (as it writes a `u64`, whatever the integer encoding).
fn claimed_length(len: u64) -> Vec<u8> {
    multiproc_wire::encode(&len).unwrap().bytes
}

#[test]
fn survives_random_typed_messages_with_strings() {
    let p = start(multiproc_process::StartMethod::Spawn, decode_random_strings, 0x5eed_0004);
    let decoded = finish(p);
    assert!(decoded > 0);
}

#[test]
fn decodes_claimed_lengths_without_allocating_them() {
    for claim in [1u64 << 20, 1 << 28, multiproc_wire::MAX_DECODED as u64] {
        let body = [vec![0], claimed_length(claim), b"abc".to_vec()].concat();
        let what = format!("a String or Vec<u8> claiming {claim} bytes in a message of {}", body.len());
        sys::reset_largest();
        assert!(!decode_as::<String>(&body, &what), "{what}: decoded");
        assert!(!decode_as::<Vec<u8>>(&body, &what), "{what}: decoded");
        // serde's own bound: a sequence preallocates at most 1 MiB whatever length it claims.
        assert!(sys::largest() <= 1 << 20, "{what}: allocated {} bytes", sys::largest());
    }
}

#[test]
fn refuses_huge_claimed_lengths_without_allocating() {
    let mut rng = Rng::new(0x5eed_0005);
    for case in 0..2000 {
        let (mut conn, mut raw) = raw_pair();
        let limit = if rng.one_in(2) { DEFAULT_MAX_MESSAGE } else { LIMITS[rng.below(5) as usize] };
        conn.set_max_message_size(limit);
        // A length above the limit, anywhere up to u64::MAX.
        let bits = rng.below(65) as u32;
        let len = (limit + 1).max(rng.next_u64().checked_shr(64 - bits).unwrap_or(0));
        let long = len > i32::MAX as u64 || rng.one_in(2);
        write_raw(&mut raw, &header(len, long));
        write_raw(&mut raw, &rng.some_bytes(100));
        let what = format!("case {case}: a claimed length of {len} (limit {limit})");
        sys::reset_largest();
        // With the writer still open: waiting for the body would time out.
        match conn.recv_bytes_timeout(LIMIT) {
            Err(Error::TooLarge { len: got, max }) => assert_eq!((got, max), (len, limit), "{what}"),
            other => panic!("{what}: expected TooLarge, got {other:?}"),
        }
        assert!(sys::largest() <= READ_AHEAD, "{what}: allocated {} bytes", sys::largest());
        // What follows is skipped, or read as further frames when the claim was small.
        drop(raw);
        drain(&mut conn, LIMIT, &what);
    }
}

/// How many mutated typed messages [`survives_mutated_typed_messages`] tries.
fn fuzz_iterations() -> u64 {
    match std::env::var("MULTIPROC_FUZZ_ITERS") {
        Ok(n) => n.trim().parse().unwrap_or_else(|_| panic!("MULTIPROC_FUZZ_ITERS={n:?} is not a count")),
        Err(_) => 50_000,
    }
}

/// The typed encodings mutated inputs start from, with the fingerprints of their types.
fn seeds() -> Vec<Vec<u8>> {
    let encode = |bytes: multiproc_wire::Encoded| bytes.bytes;
    let mut map = BTreeMap::new();
    map.insert(3u8, Some(700u16));
    map.insert(9, None);
    vec![
        encode(multiproc_wire::encode_typed(&42u64).unwrap()),
        encode(multiproc_wire::encode_typed(&-1i64).unwrap()),
        encode(multiproc_wire::encode_typed(&2.5f64).unwrap()),
        encode(multiproc_wire::encode_typed("a string of some length").unwrap()),
        encode(multiproc_wire::encode_typed(&String::new()).unwrap()),
        encode(multiproc_wire::encode_typed(&vec![1u32, 2, 3, 4]).unwrap()),
        encode(multiproc_wire::encode_typed(&(7u8, "seven")).unwrap()),
        encode(multiproc_wire::encode_typed(&Some(vec![0u8; 40])).unwrap()),
        encode(multiproc_wire::encode_typed(&map).unwrap()),
        encode(multiproc_wire::encode_typed(&(1u8, -2i32, true)).unwrap()),
    ]
}

/// A mutation of one of `seeds`: bits flipped, bytes overwritten, cut, extended, a length
/// made huge, another seed's fingerprint or tail spliced in, or plain random bytes.
fn mutated(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = seeds[rng.below(seeds.len() as u64) as usize].clone();
    for _ in 0..1 + rng.below(3) {
        let len = bytes.len() as u64;
        // Mostly past the fingerprint, so that the value's decoder runs.
        let from = if len > 8 && !rng.one_in(4) { 8 } else { 0 };
        match rng.below(9) {
            0 if len > from => {
                let i = (from + rng.below(len - from)) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if len > from => {
                let i = (from + rng.below(len - from)) as usize;
                bytes[i] = rng.next_u64() as u8;
            }
            2 => bytes.truncate(rng.below(len + 1) as usize),
            3 => bytes.extend(rng.some_bytes(24)),
            4 if len >= from + 8 => {
                // A length (or any 8 bytes) claiming up to 2^63.
                let i = (from + rng.below(len - from - 7)) as usize;
                let claim = rng.next_u64() >> rng.below(64);
                bytes[i..i + 8].copy_from_slice(&claim.to_le_bytes());
            }
            5 if len >= 8 => {
                let other = &seeds[rng.below(seeds.len() as u64) as usize];
                bytes[..8].copy_from_slice(&other[..8]);
            }
            6 => {
                let other = &seeds[rng.below(seeds.len() as u64) as usize];
                let cut = rng.below(other.len() as u64 + 1) as usize;
                bytes.extend_from_slice(&other[cut..]);
            }
            7 => bytes = rng.some_bytes(48),
            _ => {}
        }
    }
    bytes
}

/// Decodes `bytes` as `T`: a value or a decode error, nothing else.
fn typed_decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> bool {
    match multiproc_wire::decode_typed::<T>(bytes, Vec::new()) {
        Ok(_) => true,
        Err(multiproc_wire::Error::Decode(_)) => false,
        Err(err) => panic!("{what}: unexpected error {err:?}"),
    }
}

/// Receives one message of some type from `conn`: a value or a decode error.
fn typed_recv(conn: &mut Connection, which: u64, what: &str) -> bool {
    let result = match which % 6 {
        0 => conn.recv_timeout::<u64>(LIMIT).map(drop),
        1 => conn.recv_timeout::<String>(LIMIT).map(drop),
        2 => conn.recv_timeout::<Vec<u32>>(LIMIT).map(drop),
        3 => conn.recv_timeout::<(u8, String)>(LIMIT).map(drop),
        4 => conn.recv_timeout::<Option<Vec<u8>>>(LIMIT).map(drop),
        _ => conn.recv_timeout::<BTreeMap<u8, Option<u16>>>(LIMIT).map(drop),
    };
    match result {
        Ok(()) => true,
        Err(Error::Decode(_)) => false,
        Err(err) => panic!("{what}: unexpected error {err:?}"),
    }
}

#[test]
fn survives_mutated_typed_messages() {
    // Each input goes to the typed decoder as six types, and through a real connection (the
    // shared rings of a pipe, or a Unix socket, in turn) as one of them. The peak of live
    // bytes must stay within the frame limit plus the read-ahead buffer. (The limit is 1 MiB
    // because serde preallocates up to 1 MiB for a sequence whatever length it claims: a
    // 20-byte `Option<Vec<u8>>` can reach that, which is within the codec's allowance.)
    const FRAME_LIMIT: u64 = 1 << 20;
    const ALLOWED: usize = FRAME_LIMIT as usize + READ_AHEAD;
    let iterations = fuzz_iterations();
    let seeds = seeds();
    let mut rng = Rng::new(0x5eed_0008);
    let (mut ring_rx, mut ring_tx) = multiproc_pipe::pipe(false).unwrap();
    let (tx, rx) = UnixStream::pair().unwrap();
    let (mut sock_rx, mut sock_tx) = (Connection::from(rx), Connection::from(tx));
    for conn in [&mut ring_rx, &mut sock_rx] {
        conn.set_max_message_size(FRAME_LIMIT);
    }
    let started = Instant::now();
    let (mut decoded, mut refused, mut worst) = (0u64, 0u64, 0usize);
    for case in 0..iterations {
        let bytes = mutated(&mut rng, &seeds);
        let what = format!("case {case} ({bytes:02x?})");
        sys::reset_peak();
        let direct = [
            typed_decode::<u64>(&bytes, &what),
            typed_decode::<String>(&bytes, &what),
            typed_decode::<Vec<u32>>(&bytes, &what),
            typed_decode::<(u8, String)>(&bytes, &what),
            typed_decode::<Option<Vec<u8>>>(&bytes, &what),
            typed_decode::<BTreeMap<u8, Option<u16>>>(&bytes, &what),
        ];
        decoded += direct.iter().filter(|ok| **ok).count() as u64;
        // Through a connection: a descriptor count (mostly 0; none travel), then the bytes.
        let count = if rng.one_in(16) { rng.next_u64() as u8 } else { 0 };
        let frame = [&[count][..], &bytes].concat();
        let (send, recv) =
            if case % 2 == 0 { (&mut ring_tx, &mut ring_rx) } else { (&mut sock_tx, &mut sock_rx) };
        send.send_bytes(&frame).unwrap();
        if !typed_recv(recv, rng.next_u64(), &what) {
            refused += 1;
        }
        // The connection stays in step: a valid message after the garbage arrives intact.
        if case % 64 == 0 {
            send.send(&(case, "in step")).unwrap();
            assert_eq!(
                recv.recv_timeout::<(u64, String)>(LIMIT).unwrap(),
                (case, "in step".into()),
                "{what}"
            );
        }
        let peak = sys::peak();
        worst = worst.max(peak);
        assert!(peak <= ALLOWED, "{what}: {peak} bytes allocated at once");
    }
    eprintln!(
        "{iterations} mutated typed messages in {:.1?}: {decoded} direct decodes succeeded, {refused} \
         refused through a connection, peak {worst} bytes live",
        started.elapsed()
    );
    assert!(decoded > 0 || iterations < 100, "nothing decoded: the mutations never reach the decoder");
    assert!(refused > 0 || iterations < 100, "nothing refused");
}

const KEY: &[u8] = b"fuzzing key";

/// One random frame of the kind a handshake peer might send.
fn auth_frame(rng: &mut Rng) -> Vec<u8> {
    let framed = |body: Vec<u8>, rng: &mut Rng| [header(body.len() as u64, rng.one_in(4)), body].concat();
    match rng.below(10) {
        0 => rng.some_bytes(64),
        1 => {
            let body = rng.some_bytes(300);
            framed(body, rng)
        }
        2 => {
            let body = [b"{sha256}".to_vec(), rng.bytes(32)].concat();
            framed(body, rng)
        }
        3 => {
            let body = rng.bytes(16);
            framed(body, rng)
        }
        4 => {
            let body = [b"{md5}".to_vec(), rng.bytes(16)].concat();
            framed(body, rng)
        }
        5 => {
            let body = [b"{".to_vec(), rng.some_bytes(30), b"}".to_vec()].concat();
            framed(body, rng)
        }
        6 => {
            let len = 257 + rng.next_u64().checked_shr(rng.below(64) as u32).unwrap_or(0);
            header(len.max(257), len > i32::MAX as u64 || rng.one_in(2))
        }
        7 => (-(rng.below(1000) as i32) - 2).to_be_bytes().to_vec(),
        8 => {
            let body = [b"#CHALLENGE#".to_vec(), rng.some_bytes(80)].concat();
            framed(body, rng)
        }
        _ => {
            let body = [b"#WELCOME#".as_slice(), b"#FAILURE#", b"#CHALLENGE#{sha256}"][rng.below(3) as usize]
                .to_vec();
            framed(body, rng)
        }
    }
}

/// A few random frames.
fn auth_frames(rng: &mut Rng) -> Vec<u8> {
    (0..1 + rng.below(4)).flat_map(|_| auth_frame(rng)).collect()
}

#[test]
fn survives_random_clients_of_the_handshake() {
    let path = unique_path("fuzz-listener");
    let mut listener = Listener::bind(path.clone(), Some(KEY)).unwrap();
    let handshake = Duration::from_millis(100);
    listener.set_handshake_timeout(handshake);
    let mut rng = Rng::new(0x5eed_0006);
    for case in 0..500 {
        let mut raw = UnixStream::connect(&path).unwrap();
        raw.set_write_timeout(Some(LIMIT)).unwrap();
        let frames = auth_frames(&mut rng);
        raw.write_all(&frames).unwrap();
        // A few stay silent afterwards, so that the handshake limit ends them.
        if case % 100 != 0 {
            raw.shutdown(Shutdown::Write).unwrap();
        }
        let started = Instant::now();
        let result = listener.accept_timeout(LIMIT);
        let what = format!("case {case} ({frames:02x?})");
        assert!(result.is_err(), "{what}: a random client was accepted");
        assert!(started.elapsed() < LIMIT, "{what}: took {:?}", started.elapsed());
    }
    // The listener still accepts an honest client.
    let client = Client::new(path.clone()).authkey(KEY).timeout(LIMIT);
    let client = Bounded::spawn("client", move || client.connect());
    listener.accept_timeout(LIMIT).unwrap();
    client.join(LIMIT).unwrap();
    drop(listener);
    assert_gone(&path);
}

#[test]
fn survives_random_listeners_of_the_handshake() {
    const CASES: u64 = 500;
    let path = unique_path("fuzz-client");
    let raw = UnixListener::bind(&path).unwrap();
    let server = Bounded::spawn("raw listener", move || {
        let mut rng = Rng::new(0x5eed_0007);
        let mut silent = Vec::new();
        for case in 0..CASES {
            let (mut stream, _) = raw.accept().unwrap();
            stream.set_write_timeout(Some(LIMIT)).unwrap();
            // The client may have given up and closed already: write errors do not matter.
            let _ = stream.write_all(&auth_frames(&mut rng));
            if case % 100 == 0 {
                // Kept open and silent until the end: the client's time limit ends it.
                silent.push(stream);
            } else {
                let _ = stream.shutdown(Shutdown::Write);
            }
        }
    });
    for case in 0..CASES {
        let started = Instant::now();
        let result = Client::new(path.clone()).authkey(KEY).timeout(Duration::from_millis(100)).connect();
        assert!(result.is_err(), "case {case}: a random listener was trusted");
        assert!(started.elapsed() < LIMIT, "case {case}: took {:?}", started.elapsed());
    }
    server.join(LIMIT);
    std::fs::remove_file(&path).unwrap();
}
