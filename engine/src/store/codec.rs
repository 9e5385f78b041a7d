//! Versioned encoding of persisted records (events, metadata, snapshots, items).
//!
//! Layout: 4 magic bytes `DRPR`, the record format version as a big-endian
//! `u16`, then the record as JSON. JSON because the records are small, the
//! format must be inspectable in a support case, and serde's field defaults
//! let us add fields without a version bump. The version is bumped only when
//! an old reader would misread a new record; a reader then refuses a newer
//! record with [`StoreError::NewerFormat`] (it never guesses), and a newer
//! reader migrates older records after [`peek_version`].
//!
//! Decoding never panics: anything that is not a well-formed record is
//! [`StoreError::Corrupt`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// Magic bytes that open every record.
pub const MAGIC: [u8; 4] = *b"DRPR";

/// The record format version this build writes and the newest it reads.
pub const RECORD_FORMAT: u16 = 1;

const HEADER_LEN: usize = MAGIC.len() + 2;

/// Encodes a record with the current format version.
///
/// # Panics
/// Only if `T`'s `Serialize` implementation itself fails (for example a map
/// with non-string keys), which is a bug in the record type, not bad input.
/// Use [`try_encode`] to get that as an error instead.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    match try_encode(record) {
        Ok(bytes) => bytes,
        Err(e) => panic!("record type cannot be encoded (a bug in its Serialize impl): {e}"),
    }
}

/// Encodes a record with the current format version, reporting a failing
/// `Serialize` implementation as an error.
pub fn try_encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&RECORD_FORMAT.to_be_bytes());
    serde_json::to_writer(&mut out, record).map_err(|e| {
        StoreError::corrupt(
            format!("record of type {}", std::any::type_name::<T>()),
            format!("cannot encode: {e}"),
        )
    })?;
    Ok(out)
}

/// Reads a record's header: its format version and the body after it.
/// Refuses newer versions and anything without the magic bytes.
pub fn peek_version(bytes: &[u8]) -> Result<(u16, &[u8]), StoreError> {
    peek_version_as(bytes, "record")
}

fn peek_version_as<'a>(bytes: &'a [u8], what: &str) -> Result<(u16, &'a [u8]), StoreError> {
    if bytes.len() < HEADER_LEN {
        return Err(StoreError::corrupt(
            what,
            format!(
                "{} byte(s), shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(StoreError::corrupt(
            what,
            format!(
                "does not start with the record magic {:?} (found {:02x?})",
                String::from_utf8_lossy(&MAGIC),
                &bytes[..MAGIC.len()]
            ),
        ));
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version > RECORD_FORMAT {
        return Err(StoreError::NewerFormat {
            what: what.to_string(),
            found: version,
            supported: RECORD_FORMAT,
        });
    }
    if version == 0 {
        return Err(StoreError::corrupt(
            what,
            "format version 0 was never written",
        ));
    }
    Ok((version, &bytes[HEADER_LEN..]))
}

/// Decodes a record written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    let what = format!("record of type {}", std::any::type_name::<T>());
    let (_version, body) = peek_version_as(bytes, &what)?;
    serde_json::from_slice(body).map_err(|e| StoreError::corrupt(what, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        a: u32,
        b: String,
    }

    #[test]
    fn round_trip_and_header() {
        let r = Rec {
            a: 7,
            b: "x".into(),
        };
        let bytes = encode(&r);
        assert_eq!(&bytes[..4], b"DRPR");
        assert_eq!(&bytes[4..6], &RECORD_FORMAT.to_be_bytes());
        assert_eq!(decode::<Rec>(&bytes).unwrap(), r);
    }

    #[test]
    fn newer_version_is_refused_with_upgrade_hint() {
        let mut bytes = encode(&Rec {
            a: 1,
            b: String::new(),
        });
        bytes[4..6].copy_from_slice(&(RECORD_FORMAT + 1).to_be_bytes());
        let err = decode::<Rec>(&bytes).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerFormat { found, supported, .. }
                if found == RECORD_FORMAT + 1 && supported == RECORD_FORMAT),
            "{err:?}"
        );
        assert!(err.to_string().contains("upgrade drplan"), "{err}");
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for bytes in [
            &b""[..],
            &b"DRP"[..],
            &b"XXXX\0\x01{}"[..],
            &b"DRPR\0\x00{}"[..],
            &b"DRPR\0\x01{not json"[..],
            &b"DRPR\0\x01{\"a\":\"wrong type\",\"b\":\"\"}"[..],
        ] {
            let err = decode::<Rec>(bytes).unwrap_err();
            assert!(
                matches!(err, StoreError::Corrupt { .. }),
                "{bytes:?}: {err:?}"
            );
        }
    }
}
