//! Events in files: JSON Lines and CSV with one flat, human-writable schema (docs/FILES.md).
//!
//! [`read_events`] streams a file (bounded memory: one record at a time, at most
//! [`MAX_RECORD_BYTES`] each) and yields each event with the line it starts on. A record that
//! cannot be read yields an error naming its line and the problem, and reading goes on.
//! [`write_jsonl`] writes an event in the same schema, so that `read(write(e)) == e`.
//!
//! Conversion stops at what the wire can hold: whether an event is *valid* is for
//! `shopmind_domain::Event::from_proto` to decide.

mod csv;
mod lines;
mod money;
mod schema;
mod write;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;
use shopmind_proto::v1 as pb;

pub use lines::MAX_RECORD_BYTES;
pub use money::{format_major, minor_unit_digits, parse_major};
pub use schema::{ATTRIBUTE_PREFIX, ENVELOPE_FIELDS, LINE_FIELDS, TYPES, is_known_field};
pub use write::{to_jsonl, write_jsonl};

use crate::csv::CsvReader;
use crate::lines::LineReader;
use crate::schema::{Fields, RawRecord, to_event};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("{}: unknown file type; expected .jsonl, .ndjson or .csv", path.display())]
    UnknownFormat { path: PathBuf },
    /// Reading failed; no more records follow.
    #[error("reading after line {line}: {source}")]
    Read { line: usize, source: io::Error },
    /// The CSV header is unusable; no records follow.
    #[error("line {line}: bad CSV header: {reason}")]
    Header { line: usize, reason: String },
    /// One record is unusable; reading goes on with the next.
    #[error("line {line}: {reason}")]
    Record { line: usize, reason: String },
    #[error("cannot write the event as a file record: {0}")]
    Unwritable(String),
    #[error("writing: {0}")]
    Write(#[source] io::Error),
}

impl FileError {
    /// The line the problem is on, where there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Read { line, .. } | Self::Header { line, .. } | Self::Record { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// Whether this error is about one record only, so reading goes on after it.
    pub fn is_record_error(&self) -> bool {
        matches!(self, Self::Record { .. })
    }
}

/// The file formats, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.jsonl` or `.ndjson`: one JSON object per line.
    JsonLines,
    /// `.csv`: a header row with the field names, then one row per event (per order line).
    Csv,
}

impl Format {
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" => Some(Self::JsonLines),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }
}

/// One item of [`Events`]: the line an event starts on and the event, or why a record (or the
/// file) could not be read.
pub type EventResult = Result<(usize, pb::Event), FileError>;

/// Opens `path` (format by extension) and streams its events.
pub fn read_events(path: &Path) -> Result<Events<BufReader<File>>, FileError> {
    let format =
        Format::from_path(path).ok_or_else(|| FileError::UnknownFormat { path: path.to_path_buf() })?;
    let file = File::open(path).map_err(|source| FileError::Open { path: path.to_path_buf(), source })?;
    Ok(Events::new(BufReader::with_capacity(256 * 1024, file), format))
}

/// The events of a file, one at a time.
pub struct Events<R> {
    inner: Inner<R>,
    done: bool,
}

enum Inner<R> {
    Jsonl(LineReader<R>),
    Csv(Box<CsvEvents<R>>),
}

impl<R: BufRead> Events<R> {
    pub fn new(reader: R, format: Format) -> Self {
        let inner = match format {
            Format::JsonLines => Inner::Jsonl(LineReader::new(reader, MAX_RECORD_BYTES)),
            Format::Csv => Inner::Csv(Box::new(CsvEvents::new(reader))),
        };
        Self { inner, done: false }
    }
}

impl<R: BufRead> Iterator for Events<R> {
    type Item = EventResult;

    fn next(&mut self) -> Option<EventResult> {
        if self.done {
            return None;
        }
        let item = match &mut self.inner {
            Inner::Jsonl(lines) => next_jsonl(lines),
            Inner::Csv(csv) => csv.next_event(),
        };
        match &item {
            None | Some(Err(FileError::Read { .. } | FileError::Header { .. })) => self.done = true,
            _ => {}
        }
        item
    }
}

fn record_error((line, reason): (usize, String)) -> FileError {
    FileError::Record { line, reason }
}

fn next_jsonl<R: BufRead>(lines: &mut LineReader<R>) -> Option<EventResult> {
    loop {
        let line = match lines.next_line() {
            Ok(Some(l)) => l,
            Ok(None) => return None,
            Err(source) => return Some(Err(FileError::Read { line: lines.line_no(), source })),
        };
        let no = line.no;
        let text = match line.text {
            Ok(t) => t,
            Err(reason) => {
                return Some(Err(FileError::Record { line: no, reason: format!("the line is {reason}") }));
            }
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        if text.trim().is_empty() {
            continue;
        }
        let fields = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Some(Err(FileError::Record { line: no, reason: "expected a JSON object".into() }));
            }
            Err(e) => {
                let reason = format!("invalid JSON: {}", schema::strip_position(&e));
                return Some(Err(FileError::Record { line: no, reason }));
            }
        };
        let rec = RawRecord { line: no, fields, line_rows: Vec::new() };
        return Some(to_event(&rec).map(|e| (no, e)).map_err(record_error));
    }
}

/// An order being assembled from consecutive CSV rows with the same `event_id`.
struct PendingOrder {
    event_id: String,
    /// The merged record, or the first problem found in one of its rows.
    record: Result<RawRecord, (usize, String)>,
}

struct CsvEvents<R> {
    reader: CsvReader<R>,
    header: Option<Vec<String>>,
    pending: Option<PendingOrder>,
    ready: VecDeque<EventResult>,
    eof: bool,
}

fn csv_header(fields: Vec<String>) -> Result<Vec<String>, String> {
    let columns: Vec<String> = fields.into_iter().map(|f| f.trim().to_owned()).collect();
    for (i, c) in columns.iter().enumerate() {
        if !schema::is_known_field(c) {
            return Err(format!("unknown column {c:?} (column {})", i + 1));
        }
        if columns[..i].contains(c) {
            return Err(format!("column {c:?} appears twice"));
        }
    }
    if !columns.iter().any(|c| c == "type") {
        return Err("no `type` column".into());
    }
    Ok(columns)
}

/// Whether a row is (part of) an order: its line fields become an entry of `lines`.
fn is_order_row(fields: &Fields) -> bool {
    fields.get("type").and_then(Value::as_str) == Some("order_placed") && !fields.contains_key("lines")
}

impl<R: BufRead> CsvEvents<R> {
    fn new(reader: R) -> Self {
        Self {
            reader: CsvReader::new(reader),
            header: None,
            pending: None,
            ready: VecDeque::new(),
            eof: false,
        }
    }

    fn flush_pending(&mut self) {
        if let Some(p) = self.pending.take() {
            let item = p.record.and_then(|rec| to_event(&rec).map(|e| (rec.line, e))).map_err(record_error);
            self.ready.push_back(item);
        }
    }

    fn next_event(&mut self) -> Option<EventResult> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.eof {
                self.flush_pending();
                return self.ready.pop_front();
            }
            let rec = match self.reader.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.eof = true;
                    continue;
                }
                Err(source) => {
                    self.flush_pending();
                    self.eof = true;
                    self.ready.push_back(Err(FileError::Read { line: self.reader.line_no(), source }));
                    continue;
                }
            };
            let cells = match rec.fields {
                Ok(cells) => cells,
                Err(reason) => {
                    self.flush_pending();
                    let err = if self.header.is_none() {
                        self.eof = true;
                        FileError::Header { line: rec.line, reason }
                    } else {
                        FileError::Record { line: rec.line, reason }
                    };
                    self.ready.push_back(Err(err));
                    continue;
                }
            };
            let Some(header) = &self.header else {
                match csv_header(cells) {
                    Ok(h) => self.header = Some(h),
                    Err(reason) => {
                        self.eof = true;
                        self.ready.push_back(Err(FileError::Header { line: rec.line, reason }));
                    }
                }
                continue;
            };
            if cells.len() != header.len() {
                let reason =
                    format!("expected {} fields as in the header, got {}", header.len(), cells.len());
                self.flush_pending();
                self.ready.push_back(Err(FileError::Record { line: rec.line, reason }));
                continue;
            }
            let fields: Fields = header
                .iter()
                .zip(cells)
                .filter(|(_, cell)| !cell.is_empty())
                .map(|(col, cell)| (col.clone(), Value::String(cell)))
                .collect();
            self.row(rec.line, fields);
        }
    }

    /// Takes one data row: a new event, or the next line of the order being assembled.
    fn row(&mut self, line: usize, mut fields: Fields) {
        if !is_order_row(&fields) {
            self.flush_pending();
            let rec = RawRecord { line, fields, line_rows: Vec::new() };
            self.ready.push_back(to_event(&rec).map(|e| (line, e)).map_err(record_error));
            return;
        }
        let event_id = fields.get("event_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut order_line = Fields::new();
        for key in LINE_FIELDS {
            if let Some(v) = fields.remove(key) {
                order_line.insert(key.to_owned(), v);
            }
        }
        let continues = !event_id.is_empty() && self.pending.as_ref().is_some_and(|p| p.event_id == event_id);
        if !continues {
            self.flush_pending();
            fields.insert("lines".into(), Value::Array(vec![Value::Object(order_line)]));
            let record = Ok(RawRecord { line, fields, line_rows: vec![line] });
            self.pending = Some(PendingOrder { event_id, record });
            return;
        }
        let Some(PendingOrder { record: Ok(order), .. }) = &mut self.pending else {
            // The order already has a problem; its remaining rows belong to it all the same.
            return;
        };
        // A continuation row repeats the order's fields or leaves them empty.
        let differing = fields.iter().find(|(k, v)| order.fields.get(*k) != Some(*v)).map(|(k, _)| k.clone());
        if let Some(key) = differing {
            let reason = format!(
                "this row continues order event {event_id:?} (line {}) but its `{key}` differs",
                order.line
            );
            if let Some(p) = &mut self.pending {
                p.record = Err((line, reason));
            }
            return;
        }
        if let Some(Value::Array(lines)) = order.fields.get_mut("lines") {
            lines.push(Value::Object(order_line));
        }
        order.line_rows.push(line);
    }
}

/// Reads events from any buffered reader.
pub fn read<R: BufRead>(reader: R, format: Format) -> Events<R> {
    Events::new(reader, format)
}
