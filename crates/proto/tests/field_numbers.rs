//! The wire-compatibility check: every `message.field = number` in `proto/fields.lock` must still
//! hold, and every field of the contract must be in the lock. Adding a field means adding its line;
//! changing or reusing a number fails here.

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorSet};

fn collect(prefix: &str, msg: &DescriptorProto, out: &mut BTreeMap<String, String>) {
    let name = format!("{prefix}.{}", msg.name());
    for f in &msg.field {
        out.insert(format!("{name}.{}", f.name()), format!("{} {:?}", f.number(), f.r#type()));
    }
    for nested in &msg.nested_type {
        if nested.options.as_ref().is_some_and(|o| o.map_entry()) {
            continue;
        }
        collect(&name, nested, out);
    }
}

fn current_fields() -> BTreeMap<String, String> {
    let fds = FileDescriptorSet::decode(shopmind_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut out = BTreeMap::new();
    for file in fds.file.iter().filter(|f| f.package() == "shopmind.v1") {
        for msg in &file.message_type {
            collect(file.package(), msg, &mut out);
        }
        for e in &file.enum_type {
            for v in &e.value {
                out.insert(format!("{}.{}.{}", file.package(), e.name(), v.name()), v.number().to_string());
            }
        }
    }
    out
}

/// What breaks wire compatibility (changed or removed numbers) and what is new (not locked yet).
fn compare(
    locked: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
) -> (Vec<String>, Vec<String>) {
    let changed = locked
        .iter()
        .filter_map(|(k, v)| match current.get(k) {
            Some(now) if now == v => None,
            Some(now) => Some(format!("{k}: locked as {v}, now {now}")),
            None => Some(format!("{k}: locked as {v}, now removed (reserve its number instead)")),
        })
        .collect();
    let added =
        current.iter().filter(|(k, _)| !locked.contains_key(*k)).map(|(k, v)| format!("{k} = {v}")).collect();
    (changed, added)
}

fn read_lock() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/fields.lock");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = ").map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

#[test]
fn field_numbers_match_the_lock() {
    let (changed, added) = compare(&read_lock(), &current_fields());
    assert!(changed.is_empty(), "wire-incompatible changes:\n{}", changed.join("\n"));
    assert!(
        added.is_empty(),
        "new fields are not in proto/fields.lock yet; append these lines:\n{}",
        added.join("\n")
    );
}

#[test]
fn renumbered_removed_and_new_fields_are_detected() {
    let locked = current_fields();
    assert!(locked.contains_key("shopmind.v1.Event.user_id"), "the check must see Event.user_id");
    let mut current = locked.clone();
    current.insert("shopmind.v1.Event.user_id".into(), "99 String".into());
    current.remove("shopmind.v1.Event.session_id");
    current.insert("shopmind.v1.Event.brand_new".into(), "98 String".into());
    let (changed, added) = compare(&locked, &current);
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert_eq!(added, vec!["shopmind.v1.Event.brand_new = 98 String".to_string()]);
}
