//! The service manager's readiness protocol (systemd's `sd_notify(3)`), for `synod
//! serve` under a `Type=notify` unit (`tools/systemd/synod.service`): `READY=1` once
//! the node serves, `STOPPING=1` when a graceful stop begins. The protocol is one
//! datagram of `KEY=VALUE` lines to the unix socket named by `$NOTIFY_SOCKET`: a path,
//! or `@name` for Linux's abstract namespace. Without the variable (a node started by
//! hand, or by a test) every call does nothing.
//!
//! Invariants: the variable is read once, at start, and an address this module cannot
//! use (relative, too long) is refused then, before the node starts, rather than
//! leaving a unit waiting for a readiness that never comes; a send that fails is
//! logged and does not stop the node (the service manager's own timeout then acts).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable that names the service manager's socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// The end of the readiness protocol in this process: a socket and its address, or
/// nothing when no service manager listens.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for: none when the variable is unset or
    /// empty.
    ///
    /// # Errors
    ///
    /// The variable holds an address that is neither an absolute path nor `@name`
    /// (systemd's `vsock:` addresses included), or the socket cannot be made.
    pub fn from_env() -> Result<Notifier, String> {
        let Some(value) = std::env::var_os(NOTIFY_SOCKET) else {
            return Ok(Notifier { target: None });
        };
        let Some(text) = value.to_str() else {
            return Err(format!("${NOTIFY_SOCKET} is not UTF-8: {value:?}"));
        };
        let Some(address) = parse_address(text)? else {
            return Ok(Notifier { target: None });
        };
        let socket = UnixDatagram::unbound()
            .map_err(|e| format!("${NOTIFY_SOCKET}={text}: a unix datagram socket: {e}"))?;
        log::info!("readiness and stop notices go to ${NOTIFY_SOCKET}={text}");
        Ok(Notifier {
            target: Some((socket, address)),
        })
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments, such as `READY=1`) in
    /// one datagram; a failure is logged, not returned (module docs).
    pub fn notify(&self, state: &str) {
        let Some((socket, address)) = &self.target else {
            return;
        };
        match socket.send_to_addr(state.as_bytes(), address) {
            Ok(sent) if sent == state.len() => {}
            Ok(sent) => log::warn!(
                "${NOTIFY_SOCKET}: sent {sent} of {} bytes of {state:?}",
                state.len()
            ),
            Err(error) => log::warn!("${NOTIFY_SOCKET}: sending {state:?}: {error}"),
        }
    }
}

/// The socket address in `$NOTIFY_SOCKET`'s text: None when empty, a filesystem path
/// when it starts with `/`, an abstract name when it starts with `@`.
///
/// # Errors
///
/// Any other text, or a name the kernel's address cannot hold (108 bytes).
pub fn parse_address(text: &str) -> Result<Option<SocketAddr>, String> {
    let address = if text.is_empty() {
        return Ok(None);
    } else if let Some(name) = text.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if text.starts_with('/') {
        SocketAddr::from_pathname(text)
    } else {
        return Err(format!(
            "${NOTIFY_SOCKET}={text}: not an absolute path or an abstract name (@name); \
             synod speaks the notification protocol over unix sockets only"
        ));
    };
    address
        .map(Some)
        .map_err(|e| format!("${NOTIFY_SOCKET}={text}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the addresses systemd hands out are understood, anything else is refused
    // with the variable's name. Method: parse each form; round-trip a datagram through
    // an abstract socket bound here.
    #[test]
    fn addresses_and_one_datagram() {
        assert!(parse_address("").expect("empty").is_none());
        let path = parse_address("/run/systemd/notify")
            .expect("a path")
            .expect("some");
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let abstract_name = parse_address("@synod/test")
            .expect("abstract")
            .expect("some");
        assert_eq!(abstract_name.as_abstract_name(), Some(&b"synod/test"[..]));
        for bad in ["relative/notify", "vsock:2:1234"] {
            let error = parse_address(bad).expect_err(bad);
            assert!(
                error.contains("NOTIFY_SOCKET") && error.contains(bad),
                "{error}"
            );
        }
        let long = format!("/{}", "x".repeat(200));
        assert!(parse_address(&long).is_err());

        let name = format!("synod-notify-unit-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("address");
        let listener = UnixDatagram::bind_addr(&address).expect("bind");
        let notifier = Notifier {
            target: Some((UnixDatagram::unbound().expect("socket"), address)),
        };
        notifier.notify("READY=1\nSTATUS=serving");
        let mut buffer = [0_u8; 64];
        let n = listener.recv(&mut buffer).expect("a datagram");
        assert_eq!(&buffer[..n], b"READY=1\nSTATUS=serving");
        // No service manager: nothing is sent, nothing fails.
        Notifier { target: None }.notify("READY=1");
    }
}
