//! The authkey handshake of `multiprocessing.connection`, as CPython 3.12+ performs it
//! (HMAC-SHA256 with a `{sha256}` prefix), also accepting the HMAC-MD5 answers of CPython 3.11
//! and earlier and answering their 20-byte challenges.
//!
//! One side delivers a challenge (`#CHALLENGE#{sha256}` + 40 random bytes), the other answers
//! with `{sha256}` + HMAC(authkey, challenge) and hears `#WELCOME#` or `#FAILURE#`; then the
//! roles swap. Every frame is capped at 256 bytes, every step has a deadline, and MACs are
//! compared in constant time.

use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::{Connection, sys};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in a modern challenge.
const MESSAGE_LENGTH: usize = 40;
/// A legacy (pre-3.12) challenge's length, and an HMAC-MD5's.
const LEGACY_LENGTHS: [usize; 2] = [20, 16];
/// The largest frame accepted during the handshake.
const MAX_AUTH_FRAME: u64 = 256;

/// Sends a challenge and checks the answer; tells the peer the verdict.
pub(crate) fn deliver_challenge(conn: &mut Connection, key: &[u8], deadline: Option<Instant>) -> Result<()> {
    let mut random = [0u8; MESSAGE_LENGTH];
    sys::random_bytes(&mut random)?;
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(&random);
    conn.send_bytes(&[CHALLENGE, &message].concat())?;
    let response = recv_auth(conn, deadline)?;
    match verify(key, &message, &response) {
        Ok(()) => conn.send_bytes(WELCOME),
        Err(err) => {
            let _ = conn.send_bytes(FAILURE);
            Err(err)
        }
    }
}

/// Answers the peer's challenge and reads its verdict.
pub(crate) fn answer_challenge(conn: &mut Connection, key: &[u8], deadline: Option<Instant>) -> Result<()> {
    let challenge = recv_auth(conn, deadline)?;
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        return Err(Error::Auth("protocol error: expected a challenge".into()));
    };
    if message.len() < LEGACY_LENGTHS[0] {
        return Err(Error::Auth(format!("challenge too short: {} bytes", message.len())));
    }
    let response = respond(key, message)?;
    conn.send_bytes(&response)?;
    match recv_auth(conn, deadline)?.as_slice() {
        WELCOME => Ok(()),
        FAILURE => Err(Error::Auth("the peer rejected our authkey".into())),
        _ => Err(Error::Auth("protocol error: expected #WELCOME# or #FAILURE#".into())),
    }
}

fn recv_auth(conn: &mut Connection, deadline: Option<Instant>) -> Result<Vec<u8>> {
    let max = conn.max_message_size();
    conn.set_max_message_size(MAX_AUTH_FRAME);
    let result = conn.recv_bytes_deadline(deadline);
    conn.set_max_message_size(max);
    match result {
        Ok(bytes) => Ok(bytes),
        Err(Error::TooLarge { len, .. }) => {
            Err(Error::Auth(format!("handshake message of {len} bytes (at most {MAX_AUTH_FRAME})")))
        }
        Err(Error::Timeout) => Err(Error::Auth("handshake timed out".into())),
        Err(Error::Disconnected | Error::Truncated) => {
            Err(Error::Auth("the peer closed the connection during the handshake".into()))
        }
        Err(err) => Err(err),
    }
}

/// Splits a challenge or response into its digest name and payload: `("", all)` for the
/// legacy unprefixed form.
fn split_digest(message: &[u8]) -> Result<(&str, &[u8])> {
    if LEGACY_LENGTHS.contains(&message.len()) {
        return Ok(("", message));
    }
    if message.first() == Some(&b'{') {
        if let Some(end) = message.iter().take(22).position(|&b| b == b'}') {
            if let Ok(name @ ("sha256" | "md5")) = std::str::from_utf8(&message[1..end]) {
                return Ok((name, &message[end + 1..]));
            }
        }
    }
    Err(Error::Auth("unsupported message length, missing digest prefix, or unsupported digest".into()))
}

fn mac_sha256(key: &[u8], message: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac
}

fn mac_md5(key: &[u8], message: &[u8]) -> Hmac<Md5> {
    let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac
}

/// The answer to `message`: raw HMAC-MD5 for a legacy challenge, else `{name}` + HMAC.
fn respond(key: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    match split_digest(message)?.0 {
        "" => Ok(mac_md5(key, message).finalize().into_bytes().to_vec()),
        "md5" => Ok([b"{md5}".as_slice(), &mac_md5(key, message).finalize().into_bytes()].concat()),
        _ => Ok([b"{sha256}".as_slice(), &mac_sha256(key, message).finalize().into_bytes()].concat()),
    }
}

/// Checks `response` against `message` in constant time.
fn verify(key: &[u8], message: &[u8], response: &[u8]) -> Result<()> {
    let (name, mac) = split_digest(response)?;
    let ok = match name {
        "" | "md5" => mac_md5(key, message).verify_slice(mac).is_ok(),
        _ => mac_sha256(key, message).verify_slice(mac).is_ok(),
    };
    if ok { Ok(()) } else { Err(Error::Auth("digest received was wrong".into())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_modern_and_legacy_challenges() {
        let key = b"secret";
        let modern = [b"{sha256}".as_slice(), &[7u8; 40]].concat();
        let answer = respond(key, &modern).unwrap();
        assert!(answer.starts_with(b"{sha256}"));
        assert_eq!(answer.len(), 8 + 32);
        verify(key, &modern, &answer).unwrap();
        let legacy = [9u8; 20];
        let answer = respond(key, &legacy).unwrap();
        assert_eq!(answer.len(), 16);
        verify(key, &legacy, &answer).unwrap();
        assert!(verify(b"other", &modern, &respond(key, &modern).unwrap()).is_err());
    }

    #[test]
    fn rejects_malformed_responses() {
        let modern = [b"{sha256}".as_slice(), &[7u8; 40]].concat();
        for bad in [&b""[..], b"{sha1}aaaaaaaaaaaaaaaaaaaaa", b"{sha256}short", &[0u8; 17]] {
            assert!(verify(b"k", &modern, bad).is_err(), "{bad:?}");
        }
    }
}
