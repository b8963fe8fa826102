//! How results look: one human rendering and one `--json` shape per result.
//!
//! Both renderings are built together from the same value, so they cannot drift apart,
//! and the JSON shapes are a contract scripts rely on (fields may be added, never
//! renamed); the tests below pin every field name. Values are shown as UTF-8 text;
//! anything else lossily, with a warning that points at `get --raw`, which writes the
//! bytes themselves (`value_io.rs`).

use std::io::{self, Write};

use ringkv::client::{GetResult, MapRead, SetRead, WriteResult, policy_of};
use ringkv::proto::{Key, RingInfo, StatusInfo};
use ringkv::{FieldRead, ReadValue};
use serde_json::{Map, Value, json};

/// A result ready to print: stdout gets the JSON or the human text, stderr the warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub json: Value,
    pub human: String,
    pub warnings: Vec<String>,
    /// Bytes written to stdout as they are instead of `human` (`get --raw`).
    pub raw: Option<Vec<u8>>,
}

impl Rendered {
    pub fn new(json: Value, human: impl Into<String>) -> Rendered {
        Rendered {
            json,
            human: human.into(),
            warnings: Vec::new(),
            raw: None,
        }
    }

    /// A value's bytes, printed exactly as they are: no newline, no encoding.
    pub fn raw(bytes: Vec<u8>) -> Rendered {
        Rendered {
            raw: Some(bytes),
            ..Rendered::new(Value::Null, String::new())
        }
    }

    /// Adds a node's warning (for example, too many siblings), if there is one.
    pub fn warn(mut self, warning: Option<String>) -> Rendered {
        self.warnings.extend(warning);
        self
    }

    /// Prints to stdout; a closed pipe (`ringkv get ... | head -1`) is not an error.
    pub fn print(&self, json: bool) -> io::Result<()> {
        for warning in &self.warnings {
            eprintln!("warning: {warning}");
        }
        let mut out = io::stdout().lock();
        let written = match (&self.raw, json) {
            (Some(bytes), false) => out.write_all(bytes),
            (_, true) => writeln!(out, "{}", self.json),
            (None, false) => writeln!(out, "{}", self.human),
        };
        match written.and_then(|()| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

/// `get`: `{"values": [...], "context": "TOKEN", "found": bool}`, plus `policy` and, for
/// keys of CRDT policies, that policy's fields.
pub fn get(key: &Key, result: &GetResult) -> Rendered {
    let values: Vec<String> = result.values.iter().map(|v| lossy(v)).collect();
    let mut json = json!({
        "values": values,
        "context": result.context,
        "found": result.found,
        "policy": result.value.as_ref().map(|v| policy_of(v).name()),
    });
    let human = match &result.value {
        _ if !result.found => format!("{key}: not found"),
        Some(ReadValue::Siblings { .. }) if values.len() > 1 => format!(
            "{}\n{} siblings: write back with --context {} to resolve",
            values.join("\n"),
            values.len(),
            result.context
        ),
        Some(ReadValue::Siblings { .. }) => {
            format!("{}\ncontext: {}", values.join("\n"), result.context)
        }
        Some(ReadValue::Lww { .. }) => values.join("\n"),
        Some(other) => {
            let (extra, human) = crdt_value(key, other);
            if let (Value::Object(target), Value::Object(extra)) = (&mut json, extra) {
                target.extend(extra);
            }
            human
        }
        None => format!("{key}: not found"),
    };
    let not_text = result
        .values
        .iter()
        .any(|v| std::str::from_utf8(v).is_err());
    let binary = (not_text && !result.values.is_empty()).then(|| {
        format!("{key} holds bytes that are not UTF-8, shown lossily; `ringkv get {key} --raw > FILE` writes them exactly")
    });
    Rendered::new(json, human)
        .warn(result.warning.clone())
        .warn(binary)
}

/// `put` and `del`: `{"context": "TOKEN"}`.
pub fn written(key: &Key, verb: &str, result: &WriteResult) -> Rendered {
    let json = json!({ "context": result.context });
    let human = match &result.value {
        ReadValue::Siblings { values, .. } if values.len() > 1 => format!(
            "{verb} {key}; it now has {} siblings from concurrent writes: `ringkv get {key}` shows them, and a put with the --context of that read resolves them\ncontext: {}",
            values.len(),
            result.context
        ),
        ReadValue::Lww { .. } => format!("{verb} {key} (last writer wins)"),
        _ if result.context.is_empty() => format!("{verb} {key}"),
        _ => format!("{verb} {key}\ncontext: {}", result.context),
    };
    Rendered::new(json, human).warn(result.warning.clone())
}

/// `counter get`, `counter incr|decr`: `{"value": 5}`.
pub fn counter(value: i64) -> Rendered {
    Rendered::new(json!({ "value": value }), value.to_string())
}

/// `set get`, `set add|remove`: `{"members": [...], "context": "TOKEN"}`.
pub fn set(read: &SetRead) -> Rendered {
    let human = if read.members.is_empty() {
        "(empty set)".to_owned()
    } else {
        read.members.join("\n")
    };
    Rendered::new(
        json!({ "members": read.members, "context": read.context }),
        human,
    )
}

/// `map get`, `map set|incr`: `{"fields": {NAME: {"register": [...], "counter": n|null,
/// "set": [...]}}, "context": "TOKEN"}`.
pub fn map(read: &MapRead) -> Rendered {
    let fields: Map<String, Value> = read
        .fields
        .iter()
        .map(|(name, field)| (name.clone(), field_json(field)))
        .collect();
    let human = if read.fields.is_empty() {
        "(empty map)".to_owned()
    } else {
        read.fields
            .iter()
            .map(|(name, field)| field_human(name, field))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Rendered::new(json!({ "fields": fields, "context": read.context }), human)
}

/// `hll count`, `hll add`: `{"estimate": 1000}`.
pub fn hll(estimate: u64) -> Rendered {
    Rendered::new(
        json!({ "estimate": estimate }),
        format!("~{estimate} distinct items"),
    )
}

/// `status`: `{"node": "n1", "nodes": [{"name", "addr", "state", "share", "hints"}]}`.
pub fn status(info: &StatusInfo) -> Rendered {
    let rows: Vec<Vec<String>> = info
        .members
        .iter()
        .map(|m| {
            let state = if m.phase == "leaving" {
                format!("{} (leaving)", m.state)
            } else {
                m.state.clone()
            };
            vec![
                m.name.0.clone(),
                m.addr.clone(),
                state,
                percent(m.share),
                m.hints.to_string(),
            ]
        })
        .collect();
    let t = &info.transfers;
    let human = format!(
        "{} members as {} sees them:\n{}\ntransfers from {}: {} partitions pending, {} done ({} keys, {} bytes sent)",
        info.members.len(),
        info.node,
        table(&["NAME", "ADDR", "STATE", "SHARE", "HINTS"], &rows),
        info.node,
        t.pending,
        t.done,
        t.keys_sent,
        t.bytes_sent
    );
    Rendered::new(ringkv::client::json::status(info), human)
}

/// `join`, `leave`: `{"result": "..."}`, the node's sentence about what happens next.
pub fn changed(text: &str) -> Rendered {
    Rendered::new(json!({ "result": text }), text.to_string())
}

/// `ring`: `{"partitions", "n", "balance", "nodes": [{"name", "vnodes",
/// "primary_partitions", "replica_share"}]}`.
pub fn ring(info: &RingInfo) -> Rendered {
    let rows: Vec<Vec<String>> = info
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.0.clone(),
                n.vnodes.to_string(),
                n.primary_partitions.to_string(),
                percent(n.replica_share),
            ]
        })
        .collect();
    let human = format!(
        "{} partitions, n={}, balance {:.2} (largest primary count over the mean; 1.00 is perfect)\n{}",
        info.partitions,
        info.n,
        info.balance,
        table(&["NAME", "VNODES", "PRIMARIES", "REPLICA SHARE"], &rows)
    );
    Rendered::new(ringkv::client::json::ring(info), human)
}

/// The policy-specific JSON fields and human text of a CRDT value read through `get`.
fn crdt_value(key: &Key, value: &ReadValue) -> (Value, String) {
    let rendered = match value {
        ReadValue::Counter { value } => counter(*value),
        ReadValue::Set { members, context } => set(&SetRead {
            members: members.clone(),
            context: context.to_token(),
        }),
        ReadValue::Map { fields, context } => map(&MapRead {
            fields: fields.clone(),
            context: context.to_token(),
        }),
        ReadValue::Hll { estimate } => hll(*estimate),
        ReadValue::Siblings { .. } | ReadValue::Lww { .. } => return (json!({}), String::new()),
    };
    let policy = policy_of(value);
    let human = format!("{key} is a {policy}:\n{}", rendered.human);
    (rendered.json, human)
}

fn field_json(field: &FieldRead) -> Value {
    json!({
        "register": field.register,
        "counter": field.counter,
        "set": field.set,
    })
}

fn field_human(name: &str, field: &FieldRead) -> String {
    let mut lines = Vec::new();
    match field.register.as_slice() {
        [] => {}
        [one] => lines.push(format!("{name} = {one}")),
        many => lines.push(format!(
            "{name} = {} ({} concurrent values)",
            many.join(" | "),
            many.len()
        )),
    }
    if let Some(count) = field.counter {
        lines.push(format!("{name} = {count} (counter)"));
    }
    if !field.set.is_empty() {
        lines.push(format!("{name} = {{{}}} (set)", field.set.join(", ")));
    }
    lines.join("\n")
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// Left-aligned columns, two spaces apart.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut lines = vec![line(headers.to_vec())];
    lines.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    lines.join("\n")
}

mod stats;

pub use stats::stats;

#[cfg(test)]
mod tests;
