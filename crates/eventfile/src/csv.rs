//! A small RFC 4180 reader: comma-separated fields; a field in double quotes may hold commas,
//! line breaks and doubled quotes (`""` for one `"`). Records are read one at a time.

use std::io::{self, BufRead};

use crate::lines::{LineReader, MAX_RECORD_BYTES};

/// One record: the line it starts on and its fields, or what is wrong with it.
pub(crate) struct CsvRecord {
    pub line: usize,
    pub fields: Result<Vec<String>, String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted field: either the closing quote or the first of a doubled one.
    QuoteInQuoted,
}

pub(crate) struct CsvReader<R> {
    lines: LineReader<R>,
    state: State,
    field: String,
    fields: Vec<String>,
    /// Line where the record being read started; `None` between records.
    start: Option<usize>,
    bytes: usize,
    first: bool,
}

impl<R: BufRead> CsvReader<R> {
    pub fn new(reader: R) -> Self {
        Self {
            lines: LineReader::new(reader, MAX_RECORD_BYTES),
            state: State::FieldStart,
            field: String::new(),
            fields: Vec::new(),
            start: None,
            bytes: 0,
            first: true,
        }
    }

    /// The number of the last physical line read.
    pub fn line_no(&self) -> usize {
        self.lines.line_no()
    }

    fn reset(&mut self) {
        self.state = State::FieldStart;
        self.field.clear();
        self.fields.clear();
        self.start = None;
        self.bytes = 0;
    }

    fn fail(&mut self, line: usize, reason: String) -> Option<CsvRecord> {
        self.reset();
        Some(CsvRecord { line, fields: Err(reason) })
    }

    /// The next record; blank lines between records are skipped. `Ok(None)` at the end.
    pub fn next_record(&mut self) -> io::Result<Option<CsvRecord>> {
        loop {
            let Some(line) = self.lines.next_line()? else {
                return Ok(match self.start {
                    Some(start) => {
                        self.fail(start, "unterminated quoted field at the end of the file".into())
                    }
                    None => None,
                });
            };
            let mut text = match line.text {
                Ok(t) => t,
                Err(reason) => {
                    let at = self.start.unwrap_or(line.no);
                    return Ok(self.fail(at, format!("line {} is {reason}", line.no)));
                }
            };
            if self.first {
                self.first = false;
                if let Some(rest) = text.strip_prefix('\u{feff}') {
                    text = rest.to_owned();
                }
            }
            let start = match self.start {
                Some(s) => s,
                None if text.is_empty() => continue,
                None => {
                    self.start = Some(line.no);
                    line.no
                }
            };
            self.bytes += text.len() + line.terminator.len();
            if self.bytes > MAX_RECORD_BYTES {
                return Ok(self.fail(start, format!("record longer than {MAX_RECORD_BYTES} bytes")));
            }
            match self.feed(&text, line.terminator) {
                Err(reason) => {
                    let reason =
                        if line.no == start { reason } else { format!("{reason} (on line {})", line.no) };
                    return Ok(self.fail(start, reason));
                }
                Ok(false) => continue,
                Ok(true) => {
                    let fields = std::mem::take(&mut self.fields);
                    self.reset();
                    return Ok(Some(CsvRecord { line: start, fields: Ok(fields) }));
                }
            }
        }
    }

    /// Feeds one physical line; `Ok(true)` when it completed the record.
    fn feed(&mut self, text: &str, terminator: &str) -> Result<bool, String> {
        for (i, c) in text.chars().enumerate() {
            let column = i + 1;
            self.state = match (self.state, c) {
                (State::FieldStart, '"') => State::Quoted,
                (State::FieldStart | State::Unquoted | State::QuoteInQuoted, ',') => {
                    self.fields.push(std::mem::take(&mut self.field));
                    State::FieldStart
                }
                (State::Unquoted, '"') => {
                    return Err(format!(
                        "column {column}: '\"' inside an unquoted field (quote the whole field and double the quotes in it)"
                    ));
                }
                (State::FieldStart | State::Unquoted, c) => {
                    self.field.push(c);
                    State::Unquoted
                }
                (State::Quoted, '"') => State::QuoteInQuoted,
                (State::Quoted, c) => {
                    self.field.push(c);
                    State::Quoted
                }
                (State::QuoteInQuoted, '"') => {
                    self.field.push('"');
                    State::Quoted
                }
                (State::QuoteInQuoted, c) => {
                    return Err(format!(
                        "column {column}: {c:?} after a closing quote (expected ',' or the end of the line)"
                    ));
                }
            };
        }
        if self.state == State::Quoted {
            // A line break inside a quoted field is part of the field.
            self.field.push_str(terminator);
            return Ok(false);
        }
        self.fields.push(std::mem::take(&mut self.field));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn records(input: &str) -> Vec<(usize, Result<Vec<String>, String>)> {
        let mut r = CsvReader::new(input.as_bytes());
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push((rec.line, rec.fields));
        }
        out
    }

    fn ok(fields: &[&str]) -> Result<Vec<String>, String> {
        Ok(fields.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn quoted_fields_hold_commas_line_breaks_and_doubled_quotes() {
        let input = "a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\n2,\"two\nlines\",\n\n3,,\"\"\n";
        assert_eq!(
            records(input),
            vec![
                (1, ok(&["a", "b", "c"])),
                (2, ok(&["1", "x, y", "say \"hi\""])),
                (3, ok(&["2", "two\nlines", ""])),
                (6, ok(&["3", "", ""])),
            ]
        );
    }

    #[test]
    fn a_byte_order_mark_and_a_missing_final_newline_are_fine() {
        assert_eq!(records("\u{feff}a,b\n1,2"), vec![(1, ok(&["a", "b"])), (2, ok(&["1", "2"]))]);
    }

    #[test]
    fn stray_quotes_are_reported_and_reading_goes_on() {
        let got = records("a,b\n1,x\"y\"\n2,\"ok\"z\n3,4\n5,\"never closed\n");
        assert_eq!(got[0], (1, ok(&["a", "b"])));
        assert_eq!(got[1].0, 2);
        assert!(got[1].1.as_ref().unwrap_err().contains("inside an unquoted field"), "{:?}", got[1]);
        assert_eq!(got[2].0, 3);
        assert!(got[2].1.as_ref().unwrap_err().contains("after a closing quote"), "{:?}", got[2]);
        assert_eq!(got[3], (4, ok(&["3", "4"])));
        assert_eq!(got[4].0, 5);
        assert!(got[4].1.as_ref().unwrap_err().contains("unterminated"), "{:?}", got[4]);
    }
}
