//! Length-prefixed frames on TCP: `[size u32 LE][body]`, body = bincode of a message.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest frame body a reader accepts.
pub const FRAME_SIZE_MAX: usize = 256 << 20;

/// Appends one frame holding `message` to `out`.
pub fn put_frame<M: Serialize>(out: &mut Vec<u8>, message: &M) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    bincode::serialize_into(&mut *out, message).expect("bincode encodes into a Vec");
    let size = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&size.to_le_bytes());
}

/// Reads one frame and decodes it; `buf` is reused across calls.
pub async fn read_frame<M: DeserializeOwned, R: AsyncReadExt + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<M> {
    let size = reader.read_u32_le().await? as usize;
    if size > FRAME_SIZE_MAX {
        return Err(io::Error::other(format!(
            "frame of {size} bytes over {FRAME_SIZE_MAX}"
        )));
    }
    buf.resize(size, 0);
    reader.read_exact(buf).await?;
    bincode::deserialize(buf).map_err(io::Error::other)
}

/// Writes one frame holding `message`.
pub async fn write_frame<M: Serialize, W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    message: &M,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    buf.clear();
    put_frame(buf, message);
    writer.write_all(buf).await
}

/// Binds three listeners on 127.0.0.1 with kernel-chosen ports (bound before any node
/// starts, so early connects wait in the backlog instead of being refused).
pub fn bind_three() -> io::Result<Vec<(SocketAddr, StdListener)>> {
    (0..3)
        .map(|_| {
            let listener = StdListener::bind(("127.0.0.1", 0))?;
            listener.set_nonblocking(true)?;
            Ok((listener.local_addr()?, listener))
        })
        .collect()
}
