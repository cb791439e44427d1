//! A reader between the decompressor and the tar parser that follows the tar
//! block structure and refuses metadata entries (GNU long name/link, pax
//! headers) claiming more than [`MAX_TAR_METADATA`] bytes, before the parser
//! reads them: the `tar` crate reads such payloads whole into memory, so a
//! tiny compressed package claiming a multi-GiB long name would otherwise
//! exhaust memory.
//!
//! Invariants: bytes pass through unchanged; the guard only looks at headers
//! and counts payload bytes (pax `size` records are honoured, as the parser
//! does); once it cannot follow the structure (an unparsable size field, the
//! end-of-archive block) it stops looking and lets the parser report errors.

use std::io::{self, Read};

/// Largest payload accepted for a GNU long-name/long-link or pax header entry.
pub const MAX_TAR_METADATA: u64 = 1 << 20;

const BLOCK: u64 = 512;

enum State {
    /// Collecting a 512-byte header (bytes so far in `header`).
    Header,
    /// Passing `remaining` payload bytes (padding included); `pax` collects a
    /// pax header's records (its size was checked against the cap).
    Payload {
        remaining: u64,
        pax: Option<Vec<u8>>,
    },
    /// GNU sparse extension headers follow (512 bytes each) before the payload.
    SparseExtension { payload: u64 },
    /// Not following the structure any more.
    Off,
}

/// Wraps the decompressed tar stream; see the module docs.
pub struct HeaderGuard<R> {
    inner: R,
    state: State,
    header: Vec<u8>,
    /// A pax `size` record applies to the following entries until a regular one.
    pax_size: Option<u64>,
}

impl<R: Read> HeaderGuard<R> {
    /// Guards `inner`.
    pub fn new(inner: R) -> HeaderGuard<R> {
        HeaderGuard {
            inner,
            state: State::Header,
            header: Vec::with_capacity(BLOCK as usize),
            pax_size: None,
        }
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Follows `bytes` (just read) through the structure.
    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Off => return Ok(()),
                State::Header | State::SparseExtension { .. } => {
                    let take = (BLOCK as usize - self.header.len()).min(bytes.len());
                    self.header.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.header.len() == BLOCK as usize {
                        let block = std::mem::take(&mut self.header);
                        self.state = match std::mem::replace(&mut self.state, State::Off) {
                            State::SparseExtension { payload } => {
                                // byte 504: another extension block follows
                                if block[504] != 0 {
                                    State::SparseExtension { payload }
                                } else {
                                    State::Payload {
                                        remaining: padded(payload),
                                        pax: None,
                                    }
                                }
                            }
                            _ => self.on_header(&block)?,
                        };
                        self.header = block;
                        self.header.clear();
                    }
                }
                State::Payload { remaining, pax } => {
                    let take = (*remaining).min(bytes.len() as u64) as usize;
                    if let Some(p) = pax.as_mut() {
                        p.extend_from_slice(&bytes[..take]);
                    }
                    *remaining -= take as u64;
                    bytes = &bytes[take..];
                    if *remaining == 0 {
                        if let State::Payload { pax: Some(p), .. } =
                            std::mem::replace(&mut self.state, State::Header)
                        {
                            self.pax_size = pax_size(&p).or(self.pax_size);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Decides what follows a header block.
    fn on_header(&mut self, block: &[u8]) -> io::Result<State> {
        if block.iter().all(|&b| b == 0) {
            return Ok(State::Off); // end of archive: the parser takes it from here
        }
        let Some(header_size) = numeric(&block[124..136]) else {
            return Ok(State::Off);
        };
        let kind = block[156];
        let size = self.pax_size.unwrap_or(header_size);
        let metadata = matches!(kind, b'L' | b'K' | b'x' | b'g');
        if metadata && size > MAX_TAR_METADATA {
            let name = String::from_utf8_lossy(&block[..100]);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "tar entry {:?} ({}) claims {size} bytes of metadata; the limit is {MAX_TAR_METADATA}",
                    name.trim_end_matches('\0'),
                    match kind {
                        b'L' => "GNU long name",
                        b'K' => "GNU long link name",
                        b'x' => "pax header",
                        _ => "pax global header",
                    }
                ),
            ));
        }
        if !metadata {
            self.pax_size = None; // a pax size describes the next regular entry only
        }
        if kind == b'S' && block[482] != 0 {
            return Ok(State::SparseExtension { payload: size });
        }
        Ok(State::Payload {
            remaining: padded(size),
            pax: (kind == b'x').then(Vec::new),
        })
    }
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

/// A tar numeric field: octal text, or GNU base-256 when the high bit is set.
fn numeric(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `size` record of pax header records (`LEN key=value\n`...), which may
/// be followed by the block's zero padding.
fn pax_size(records: &[u8]) -> Option<u64> {
    let mut rest = records;
    let mut found = None;
    while let Some(space) = rest.iter().position(|&b| b == b' ') {
        let Some(len) = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|&l| l > space && l <= rest.len())
        else {
            break; // padding or a malformed record: the parser reports the latter
        };
        let record = &rest[space + 1..len];
        if let Some(value) = record.strip_prefix(b"size=") {
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            found = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        }
        rest = &rest[len..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_cksum();
        h
    }

    /// A pax header entry (header, records, padding).
    fn pax_entry(records: &[u8]) -> Vec<u8> {
        let mut v = header(
            "PaxHeaders.0/f",
            tar::EntryType::XHeader,
            records.len() as u64,
        )
        .as_bytes()
        .to_vec();
        v.extend_from_slice(records);
        v.resize(v.len().div_ceil(512) * 512, 0);
        v
    }

    /// One pax record `LEN key=value\n`, LEN counting itself.
    fn record(key: &str, value: &str) -> Vec<u8> {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while len.to_string().len() + body.len() != len {
            len += 1;
        }
        format!("{len}{body}").into_bytes()
    }

    fn read_through(bytes: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        let mut guard = HeaderGuard::new(bytes);
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = guard.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn valid_archives_pass_unchanged_whatever_the_read_sizes() {
        let mut b = tar::Builder::new(Vec::new());
        let long = "blobs/sha256/".to_owned() + &"ab".repeat(300);
        for (i, size) in [0usize, 1, 511, 512, 513, 70_000].into_iter().enumerate() {
            let data = vec![i as u8; size];
            let mut h = tar::Header::new_gnu();
            h.set_size(size as u64);
            h.set_cksum();
            let name = if i == 3 {
                long.clone()
            } else {
                format!("f{i}")
            };
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        let mut bytes = pax_entry(&record("path", &long));
        bytes.extend_from_slice(header("f", tar::EntryType::Regular, 3).as_bytes());
        bytes.extend_from_slice(&[1u8; 512]);
        bytes.extend_from_slice(&b.into_inner().unwrap());
        for chunk in [1, 7, 512, 4096, 1 << 20] {
            assert_eq!(read_through(&bytes, chunk).unwrap(), bytes, "chunk {chunk}");
        }
    }

    #[test]
    fn huge_long_name_and_pax_headers_are_refused_before_their_payload() {
        for kind in [tar::EntryType::GNULongName, tar::EntryType::XHeader] {
            let h = header("././@LongLink", kind, 8 << 30);
            let bytes = h.as_bytes().to_vec(); // the payload never needs to exist
            let e = read_through(&bytes, 512).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("8589934592 bytes"), "{e}");
        }
        // A regular file may be huge.
        let h = header("blobs/sha256/aa", tar::EntryType::Regular, 8 << 30);
        assert!(read_through(h.as_bytes(), 512).is_ok());
    }

    #[test]
    fn a_pax_size_record_moves_the_next_header() {
        // pax says the next file has 1000 bytes although its header says 0.
        let mut bytes = pax_entry(&record("size", "1000"));
        bytes.extend_from_slice(header("f", tar::EntryType::Regular, 0).as_bytes());
        bytes.extend_from_slice(&[7u8; 1024]); // 1000 bytes + padding
                                               // After it, a long name claiming too much: found only if the pax size was followed.
        bytes.extend_from_slice(header("x", tar::EntryType::GNULongName, 1 << 30).as_bytes());
        let e = read_through(&bytes, 100).unwrap_err();
        assert!(e.to_string().contains("GNU long name"), "{e}");
        assert_eq!(pax_size(&record("size", "42")), Some(42));
        assert_eq!(
            pax_size(&[record("path", "x"), record("size", "7")].concat()),
            Some(7)
        );
        assert_eq!(
            pax_size(&[record("size", "9"), vec![0; 500]].concat()),
            Some(9)
        );
        assert_eq!(numeric(b"0000644\0"), Some(0o644));
    }
}
