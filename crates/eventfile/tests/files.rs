//! The file schema end to end: every kind round trips, CSV quoting and order rows, times, money,
//! errors with line numbers, the examples of docs/FILES.md, and a large file.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use prost_types::Timestamp;
use shopmind_domain::{UnixMillis, ValidationPolicy};
use shopmind_eventfile::{FileError, Format, read, read_events, to_jsonl, write_jsonl};
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::event::Payload as P;

const T0: i64 = 1_795_867_200_000; // 2026-11-28T12:00:00Z

fn ev(id: &str, user: &str, payload: P) -> pb::Event {
    pb::Event {
        event_id: id.into(),
        tenant: "acme".into(),
        occurred_at: Some(UnixMillis(T0 + 123).to_proto()),
        user_id: user.into(),
        session_id: "s-1".into(),
        payload: Some(payload),
    }
}

fn eur(minor: i64) -> Option<pb::Money> {
    Some(pb::Money { amount_minor: minor, currency: "EUR".into() })
}

fn one_of_each_kind() -> Vec<pb::Event> {
    let attributes: HashMap<String, String> =
        [("color".to_string(), "red".to_string()), ("size".into(), "42".into())].into();
    vec![
        ev(
            "e1",
            "alice",
            P::ProductViewed(pb::ProductViewed { item_id: "sku-1".into(), source: "search".into() }),
        ),
        ev(
            "e2",
            "alice",
            P::AddedToCart(pb::AddedToCart { item_id: "sku-1".into(), quantity: 2, unit_price: eur(1999) }),
        ),
        ev(
            "e2b",
            "alice",
            P::AddedToCart(pb::AddedToCart { item_id: "sku-1".into(), quantity: 1, unit_price: None }),
        ),
        ev("e3", "alice", P::RemovedFromCart(pb::RemovedFromCart { item_id: "sku-1".into(), quantity: 1 })),
        ev(
            "e4",
            "alice",
            P::OrderPlaced(pb::OrderPlaced {
                order_id: "o-1".into(),
                lines: vec![
                    pb::OrderLine { item_id: "sku-1".into(), quantity: 1, unit_price: eur(1999) },
                    pb::OrderLine {
                        item_id: "sku-2".into(),
                        quantity: 3,
                        unit_price: Some(pb::Money { amount_minor: 500, currency: "JPY".into() }),
                    },
                    pb::OrderLine { item_id: "sku-3".into(), quantity: 1, unit_price: None },
                ],
            }),
        ),
        ev(
            "e5",
            "alice",
            P::OrderStatusChanged(pb::OrderStatusChanged {
                order_id: "o-1".into(),
                status: pb::OrderStatus::Shipped as i32,
            }),
        ),
        ev(
            "e6",
            "bob",
            P::SearchPerformed(pb::SearchPerformed {
                query: "red \"shoes\", size 42".into(),
                result_item_ids: vec!["sku-7".into(), "sku-9".into()],
            }),
        ),
        ev(
            "e7",
            "bob",
            P::SupportMessage(pb::SupportMessage {
                conversation_id: "c-1".into(),
                author_role: pb::AuthorRole::Agent as i32,
                author_id: "agent-7".into(),
                text: "Hello,\nyour order \"o-1\" ships today. ✓".into(),
            }),
        ),
        ev(
            "e7b",
            "bob",
            P::SupportMessage(pb::SupportMessage {
                conversation_id: "c-1".into(),
                author_role: pb::AuthorRole::Customer as i32,
                author_id: String::new(),
                text: "thanks".into(),
            }),
        ),
        ev(
            "e8",
            "",
            P::ItemUpserted(pb::ItemUpserted {
                item_id: "sku-1".into(),
                title: "Trail Runner".into(),
                category_path: vec!["Shoes".into(), "Running".into()],
                price: eur(8900),
                attributes,
            }),
        ),
        ev(
            "e9",
            "",
            P::InventoryChanged(pb::InventoryChanged { item_id: "sku-1".into(), quantity_available: 0 }),
        ),
    ]
}

fn read_str(text: &str, format: Format) -> Vec<Result<(usize, pb::Event), FileError>> {
    read(text.as_bytes(), format).collect()
}

fn ok_events(text: &str, format: Format) -> Vec<pb::Event> {
    read_str(text, format).into_iter().map(|r| r.unwrap().1).collect()
}

fn errors(items: &[Result<(usize, pb::Event), FileError>]) -> Vec<(usize, String)> {
    items.iter().filter_map(|r| r.as_ref().err()).map(|e| (e.line().unwrap(), e.to_string())).collect()
}

fn payload(e: &pb::Event) -> &P {
    e.payload.as_ref().unwrap()
}

#[test]
fn every_kind_round_trips_through_json_lines() {
    let events = one_of_each_kind();
    let policy = ValidationPolicy::ingest(UnixMillis(T0));
    let mut buf = Vec::new();
    for e in &events {
        shopmind_domain::Event::from_proto(e, None, &policy).unwrap();
        write_jsonl(&mut buf, e).unwrap();
    }
    let text = String::from_utf8(buf).unwrap();
    assert_eq!(text.lines().count(), events.len(), "one line per event:\n{text}");
    let back = read_str(&text, Format::JsonLines);
    for (i, (r, want)) in back.into_iter().zip(&events).enumerate() {
        let (line, got) = r.unwrap();
        assert_eq!(line, i + 1);
        assert_eq!(&got, want, "line {}: {}", i + 1, text.lines().nth(i).unwrap());
    }
    // The format people see: readable field order, major units, RFC 3339.
    assert_eq!(
        to_jsonl(&events[1]).unwrap(),
        r#"{"event_id":"e2","tenant":"acme","occurred_at":"2026-11-28T12:00:00.123Z","user_id":"alice","session_id":"s-1","type":"added_to_cart","item_id":"sku-1","quantity":2,"price":"19.99","currency":"EUR"}"#
    );
}

#[test]
fn events_the_schema_cannot_hold_are_not_written() {
    let mut none = one_of_each_kind().remove(0);
    none.payload = None;
    assert!(matches!(to_jsonl(&none), Err(FileError::Unwritable(_))));
    let bad_status =
        ev("x", "u", P::OrderStatusChanged(pb::OrderStatusChanged { order_id: "o".into(), status: 42 }));
    assert!(matches!(to_jsonl(&bad_status), Err(FileError::Unwritable(_))));
    let no_currency = ev(
        "x",
        "u",
        P::AddedToCart(pb::AddedToCart {
            item_id: "i".into(),
            quantity: 1,
            unit_price: Some(pb::Money { amount_minor: 1, currency: String::new() }),
        }),
    );
    assert!(matches!(to_jsonl(&no_currency), Err(FileError::Unwritable(_))));
}

#[test]
fn times_are_rfc3339_or_unix_milliseconds() {
    let lines = [
        r#"{"type":"product_viewed","occurred_at":"2026-11-28T12:00:00Z"}"#,
        r#"{"type":"product_viewed","occurred_at":"2026-11-28T13:00:00+01:00"}"#,
        r#"{"type":"product_viewed","occurred_at":1795867200000}"#,
        r#"{"type":"product_viewed","occurred_at":"1795867200000"}"#,
        r#"{"type":"product_viewed","occurred_at":"2026-11-28T12:00:00.250Z"}"#,
        r#"{"type":"product_viewed","occurred_at":1795867200250}"#,
        r#"{"type":"product_viewed"}"#,
    ];
    let got: Vec<Option<Timestamp>> =
        ok_events(&lines.join("\n"), Format::JsonLines).into_iter().map(|e| e.occurred_at).collect();
    let whole = Some(Timestamp { seconds: T0 / 1000, nanos: 0 });
    let quarter = Some(Timestamp { seconds: T0 / 1000, nanos: 250_000_000 });
    assert_eq!(got, vec![whole, whole, whole, whole, quarter, quarter, None]);

    let bad = read_str(
        "{\"type\":\"product_viewed\",\"occurred_at\":\"28.11.2026\"}\n{\"type\":\"product_viewed\",\"occurred_at\":1.5}",
        Format::JsonLines,
    );
    let errs = errors(&bad);
    assert_eq!(errs.len(), 2);
    assert!(errs[0].1.contains("RFC 3339"), "{errs:?}");
}

#[test]
fn prices_in_major_units_become_minor_units() {
    let text = [
        r#"{"type":"added_to_cart","price":"19.99","currency":"EUR"}"#,
        r#"{"type":"added_to_cart","price":19.99,"currency":"EUR"}"#,
        r#"{"type":"added_to_cart","price":20,"currency":"USD"}"#,
        r#"{"type":"added_to_cart","price":"500","currency":"JPY"}"#,
        r#"{"type":"added_to_cart","price":"1.234","currency":"KWD"}"#,
        r#"{"type":"added_to_cart","price":"19.990","currency":"EUR"}"#,
    ]
    .join("\n");
    let got: Vec<(i64, String)> = ok_events(&text, Format::JsonLines)
        .iter()
        .map(|e| match payload(e) {
            P::AddedToCart(a) => {
                let m = a.unit_price.clone().unwrap();
                (m.amount_minor, m.currency)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    let want = [(1999, "EUR"), (1999, "EUR"), (2000, "USD"), (500, "JPY"), (1234, "KWD"), (1999, "EUR")];
    assert_eq!(got, want.map(|(m, c)| (m, c.to_string())));

    let bad = read_str(
        &[
            r#"{"type":"added_to_cart","price":"19.999","currency":"EUR"}"#,
            r#"{"type":"added_to_cart","price":"19.99"}"#,
            r#"{"type":"added_to_cart","price":"19,99","currency":"EUR"}"#,
            r#"{"type":"added_to_cart","price":"5.5","currency":"JPY"}"#,
        ]
        .join("\n"),
        Format::JsonLines,
    );
    let errs = errors(&bad);
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert!(errs[0].1.contains("more than 2 decimal places"), "{errs:?}");
    assert!(errs[1].1.contains("needs a `currency`"), "{errs:?}");
    assert!(errs[2].1.contains("not a decimal amount"), "{errs:?}");
    assert!(errs[3].1.contains("more than 0 decimal places"), "{errs:?}");
}

#[test]
fn bad_lines_are_reported_with_their_line_and_reading_goes_on() {
    let text = [
        r#"{"event_id":"ok-1","type":"product_viewed","item_id":"a"}"#,
        r#"{"event_id":"broken","type":"product_viewed","#,
        r#""just a string""#,
        r#"{"event_id":"x","type":"product_view","item_id":"a"}"#,
        "",
        r#"{"event_id":"x","type":"product_viewed","itemid":"a"}"#,
        r#"{"event_id":"x","type":"product_viewed","item_id":"a","query":"q"}"#,
        r#"{"event_id":"x","type":"added_to_cart","item_id":"a","quantity":"two"}"#,
        r#"{"event_id":"x","type":"added_to_cart","item_id":"a","quantity":-1}"#,
        r#"{"event_id":"x","type":"order_placed","order_id":"o","lines":[{"item_id":"a"},{"item_id":"b","quantity":1.5}]}"#,
        r#"{"event_id":"x","type":"order_status_changed","order_id":"o","status":"lost"}"#,
        r#"{"event_id":"x","type":"inventory_changed","item_id":"a"}"#,
        r#"{"event_id":"x","item_id":"a"}"#,
        "{\"event_id\":\"ok-2\",\"type\":\"product_viewed\",\"item_id\":\"b\",\"source\":null,\"query\":\"\"}",
    ]
    .join("\n");
    let items = read_str(&text, Format::JsonLines);
    let ok: Vec<(usize, String)> =
        items.iter().filter_map(|r| r.as_ref().ok()).map(|(l, e)| (*l, e.event_id.clone())).collect();
    assert_eq!(ok, vec![(1, "ok-1".to_string()), (14, "ok-2".into())]);
    let errs = errors(&items);
    let lines: Vec<usize> = errs.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13], "{errs:#?}");
    let expect = [
        "line 2: invalid JSON",
        "line 3: expected a JSON object",
        "line 4: unknown `type` \"product_view\"",
        "line 6: unknown field `itemid`",
        "line 7: `query` does not apply to product_viewed events",
        "line 8: `quantity` must be an integer",
        "line 9: `quantity` must be a whole number",
        "line 10: lines[1]: `quantity` must be an integer",
        "line 11: unknown `status` \"lost\"",
        "line 12: `available` (the quantity in stock) is required",
        "line 13: missing `type`",
    ];
    for ((_, got), want) in errs.iter().zip(expect) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
    assert!(items.iter().all(|r| r.as_ref().err().is_none_or(FileError::is_record_error)));
}

#[test]
fn csv_quoting_lists_attributes_and_order_rows() {
    let text = "\
event_id,tenant,occurred_at,user_id,type,item_id,quantity,price,currency,order_id,query,results,text,author,conversation_id,title,category,attr.color,attr.size,attributes
v1,acme,2026-11-28T12:00:00Z,alice,product_viewed,sku-1,,,,,,,,,,,,,,
s1,acme,1795867200000,bob,search_performed,,,,,,\"shoes, red \"\"sale\"\"\",sku-7  sku-9,,,,,,,,
m1,acme,1795867200000,bob,support_message,,,,,,,,\"line one,
line two \"\"quoted\"\"\",customer,c-1,,,,,
i1,acme,1795867200000,,item_upserted,sku-1,,89.00,EUR,,,,,,,\"Runner, \"\"Trail\"\"\",Shoes > Running,red,42,\"{\"\"brand\"\":\"\"acme\"\"}\"
o1,acme,1795867200000,alice,order_placed,sku-1,2,19.99,EUR,ord-1,,,,,,,,,,
o1,,,,order_placed,sku-2,,4.50,EUR,,,,,,,,,,,
o1,acme,,alice,order_placed,sku-3,1,,,ord-1,,,,,,,,,,
o2,acme,1795867200000,alice,order_placed,sku-1,1,1.00,EUR,ord-2,,,,,,,,,,
";
    let events = ok_events(text, Format::Csv);
    assert_eq!(
        events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        ["v1", "s1", "m1", "i1", "o1", "o2"]
    );
    match payload(&events[1]) {
        P::SearchPerformed(s) => {
            assert_eq!(s.query, "shoes, red \"sale\"");
            assert_eq!(s.result_item_ids, ["sku-7", "sku-9"]);
        }
        other => panic!("{other:?}"),
    }
    match payload(&events[2]) {
        P::SupportMessage(m) => {
            assert_eq!(m.text, "line one,\nline two \"quoted\"");
            assert_eq!(m.author_role, pb::AuthorRole::Customer as i32);
        }
        other => panic!("{other:?}"),
    }
    match payload(&events[3]) {
        P::ItemUpserted(i) => {
            assert_eq!(i.title, "Runner, \"Trail\"");
            assert_eq!(i.category_path, ["Shoes", "Running"]);
            assert_eq!(i.price, eur(8900));
            let mut attrs: Vec<(&str, &str)> =
                i.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            attrs.sort();
            assert_eq!(attrs, [("brand", "acme"), ("color", "red"), ("size", "42")]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(events[4].tenant, "acme");
    assert_eq!(events[4].user_id, "alice");
    match payload(&events[4]) {
        P::OrderPlaced(o) => {
            assert_eq!(o.order_id, "ord-1");
            let lines: Vec<(&str, u32, Option<i64>)> = o
                .lines
                .iter()
                .map(|l| (l.item_id.as_str(), l.quantity, l.unit_price.as_ref().map(|m| m.amount_minor)))
                .collect();
            assert_eq!(lines, [("sku-1", 2, Some(1999)), ("sku-2", 1, Some(450)), ("sku-3", 1, None)]);
        }
        other => panic!("{other:?}"),
    }
    let lines: Vec<usize> = read_str(text, Format::Csv).into_iter().map(|r| r.unwrap().0).collect();
    assert_eq!(lines, [2, 3, 4, 6, 7, 10], "an event's line is where its record starts");
}

#[test]
fn csv_errors_name_their_line_and_reading_goes_on() {
    let text = "\
event_id,user_id,type,item_id,quantity,price,currency,order_id
a,u,product_viewed,sku-1,,,,
b,u,product_viewed,sku\"1,,,,
c,u,product_viewed,sku-1,,,
d,u,order_placed,sku-1,1,1.00,EUR,o-1
d,v,order_placed,sku-2,1,1.00,EUR,o-1
d,u,order_placed,sku-3,x,1.00,EUR,o-1
e,u,order_placed,sku-1,1,1.00,EUR,o-2
e,u,order_placed,sku-2,many,1.00,EUR,o-2
f,u,product_viewed,sku-1,,9.99,EUR,
g,u,product_viewed,sku-2,,,,
";
    let items = read_str(text, Format::Csv);
    let ok: Vec<&str> =
        items.iter().filter_map(|r| r.as_ref().ok()).map(|(_, e)| e.event_id.as_str()).collect();
    assert_eq!(ok, ["a", "g"]);
    let errs = errors(&items);
    let lines: Vec<usize> = errs.iter().map(|e| e.0).collect();
    assert_eq!(lines, [3, 4, 6, 9, 10], "{errs:#?}");
    assert!(errs[0].1.contains("inside an unquoted field"), "{errs:?}");
    assert!(errs[1].1.contains("expected 8 fields as in the header, got 7"), "{errs:?}");
    assert!(errs[2].1.contains("continues order event \"d\" (line 5) but its `user_id` differs"), "{errs:?}");
    assert!(errs[3].1.contains("lines[1]: `quantity` must be an integer"), "{errs:?}");
    assert!(errs[4].1.contains("does not apply to product_viewed events"), "{errs:?}");
}

#[test]
fn a_bad_csv_header_stops_the_reading() {
    let items = read_str("event_id,type,colour\na,product_viewed,red\n", Format::Csv);
    assert_eq!(items.len(), 1);
    let err = items[0].as_ref().unwrap_err();
    assert!(matches!(err, FileError::Header { line: 1, .. }), "{err}");
    assert!(err.to_string().contains("unknown column \"colour\""), "{err}");
    let items = read_str("event_id,item_id\na,b\n", Format::Csv);
    assert!(items[0].as_ref().unwrap_err().to_string().contains("no `type` column"));
    assert!(read_str("", Format::Csv).is_empty());
}

/// The code blocks of docs/FILES.md are read as documented.
#[test]
fn the_examples_in_the_docs_are_valid() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/FILES.md")).unwrap();
    let block = |lang: &str| {
        let start = doc.find(&format!("```{lang}\n")).unwrap() + lang.len() + 4;
        let len = doc[start..].find("```").unwrap();
        doc[start..start + len].to_string()
    };
    let policy = ValidationPolicy::ingest(UnixMillis(T0 + 3_600_000));
    let jsonl = ok_events(&block("jsonl"), Format::JsonLines);
    let csv = ok_events(&block("csv"), Format::Csv);
    assert_eq!(jsonl.len(), 9);
    assert_eq!(csv.len(), 8);
    for e in jsonl.iter().chain(&csv) {
        shopmind_domain::Event::from_proto(e, None, &policy)
            .unwrap_or_else(|v| panic!("{}: {v}", e.event_id));
    }
    // The same events in both formats, where both have them.
    for c in &csv {
        let j = jsonl.iter().find(|j| j.event_id == c.event_id).unwrap();
        if c.event_id == "e7" {
            continue; // a different message in each
        }
        // The CSV has no session_id, source or size columns.
        let mut j = j.clone();
        j.session_id.clear();
        if let Some(P::ProductViewed(v)) = &mut j.payload {
            v.source.clear();
        }
        if let Some(P::ItemUpserted(i)) = &mut j.payload {
            i.attributes.retain(|k, _| k == "color");
        }
        assert_eq!(c, &j, "{}", c.event_id);
    }
}

#[test]
fn files_are_chosen_by_extension_and_a_large_file_streams() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("events.txt");
    std::fs::write(&unknown, "").unwrap();
    assert!(matches!(read_events(&unknown), Err(FileError::UnknownFormat { .. })));
    assert!(matches!(read_events(&dir.path().join("missing.jsonl")), Err(FileError::Open { .. })));

    let path = dir.path().join("big.ndjson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    const N: usize = 100_000;
    for i in 0..N {
        let e = ev(
            &format!("big-{i}"),
            &format!("user-{}", i % 1000),
            P::ProductViewed(pb::ProductViewed {
                item_id: format!("sku-{}", i % 777),
                source: String::new(),
            }),
        );
        write_jsonl(&mut out, &e).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let mut count = 0;
    for (i, r) in read_events(&path).unwrap().enumerate() {
        let (line, e) = r.unwrap();
        assert_eq!(line, i + 1);
        if i == N - 1 {
            assert_eq!(e.event_id, format!("big-{i}"));
        }
        count += 1;
    }
    assert_eq!(count, N);
}
