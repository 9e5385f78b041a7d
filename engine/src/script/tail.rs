//! The bounded output buffer: the last `limit` bytes a script wrote, plus a
//! count of what was dropped before them.
//!
//! A script may print gigabytes (a stuck loop, `yes`); the engine keeps only
//! the tail an operator needs to see why it failed, so memory stays at
//! `limit` bytes per running attempt whatever the script does.

use std::borrow::Cow;

/// A ring buffer of the last `limit` bytes written, and how many came before.
#[derive(Debug)]
pub(crate) struct Tail {
    /// Fixed-size storage, allocated once; `start` is the oldest byte once
    /// the buffer has wrapped.
    buf: Vec<u8>,
    limit: usize,
    start: usize,
    len: usize,
    /// Bytes written, in total.
    total: u64,
}

impl Tail {
    pub(crate) fn new(limit: usize) -> Tail {
        Tail {
            buf: vec![0; limit],
            limit,
            start: 0,
            len: 0,
            total: 0,
        }
    }

    /// Bytes written in total.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Appends `data`, dropping the oldest bytes beyond the limit. Copies are
    /// slice copies (memcpy), so a flood costs no per-byte work.
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        if self.limit == 0 {
            return;
        }
        // Only the last `limit` bytes of `data` can survive.
        let data = &data[data.len().saturating_sub(self.limit)..];
        let mut rest = data;
        while !rest.is_empty() {
            // The write position: just after the newest byte.
            let end = (self.start + self.len) % self.limit;
            let room_to_wrap = self.limit - end;
            let n = rest.len().min(room_to_wrap);
            self.buf[end..end + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            let new_len = self.len + n;
            if new_len > self.limit {
                // Overwrote the oldest bytes: the ring now starts after them.
                self.start = (self.start + (new_len - self.limit)) % self.limit;
                self.len = self.limit;
            } else {
                self.len = new_len;
            }
        }
    }

    /// The kept bytes, oldest first.
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        let first = (self.limit - self.start).min(self.len);
        out.extend_from_slice(&self.buf[self.start..self.start + first]);
        out.extend_from_slice(&self.buf[..self.len - first]);
        out
    }

    /// The text for the operator: at most `limit` bytes of UTF-8, invalid
    /// sequences replaced (U+FFFD), preceded by a `[... N omitted ...]` line
    /// when anything was dropped. Returns the text and the number of bytes
    /// of output it leaves out.
    pub(crate) fn render(&self) -> (String, u64) {
        let bytes = self.bytes();
        let mut start = 0;
        loop {
            let omitted = self.total - (bytes.len() - start) as u64;
            let header = if omitted > 0 {
                format!("[... {} omitted ...]\n", human_bytes(omitted))
            } else {
                String::new()
            };
            if header.len() > self.limit {
                // A limit too small even for the header: say nothing.
                return (String::new(), self.total);
            }
            let text = String::from_utf8_lossy(&bytes[start..]);
            let size = header.len() + text.len();
            if size <= self.limit {
                return (header + &text, omitted);
            }
            // Too long: the header took room, or replacement characters
            // (3 bytes for 1 invalid byte) grew the text. Drop the excess
            // from the front, then any continuation bytes of a character
            // the cut split, so the top shows no stray U+FFFD.
            // Valid text: drop exactly the excess. Otherwise a raw byte
            // renders as 1 to 3 bytes; dropping a third of the excess (at
            // least one byte) never drops more than needed and converges in
            // a few rounds.
            let excess = size - self.limit;
            let step = match text {
                Cow::Borrowed(_) => excess,
                Cow::Owned(_) => excess.div_ceil(3),
            };
            start = (start + step).min(bytes.len());
            let mut skipped = 0;
            while skipped < 3 && start < bytes.len() && (0x80..0xC0).contains(&bytes[start]) {
                start += 1;
                skipped += 1;
            }
        }
    }
}

/// `1.9 GiB`, `12.0 KiB`, `17 bytes`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_under_the_limit() {
        let mut t = Tail::new(16);
        t.push(b"hello ");
        t.push(b"world");
        assert_eq!(t.render(), ("hello world".to_string(), 0));
        assert_eq!(t.total(), 11);
    }

    #[test]
    fn keeps_the_last_bytes_across_wraps() {
        // Compare with a naive model over many chunk sizes.
        for chunk in 1..40 {
            let mut t = Tail::new(64);
            let mut all = Vec::new();
            for i in 0..50u8 {
                let data: Vec<u8> = (0..chunk).map(|j| b'a' + (i + j as u8) % 26).collect();
                t.push(&data);
                all.extend_from_slice(&data);
            }
            let expect = &all[all.len().saturating_sub(64)..];
            assert_eq!(t.bytes(), expect, "chunk {chunk}");
            assert_eq!(t.total(), all.len() as u64);
        }
    }

    #[test]
    fn says_how_much_was_dropped_and_fits_the_limit() {
        let mut t = Tail::new(64);
        for _ in 0..1000 {
            t.push(b"0123456789");
        }
        let (text, omitted) = t.render();
        assert!(text.len() <= 64, "{}", text.len());
        assert!(text.starts_with("[... 9.7 KiB omitted ...]\n"), "{text}");
        assert_eq!(
            omitted + (text.len() - text.find('\n').unwrap() - 1) as u64,
            10_000
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_and_still_fits() {
        let mut t = Tail::new(32);
        t.push(&[0xFF; 100]);
        let (text, _) = t.render();
        assert!(text.len() <= 32, "{}", text.len());
        assert!(text.contains('\u{FFFD}'));
    }

    #[test]
    fn a_split_character_at_the_cut_is_not_shown() {
        // "é" is C3 A9. With a 64-byte limit and a 27-byte header the text
        // keeps the last 37 bytes, so the cut lands between C3 and A9.
        let mut t = Tail::new(64);
        let mut data = "a".repeat(100);
        data.push('é');
        data.push_str(&"x".repeat(36));
        t.push(data.as_bytes());
        let (text, omitted) = t.render();
        assert_eq!(
            text,
            format!("[... 102 bytes omitted ...]\n{}", "x".repeat(36))
        );
        assert_eq!(omitted, 102);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(17), "17 bytes");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(2_040_109_465), "1.9 GiB");
    }
}
