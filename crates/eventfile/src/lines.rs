//! Physical lines of a file, read with bounded memory.

use std::io::{self, BufRead};

/// Longest line (JSON Lines) or record (CSV) accepted, in bytes. Longer ones are skipped and
/// reported, so one runaway line cannot exhaust memory.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// One physical line, without its terminator.
pub(crate) struct Line {
    /// 1-based line number in the file.
    pub no: usize,
    /// The text, or why it cannot be used (too long, not UTF-8).
    pub text: Result<String, String>,
    /// `"\n"`, `"\r\n"` or `""` (the last line of a file without a final newline).
    pub terminator: &'static str,
}

pub(crate) struct LineReader<R> {
    reader: R,
    line_no: usize,
    max: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(reader: R, max: usize) -> Self {
        Self { reader, line_no: 0, max, buf: Vec::new() }
    }

    /// The number of the line read last.
    pub fn line_no(&self) -> usize {
        self.line_no
    }

    /// The next line; `Ok(None)` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        self.buf.clear();
        let mut overflow = false;
        let mut read_any = false;
        let mut newline = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            read_any = true;
            let (chunk_len, found) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if !overflow {
                if self.buf.len() + chunk_len > self.max + 2 {
                    // Over the limit (allowing for a "\r\n" terminator): keep nothing more.
                    overflow = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&available[..chunk_len]);
                }
            }
            self.reader.consume(chunk_len);
            if found {
                newline = true;
                break;
            }
        }
        if !read_any {
            return Ok(None);
        }
        self.line_no += 1;
        let no = self.line_no;
        if overflow {
            return Ok(Some(Line {
                no,
                text: Err(format!("longer than {} bytes", self.max)),
                terminator: if newline { "\n" } else { "" },
            }));
        }
        let mut terminator = "";
        if newline {
            self.buf.pop();
            terminator = "\n";
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
                terminator = "\r\n";
            }
        }
        let text = match std::str::from_utf8(&self.buf) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(format!("not valid UTF-8 (at byte {})", e.valid_up_to())),
        };
        Ok(Some(Line { no, text, terminator }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn all(input: &[u8], max: usize) -> Vec<(usize, Result<String, String>, &'static str)> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push((l.no, l.text, l.terminator));
        }
        out
    }

    #[test]
    fn splits_on_lf_and_crlf_and_keeps_a_last_line_without_newline() {
        let got = all(b"a\r\nb\n\nc", 100);
        assert_eq!(
            got,
            vec![
                (1, Ok("a".into()), "\r\n"),
                (2, Ok("b".into()), "\n"),
                (3, Ok(String::new()), "\n"),
                (4, Ok("c".into()), "")
            ]
        );
    }

    #[test]
    fn overlong_and_non_utf8_lines_are_reported_and_reading_goes_on() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\n\xff\xfe\nok\n");
        let got = all(&input, 10);
        assert_eq!(got[0].0, 1);
        assert!(got[0].1.as_ref().unwrap_err().contains("longer than 10 bytes"));
        assert!(got[1].1.as_ref().unwrap_err().contains("UTF-8"));
        assert_eq!(got[2], (3, Ok("ok".into()), "\n"));
    }
}
