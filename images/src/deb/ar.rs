//! A minimal reader for the `ar` container a `.deb` is wrapped in.
//!
//! A `.deb` uses the common (System V / GNU) `ar` format: the magic
//! `!<arch>\n`, then members, each a 60-byte header (name, mtime, uid, gid,
//! mode, decimal size, terminator `` `\n ``) followed by the data, padded to
//! an even length. dpkg only writes short names, so neither the GNU name
//! table nor BSD `#1/` long names are supported. Members are read strictly
//! in order with no seeking, so a `.deb` can be streamed.

use std::io::{self, Read};

const MAGIC: &[u8; 8] = b"!<arch>\n";
const HEADER_LEN: usize = 60;

/// Why an `ar` archive could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Malformed(String),
}

/// Reads the members of an `ar` archive one after the other.
pub(crate) struct ArReader<R> {
    inner: R,
    /// Bytes of the current member not yet read.
    remaining: u64,
    /// Whether the current member is followed by a padding byte.
    padded: bool,
}

impl<R: Read> ArReader<R> {
    /// Checks the global header.
    pub(crate) fn new(mut inner: R) -> Result<Self, ArError> {
        let mut magic = [0u8; 8];
        read_exact_or(&mut inner, &mut magic, "file is shorter than the ar magic")?;
        if &magic != MAGIC {
            return Err(ArError::Malformed(
                "missing the `!<arch>` magic of an ar archive".to_owned(),
            ));
        }
        Ok(ArReader {
            inner,
            remaining: 0,
            padded: false,
        })
    }

    /// Skips the rest of the current member and reads the next header:
    /// the member's name and size, or `None` at the end of the archive.
    pub(crate) fn next_member(&mut self) -> Result<Option<(String, u64)>, ArError> {
        let skip = self.remaining + u64::from(self.padded);
        let skipped = io::copy(&mut (&mut self.inner).take(skip), &mut io::sink())?;
        // A missing padding byte after the last member is tolerated, as by GNU ar.
        if skipped + 1 < skip || (skipped < skip && !self.padded) {
            return Err(ArError::Malformed("archive is truncated".to_owned()));
        }
        self.remaining = 0;
        self.padded = false;

        let mut header = [0u8; HEADER_LEN];
        let mut filled = 0;
        while filled < HEADER_LEN {
            match self.inner.read(&mut header[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
        if filled == 0 {
            return Ok(None);
        }
        if filled < HEADER_LEN {
            return Err(ArError::Malformed(
                "archive ends inside a member header".to_owned(),
            ));
        }
        if &header[58..60] != b"`\n" {
            return Err(ArError::Malformed(
                "member header does not end with the ar terminator".to_owned(),
            ));
        }
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_owned();
        let size_text = String::from_utf8_lossy(&header[48..58]);
        let size: u64 = size_text.trim().parse().map_err(|_| {
            ArError::Malformed(format!(
                "member `{name}` has an invalid size field `{}`",
                size_text.trim()
            ))
        })?;
        self.remaining = size;
        self.padded = size % 2 == 1;
        Ok(Some((name, size)))
    }

    /// A reader over the rest of the current member's data.
    pub(crate) fn member(&mut self) -> MemberReader<'_, R> {
        MemberReader { archive: self }
    }
}

/// Reads the data of the current member, and nothing past it.
pub(crate) struct MemberReader<'a, R> {
    archive: &'a mut ArReader<R>,
}

impl<R: Read> Read for MemberReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let limit = usize::try_from(self.archive.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if limit == 0 {
            return Ok(0);
        }
        let read = self.archive.inner.read(&mut buf[..limit])?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "ar member is truncated",
            ));
        }
        self.archive.remaining -= read as u64;
        Ok(read)
    }
}

fn read_exact_or<R: Read>(reader: &mut R, buf: &mut [u8], message: &str) -> Result<(), ArError> {
    reader.read_exact(buf).map_err(|error| {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            ArError::Malformed(message.to_owned())
        } else {
            ArError::Io(error)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            "100644",
            data.len()
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }

    #[test]
    fn reads_members_in_order_skipping_unread_data() -> Result<(), ArError> {
        let mut archive = MAGIC.to_vec();
        member(&mut archive, "debian-binary", b"2.0\n");
        member(&mut archive, "odd/", b"abc");
        member(&mut archive, "last", b"xyz!");
        let mut reader = ArReader::new(archive.as_slice())?;
        assert_eq!(reader.next_member()?, Some(("debian-binary".to_owned(), 4)));
        let mut text = String::new();
        reader.member().read_to_string(&mut text)?;
        assert_eq!(text, "2.0\n");
        assert_eq!(reader.next_member()?, Some(("odd".to_owned(), 3)));
        // Not reading "odd" at all: the next header must still be found.
        assert_eq!(reader.next_member()?, Some(("last".to_owned(), 4)));
        let mut data = Vec::new();
        reader.member().read_to_end(&mut data)?;
        assert_eq!(data, b"xyz!");
        assert_eq!(reader.next_member()?, None);
        Ok(())
    }

    #[test]
    fn refuses_bad_magic_and_truncation() {
        assert!(matches!(
            ArReader::new(&b"!<arhc>\nxxxxx"[..]),
            Err(ArError::Malformed(_))
        ));
        let mut archive = MAGIC.to_vec();
        member(&mut archive, "data", b"0123456789");
        archive.truncate(archive.len() - 4);
        let mut reader = ArReader::new(archive.as_slice()).expect("magic is fine");
        assert!(reader.next_member().is_ok());
        let mut data = Vec::new();
        assert!(reader.member().read_to_end(&mut data).is_err());
        let mut half = MAGIC.to_vec();
        half.extend_from_slice(b"debian-binary   0");
        let mut reader = ArReader::new(half.as_slice()).expect("magic is fine");
        assert!(matches!(reader.next_member(), Err(ArError::Malformed(_))));
    }
}
