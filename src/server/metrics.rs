//! The metrics endpoint of a node (`synod serve --metrics-listen ADDR`): `GET
//! /metrics` answers the node's counters in the Prometheus text format
//! (`api::metrics`). A minimal HTTP/1.x responder on one thread of its own, beside
//! the shard threads, which it reaches only through the handle's control mailboxes
//! (each shard answers a snapshot between two steps of its loop).
//!
//! Unauthenticated and read-only: it changes nothing in the node, and what it shows
//! (counters, watermarks, peer ids) is meant for a monitoring system on a trusted
//! network; `synod serve` binds it to 127.0.0.1 unless told an address.
//!
//! Invariants (each bounded):
//! - one connection at a time, one request per connection (`Connection: close`);
//! - a request head is read up to `REQUEST_SIZE_MAX` bytes (larger: 431), each read
//!   waits at most `READ_TIMEOUT` and the whole head at most `REQUEST_TIMEOUT`
//!   (slower: the connection is closed), a response write at most `WRITE_TIMEOUT`,
//!   and what the client sends after its answer is dropped for at most
//!   `LINGER_TIMEOUT` and `LINGER_SIZE_MAX` bytes;
//! - a request that is not `GET` or `HEAD` gets 405, a path other than `/metrics` 404,
//!   a malformed request line 400, a stopped node 503; the listener keeps serving;
//! - nothing it does blocks a shard: a slow or hostile scraper holds only this thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::api::metrics::CONTENT_TYPE;
use crate::api::NodeHandle;
use crate::runtime::clock::MonotonicClock;

/// Largest request head read (request line and headers): a scraper's is below 1 KiB.
pub const REQUEST_SIZE_MAX: usize = 8 << 10;

/// How long one read of a request waits for bytes.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a request head may take to arrive in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one write of a response may block.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long, at most, a connection is kept after its answer to drop what the client
/// still sends.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes dropped, at most, after an answer.
pub const LINGER_SIZE_MAX: usize = 1 << 20;

/// The only path served.
pub const METRICS_PATH: &str = "/metrics";

/// A running metrics endpoint; dropping it stops the thread and closes the listener.
pub struct MetricsServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `address` and serves `GET /metrics` from `handle` on a thread of its own.
    ///
    /// # Errors
    ///
    /// The address cannot be bound (in use, not local, no permission).
    pub fn start(address: SocketAddr, handle: NodeHandle) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("synod-metrics".to_string())
            .spawn(move || serve(&listener, &flag, &handle))?;
        Ok(MetricsServer {
            address,
            stop,
            thread: Some(thread),
        })
    }

    /// The address listened on (the port the OS chose when it was 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The accept loop: one connection at a time, until `stop`.
fn serve(listener: &TcpListener, stop: &AtomicBool, handle: &NodeHandle) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                log::warn!("metrics: accept: {error}");
                // An accept error (out of descriptors) must not spin the thread.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if let Err(error) = respond(stream, handle) {
            log::debug!("metrics: a scrape failed: {error}");
        }
    }
}

/// What a request head asks for, or the status that refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics` (the body is sent).
    Get,
    /// `HEAD /metrics` (headers only).
    Head,
}

/// A refused request: its status code and reason phrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status code.
    pub code: u16,
    /// Its reason phrase.
    pub reason: &'static str,
}

const BAD_REQUEST: Refusal = Refusal {
    code: 400,
    reason: "Bad Request",
};
const NOT_FOUND: Refusal = Refusal {
    code: 404,
    reason: "Not Found",
};
const NOT_ALLOWED: Refusal = Refusal {
    code: 405,
    reason: "Method Not Allowed",
};
const TOO_LARGE: Refusal = Refusal {
    code: 431,
    reason: "Request Header Fields Too Large",
};
const UNAVAILABLE: Refusal = Refusal {
    code: 503,
    reason: "Service Unavailable",
};

/// Parses a request head (the bytes before the blank line): its request line must be
/// `METHOD SP TARGET SP HTTP/1.x` in ASCII; the target's query string is ignored.
///
/// # Errors
///
/// 400 for a malformed request line, 405 for a method other than `GET` or `HEAD`, 404
/// for a path other than [`METRICS_PATH`].
pub fn parse_request(head: &[u8]) -> Result<Request, Refusal> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| BAD_REQUEST)?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(BAD_REQUEST);
    };
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    if !method_ok || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(BAD_REQUEST);
    }
    let request = match method {
        "GET" => Request::Get,
        "HEAD" => Request::Head,
        _ => return Err(NOT_ALLOWED),
    };
    let path = target.split('?').next().unwrap_or(target);
    if path == METRICS_PATH {
        Ok(request)
    } else {
        Err(NOT_FOUND)
    }
}

/// Reads one request head from `stream` (bounded in size and time) and answers it.
fn respond(mut stream: TcpStream, handle: &NodeHandle) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let head = match read_head(&mut stream)? {
        Some(head) => parse_request(&head),
        None => Err(TOO_LARGE),
    };
    let result = match head {
        Ok(request) => match futures_lite::future::block_on(handle.metrics()) {
            Ok(metrics) => {
                let body = metrics.encode();
                write_response(&mut stream, 200, "OK", CONTENT_TYPE, &body, request)
            }
            Err(error) => refuse(&mut stream, UNAVAILABLE, &error.to_string()),
        },
        Err(refusal) => refuse(&mut stream, refusal, refusal.reason),
    };
    // Tells the client the answer is complete, even if it has not read it all.
    let _ = stream.shutdown(Shutdown::Write);
    linger(&mut stream);
    result
}

/// Reads and drops what the client still sends (the rest of an oversized request),
/// for at most `LINGER_SIZE_MAX` bytes and `LINGER_TIMEOUT`, or until it closes:
/// closing a socket with unread input resets the connection, and the reset can
/// destroy the answer before the client reads it.
fn linger(stream: &mut TcpStream) {
    let clock = MonotonicClock::start();
    let mut dropped = 0;
    let mut chunk = [0u8; 4096];
    if stream.set_read_timeout(Some(LINGER_TIMEOUT)).is_err() {
        return;
    }
    while dropped < LINGER_SIZE_MAX && clock.now().0 < LINGER_TIMEOUT.as_nanos() as u64 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => dropped += n,
        }
    }
}

/// The request head: bytes up to the first blank line (`\r\n\r\n` or `\n\n`), or
/// `None` past `REQUEST_SIZE_MAX` bytes without one.
///
/// # Errors
///
/// The connection failed, ended before the blank line, or took longer than
/// `READ_TIMEOUT` for a read or `REQUEST_TIMEOUT` in all.
fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let clock = MonotonicClock::start();
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&head) {
            head.truncate(end);
            return Ok(Some(head));
        }
        if head.len() > REQUEST_SIZE_MAX {
            return Ok(None);
        }
        if clock.now().0 > REQUEST_TIMEOUT.as_nanos() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head too slow",
            ));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection ended inside the request head",
            ));
        }
        head.extend_from_slice(&chunk[..n]);
    }
}

/// Where the head ends (the blank line's start), if it does within `bytes`.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Answers `refusal` with `message` as a plain-text body.
fn refuse(stream: &mut TcpStream, refusal: Refusal, message: &str) -> io::Result<()> {
    let body = format!("{message}\n");
    let (code, reason) = (refusal.code, refusal.reason);
    write_response(
        stream,
        code,
        reason,
        "text/plain; charset=utf-8",
        &body,
        Request::Get,
    )
}

/// Writes a whole response (`Connection: close`); the body only for `GET`.
fn write_response(
    stream: &mut TcpStream,
    code: u16,
    reason: &str,
    content_type: &str,
    body: &str,
    request: Request,
) -> io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if code == 405 {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("Connection: close\r\n\r\n");
    if request == Request::Get {
        response.push_str(body);
    }
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::{head_end, parse_request, Request};

    // Goal: only `GET`/`HEAD /metrics` over HTTP/1.x is served; everything else gets
    // its status. Method: parse good and bad request heads.
    #[test]
    fn request_lines() {
        let ok = |head: &str| parse_request(head.as_bytes());
        assert_eq!(ok("GET /metrics HTTP/1.1\r\nHost: x"), Ok(Request::Get));
        assert_eq!(ok("GET /metrics?x=1 HTTP/1.0"), Ok(Request::Get));
        assert_eq!(ok("HEAD /metrics HTTP/1.1"), Ok(Request::Head));
        let code = |head: &[u8]| parse_request(head).map_err(|r| r.code);
        assert_eq!(code(b"GET / HTTP/1.1"), Err(404));
        assert_eq!(code(b"GET /metricsx HTTP/1.1"), Err(404));
        assert_eq!(code(b"POST /metrics HTTP/1.1"), Err(405));
        assert_eq!(code(b"DELETE /metrics HTTP/1.1"), Err(405));
        for bad in [
            &b"garbage"[..],
            b"",
            b"GET /metrics",
            b"GET /metrics HTTP/2",
            b"GET metrics HTTP/1.1",
            b"get /metrics HTTP/1.1",
            b"GET  /metrics HTTP/1.1",
            b"GET /metrics HTTP/1.1 extra",
            b"\xff\xfe /metrics HTTP/1.1",
        ] {
            assert_eq!(code(bad), Err(400), "{bad:?}");
        }
    }

    // Goal: the head ends at the first blank line, CRLF or bare LF.
    // Method: a few heads, complete and not.
    #[test]
    fn head_ends() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}
