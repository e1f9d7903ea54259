//! The listening socket, made here rather than by glommio.
//!
//! glommio's `TcpListener::bind` sets `SO_REUSEPORT` and not `SO_REUSEADDR`. With
//! `SO_REUSEPORT` a second bind of an address in use succeeds and the kernel splits the
//! connections between the two listeners; without `SO_REUSEADDR` every socket accepted
//! from it (which inherits the listener's options) keeps the port from a restart's bind
//! while it lingers (`TIME_WAIT`, or a connection accepted while the executor stopped).
//! So the socket is made with `SO_REUSEADDR` only: a bind fails exactly when another
//! socket listens on the address, and sockets left by an earlier run on it do not count.

use std::io;
use std::net::SocketAddr;
use std::os::fd::IntoRawFd;

use glommio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

/// Connections the kernel queues before they are accepted.
const BACKLOG: i32 = 1024;

/// A listener on `addr` with `SO_REUSEADDR` and without `SO_REUSEPORT`. Must run on a
/// glommio executor. `ErrorKind::AddrInUse` when another socket listens on `addr`.
#[allow(
    unsafe_code,
    reason = "glommio takes a socket made here only through FromRawFd"
)]
pub(super) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` is a bound, listening TCP socket that this function owns (taken from
    // `socket`, which no longer closes it); the listener becomes its only owner.
    let listener = unsafe { <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    Ok(listener)
}
