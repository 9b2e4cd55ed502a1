//! Request bodies: reading with a size limit and gzip decoding.

use std::io::Read;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::ApiError;

/// How a body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
}

/// Reads the `Content-Encoding` header: absent or `identity` is plain,
/// `gzip` (or `x-gzip`) is gzip, anything else is refused with 415.
pub(crate) fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let v = v
        .to_str()
        .map_err(|_| ApiError::UnsupportedEncoding("(not text)".into()))?;
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        other => Err(ApiError::UnsupportedEncoding(other.to_string())),
    }
}

/// Reads a whole body of at most `limit` bytes; more is refused with 413,
/// before reading anything when `Content-Length` already says so.
pub(crate) async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(e) => Err(ApiError::BadBody {
            field: None,
            reason: format!("could not read the request body: {e}"),
        }),
    }
}

/// Decodes a body read by [`read`]. A gzip body may also expand to at most
/// `limit` bytes, so a small compressed body cannot exhaust memory.
/// CPU-bound: call it off the async workers.
pub(crate) fn decode(raw: Bytes, enc: Encoding, limit: usize) -> Result<Bytes, ApiError> {
    match enc {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => {
            let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
            let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
            flate2::read::MultiGzDecoder::new(&raw[..])
                .take(cap)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::BadBody {
                    field: None,
                    reason: format!("invalid gzip data: {e}"),
                })?;
            if out.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            Ok(Bytes::from(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = e.write_all(data);
        Bytes::from(e.finish().unwrap_or_default())
    }

    #[test]
    fn gzip_round_trip_and_bomb_limit() {
        let data = vec![b'a'; 10_000];
        let z = gzip(&data);
        assert_eq!(
            decode(z.clone(), Encoding::Gzip, 10_000).ok(),
            Some(Bytes::from(data))
        );
        assert!(matches!(
            decode(z, Encoding::Gzip, 9_999),
            Err(ApiError::PayloadTooLarge { .. })
        ));
        assert!(matches!(
            decode(Bytes::from_static(b"not gzip"), Encoding::Gzip, 100),
            Err(ApiError::BadBody { .. })
        ));
    }
}
