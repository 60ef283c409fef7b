//! README.md's API table must list exactly the RPCs of the contract: every method of every
//! `shopmind.v1` service once, as `Service/Method`, with its request and response types (and
//! `stream` where a side streams), in the order of the .proto files. The expected rows are
//! derived from the committed descriptor set (`FILE_DESCRIPTOR_SET`, which `tests/codegen.rs`
//! keeps equal to `proto/`), so a method added to the proto fails here until README.md names it.

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use prost_types::FileDescriptorSet;

const PACKAGE: &str = "shopmind.v1";
/// The table is the first one under this heading whose header row starts with `| RPC |`.
const HEADING: &str = "## The API";
const HEADER: [&str; 3] = ["RPC", "request → response", "what it does"];

/// One RPC: `Service/Method` and its `request → response` cell.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rpc {
    name: String,
    signature: String,
}

/// A message type as the table writes it: short within the package, fully qualified outside.
fn type_name(full: &str) -> String {
    let full = full.trim_start_matches('.');
    full.strip_prefix(&format!("{PACKAGE}.")).unwrap_or(full).to_string()
}

fn rpcs_of_contract() -> Vec<Rpc> {
    let fds = FileDescriptorSet::decode(shopmind_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut out = Vec::new();
    for file in fds.file.iter().filter(|f| f.package() == PACKAGE) {
        for service in &file.service {
            for method in &service.method {
                let side = |streams: bool, ty: &str| {
                    let ty = type_name(ty);
                    if streams { format!("`stream {ty}`") } else { format!("`{ty}`") }
                };
                out.push(Rpc {
                    name: format!("{}/{}", service.name(), method.name()),
                    signature: format!(
                        "{} → {}",
                        side(method.client_streaming(), method.input_type()),
                        side(method.server_streaming(), method.output_type())
                    ),
                });
            }
        }
    }
    out
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// The header and the rows of README.md's API table, or why it was not found.
fn table_of_readme(readme: &str) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let section = readme
        .split_once(&format!("\n{HEADING}\n"))
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .ok_or_else(|| format!("README.md has no `{HEADING}` section"))?;
    let mut lines = section.lines().skip_while(|l| !l.trim_start().starts_with("| RPC |"));
    let header =
        cells(lines.next().ok_or("the API section has no table whose header starts with `| RPC |`")?);
    let rows = lines
        .skip(1) // the |---| separator
        .take_while(|l| l.trim_start().starts_with('|'))
        .map(cells)
        .collect();
    Ok((header, rows))
}

/// Every difference between the README's table and the contract, one line each.
fn differences(readme: &str, contract: &[Rpc]) -> Vec<String> {
    let (header, rows) = match table_of_readme(readme) {
        Ok(table) => table,
        Err(why) => return vec![why],
    };
    let mut problems = Vec::new();
    if header != HEADER {
        problems.push(format!("the header is {header:?}, expected {HEADER:?}"));
    }
    let by_method: BTreeMap<&str, Vec<&Rpc>> = contract.iter().fold(BTreeMap::new(), |mut m, rpc| {
        let method = rpc.name.rsplit('/').next().unwrap_or(&rpc.name);
        m.entry(method).or_default().push(rpc);
        m
    });
    let mut listed: Vec<String> = Vec::new();
    for row in &rows {
        let cell = row.first().map(|c| c.trim_matches('`')).unwrap_or_default();
        let rpc = match contract.iter().find(|r| r.name == cell) {
            Some(rpc) => rpc,
            None => match by_method.get(cell).map(Vec::as_slice) {
                Some([only]) => {
                    problems.push(format!("row `{cell}`: write it as `{}`", only.name));
                    only
                }
                _ => {
                    problems.push(format!("row `{cell}`: no such RPC in {PACKAGE}"));
                    continue;
                }
            },
        };
        if listed.contains(&rpc.name) {
            problems.push(format!("{} is listed twice", rpc.name));
            continue;
        }
        listed.push(rpc.name.clone());
        match row.get(1) {
            Some(sig) if *sig == rpc.signature => {}
            Some(sig) if header.get(1).map(String::as_str) == Some(HEADER[1]) => {
                problems.push(format!("{}: {sig}, expected {}", rpc.name, rpc.signature));
            }
            _ => {}
        }
        if row.len() != HEADER.len() || row.last().is_none_or(|what| what.is_empty()) {
            problems.push(format!(
                "{}: the row needs {} cells, the last saying what it does",
                rpc.name,
                HEADER.len()
            ));
        }
    }
    for rpc in contract.iter().filter(|r| !listed.contains(&r.name)) {
        problems.push(format!("{} is missing: | `{}` | {} | ... |", rpc.name, rpc.name, rpc.signature));
    }
    let in_order: Vec<&String> = contract.iter().map(|r| &r.name).filter(|n| listed.contains(n)).collect();
    if problems.is_empty() && in_order != listed.iter().collect::<Vec<_>>() {
        problems.push(format!("the rows are not in the order of the .proto files: {in_order:?}"));
    }
    problems
}

#[test]
fn readme_api_table_lists_every_rpc_of_the_contract_once() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let contract = rpcs_of_contract();
    assert!(contract.len() >= 2, "the descriptor set has no {PACKAGE} services");
    let problems = differences(&readme, &contract);
    assert!(
        problems.is_empty(),
        "README.md's API table (`{HEADING}`) does not match proto/shopmind/v1:\n  {}",
        problems.join("\n  ")
    );
}

/// The check itself: a table with a duplicate, a missing method and a wrong type is refused
/// with one line for each.
#[test]
fn differences_name_duplicates_missing_rpcs_and_wrong_types() {
    let contract = vec![
        Rpc { name: "Gateway/A".into(), signature: "`AReq` → `AResp`".into() },
        Rpc { name: "Gateway/B".into(), signature: "`stream B` → `BResp`".into() },
        Rpc { name: "Admin/C".into(), signature: "`CReq` → `CResp`".into() },
    ];
    let readme = "intro\n## The API\n\ntext\n\n| RPC | request → response | what it does |\n|---|---|---|\n\
                  | `Gateway/A` | `AReq` → `AResp` | a |\n| `Gateway/A` | `AReq` → `AResp` | a again |\n\
                  | `Admin/C` | `CReq` → `Other` | c |\n\n## Next\n";
    let problems = differences(readme, &contract);
    assert_eq!(
        problems,
        vec![
            "Gateway/A is listed twice".to_string(),
            "Admin/C: `CReq` → `Other`, expected `CReq` → `CResp`".to_string(),
            "Gateway/B is missing: | `Gateway/B` | `stream B` → `BResp` | ... |".to_string(),
        ]
    );
    let good = "## The API\n| RPC | request → response | what it does |\n|---|---|---|\n\
                | `Gateway/A` | `AReq` → `AResp` | a |\n| `Gateway/B` | `stream B` → `BResp` | b |\n\
                | `Admin/C` | `CReq` → `CResp` | c |\n";
    assert_eq!(differences(&format!("\n{good}"), &contract), Vec::<String>::new());
}
