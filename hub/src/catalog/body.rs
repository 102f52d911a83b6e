//! The manifest's bodies (identity and gzip) as lists of shared pieces, streamed with their
//! total length.

use bytes::Bytes;

use super::CatalogError;

/// One piece of a body: bytes as they are sent, or a segment kept deflated and inflated
/// only while it is streamed (see [`super::parts`]).
#[derive(Debug, Clone)]
pub(super) enum Piece {
    /// Sent as is.
    Raw(Bytes),
    /// A raw-deflate piece and the length it inflates to.
    Deflated {
        /// The compressed bytes.
        data: Bytes,
        /// Their inflated length.
        len: usize,
    },
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Raw(bytes) => bytes.len() as u64,
            Piece::Deflated { len, .. } => *len as u64,
        }
    }

    fn bytes(&self) -> Result<Bytes, CatalogError> {
        match self {
            Piece::Raw(bytes) => Ok(bytes.clone()),
            Piece::Deflated { data, len } => super::parts::inflate(data, *len).map(Bytes::from),
        }
    }
}

/// A body as shared pieces (see [`super::parts`]): served as a stream of known length, so
/// publishing a change never copies the whole document, and the identity body is never held
/// whole (its tools stay deflated until a response streams them).
#[derive(Debug, Clone, Default)]
pub struct ManifestBody {
    pieces: Vec<Piece>,
    len: u64,
}

impl ManifestBody {
    pub(super) fn new(pieces: Vec<Piece>) -> Self {
        let len = pieces.iter().map(Piece::len).sum();
        Self { pieces, len }
    }

    pub(super) fn raw(chunks: Vec<Bytes>) -> Self {
        Self::new(chunks.into_iter().map(Piece::Raw).collect())
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when empty (never for a built manifest).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body's bytes in order, piece by piece, each inflated when it is reached (an
    /// owned iterator: a response streams it without holding the manifest's lock or the
    /// whole body).
    pub fn stream(&self) -> impl Iterator<Item = Result<Bytes, CatalogError>> + Send + 'static {
        self.pieces.clone().into_iter().map(|piece| piece.bytes())
    }

    /// The whole body in one buffer (a copy: for tools and tests, not the serving path).
    pub fn to_bytes(&self) -> Result<Bytes, CatalogError> {
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        for piece in self.stream() {
            out.extend_from_slice(&piece?);
        }
        Ok(out.into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::catalog::parts::deflate;

    #[test]
    fn deflated_pieces_stream_as_their_bytes() {
        let tools = br#"{"name":"a"},{"name":"b"}"#.repeat(50);
        let body = ManifestBody::new(vec![
            Piece::Raw(Bytes::from_static(b"[")),
            Piece::Deflated {
                data: deflate(&tools, false).unwrap().into(),
                len: tools.len(),
            },
            Piece::Raw(Bytes::from_static(b"]")),
        ]);
        assert_eq!(body.len(), tools.len() as u64 + 2);
        let whole = body.to_bytes().unwrap();
        assert_eq!(&whole[1..whole.len() - 1], &tools[..]);
        assert_eq!(body.stream().count(), 3);
    }

    #[test]
    fn a_damaged_piece_is_an_error_not_a_panic() {
        let body = ManifestBody::new(vec![Piece::Deflated {
            data: Bytes::from_static(b"\xff\xff\xff not deflate"),
            len: 100,
        }]);
        assert!(body.to_bytes().is_err());
        let short = ManifestBody::new(vec![Piece::Deflated {
            data: deflate(b"abc", false).unwrap().into(),
            len: 4,
        }]);
        assert!(short.to_bytes().is_err());
        let long = ManifestBody::new(vec![Piece::Deflated {
            data: deflate(&b"abcdef".repeat(1000), false).unwrap().into(),
            len: 5999,
        }]);
        assert!(long.to_bytes().is_err());
    }
}
