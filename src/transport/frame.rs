//! Length-prefixed framing of a TCP stream: `[u32 LE size][size bytes of Frame]`,
//! repeated. The size excludes the 4-byte header.
//!
//! Invariant: a header announcing more than `frame_size_max` bytes is refused as soon
//! as its 4 bytes arrive, BEFORE any buffer is sized by it: a peer cannot make the
//! reader allocate more than `frame_size_max + FRAME_HEADER_SIZE` bytes per frame.

use std::fmt;

/// Bytes of the length header in front of every frame.
pub const FRAME_HEADER_SIZE: usize = 4;

/// Why a frame could not be framed or unframed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame (announced by a header, or about to be written) is larger than the
    /// limit. On read, the stream cannot be resynchronized: close the connection.
    TooLarge {
        /// Bytes announced or to be written.
        size: usize,
        /// The limit (`DecodeLimits::frame_size_max`).
        max: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds frame_size_max = {max}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Appends `[u32 LE len][payload]` to `out`. Refuses (writing nothing) a payload
/// larger than `frame_size_max` or than a u32 can announce.
///
/// # Errors
///
/// [`FrameError::TooLarge`] when `payload` exceeds either bound.
pub fn append_frame(
    payload: &[u8],
    frame_size_max: usize,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let too_large = FrameError::TooLarge {
        size: payload.len(),
        max: frame_size_max,
    };
    if payload.len() > frame_size_max {
        return Err(too_large);
    }
    let size = u32::try_from(payload.len()).map_err(|_| too_large)?;
    out.reserve(FRAME_HEADER_SIZE + payload.len());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Appends one frame to `out`: a size header, then what `encode` appends (encoding in
/// place, where [`append_frame`] copies a finished payload). When the payload exceeds
/// `frame_size_max` or what a u32 can announce, `out` is left as it was.
///
/// # Errors
///
/// [`FrameError::TooLarge`] with the size `encode` produced.
pub fn append_frame_with(
    out: &mut Vec<u8>,
    frame_size_max: usize,
    encode: impl FnOnce(&mut Vec<u8>),
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_SIZE]);
    encode(out);
    let size = out.len() - start - FRAME_HEADER_SIZE;
    match u32::try_from(size) {
        Ok(size_u32) if size <= frame_size_max => {
            out[start..start + FRAME_HEADER_SIZE].copy_from_slice(&size_u32.to_le_bytes());
            Ok(())
        }
        Ok(_) | Err(_) => {
            out.truncate(start);
            Err(FrameError::TooLarge {
                size,
                max: frame_size_max,
            })
        }
    }
}

/// Splits the first frame off the front of `buf` (bytes read from a stream).
///
/// Returns `Ok(None)` while the header or the payload is still incomplete (read more
/// and call again), or `Ok(Some((payload, consumed)))`: `payload` is the frame without
/// its header, `consumed` the bytes to drop from the front of `buf`. A header
/// announcing more than `frame_size_max` is an error as soon as it is complete.
///
/// # Errors
///
/// [`FrameError::TooLarge`] for such a header: the stream is lost, close it.
pub fn split_frame(
    buf: &[u8],
    frame_size_max: usize,
) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some((header, rest)) = buf.split_first_chunk::<FRAME_HEADER_SIZE>() else {
        return Ok(None);
    };
    let announced = u32::from_le_bytes(*header);
    // On 16-bit targets a u32 may not fit a usize: treat it as too large.
    let size = usize::try_from(announced).unwrap_or(usize::MAX);
    if size > frame_size_max {
        return Err(FrameError::TooLarge {
            size,
            max: frame_size_max,
        });
    }
    match rest.get(..size) {
        Some(payload) => Ok(Some((payload, FRAME_HEADER_SIZE + size))),
        None => Ok(None),
    }
}
