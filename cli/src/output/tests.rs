//! The `--json` shapes scripts rely on, pinned field by field, and the human texts that
//! tell users what to do next.

use std::collections::BTreeMap;

use ringkv::NodeId;
use ringkv::Timestamp;
use ringkv::client::{GetResult, MapRead, SetRead, WriteResult};
use ringkv::proto::{Key, MemberStatus, RingInfo, RingNode, StatusInfo, TransferInfo};
use ringkv::{Context, FieldRead, ReadValue};
use serde_bytes::ByteBuf;
use serde_json::json;

use super::*;

fn token() -> String {
    Context::empty().to_token()
}

fn siblings(values: &[&[u8]]) -> ReadValue {
    ReadValue::Siblings {
        values: values.iter().map(|v| ByteBuf::from(v.to_vec())).collect(),
        context: Context::empty(),
    }
}

fn get_result(found: bool, value: Option<ReadValue>) -> GetResult {
    let values = match &value {
        Some(ReadValue::Siblings { values, .. }) if found => {
            values.iter().map(|v| v.to_vec()).collect()
        }
        Some(ReadValue::Lww { value: Some(v), .. }) if found => vec![v.to_vec()],
        _ => vec![],
    };
    GetResult {
        found,
        values,
        context: if value.is_some() {
            token()
        } else {
            String::new()
        },
        value,
        warning: None,
    }
}

fn key() -> Key {
    Key::new("users", "alice")
}

#[test]
fn get_with_siblings_lists_every_value_and_how_to_resolve_them() {
    let rendered = get(&key(), &get_result(true, Some(siblings(&[b"a", b"b"]))));
    assert_eq!(
        rendered.json,
        json!({"values": ["a", "b"], "context": token(), "found": true, "policy": "siblings"})
    );
    assert_eq!(
        rendered.human,
        format!(
            "a\nb\n2 siblings: write back with --context {} to resolve",
            token()
        )
    );
}

#[test]
fn get_of_one_value_shows_it_and_its_context() {
    let rendered = get(&key(), &get_result(true, Some(siblings(&[b"hello"]))));
    assert_eq!(rendered.json["values"], json!(["hello"]));
    assert_eq!(rendered.human, format!("hello\ncontext: {}", token()));
}

#[test]
fn get_of_a_missing_key_is_found_false_with_no_values() {
    let rendered = get(&key(), &get_result(false, None));
    assert_eq!(
        rendered.json,
        json!({"values": [], "context": "", "found": false, "policy": null})
    );
    assert_eq!(rendered.human, "users/alice: not found");
    let deleted = get(&key(), &get_result(false, Some(siblings(&[]))));
    assert_eq!(deleted.json["found"], json!(false));
    assert_eq!(
        deleted.json["context"],
        json!(token()),
        "a tombstone keeps its context"
    );
}

#[test]
fn values_that_are_not_utf8_are_shown_lossily() {
    let rendered = get(&key(), &get_result(true, Some(siblings(&[b"ok\xff"]))));
    assert_eq!(rendered.json["values"], json!(["ok\u{fffd}"]));
}

#[test]
fn get_of_lww_and_crdt_keys_adds_their_fields() {
    let lww = ReadValue::Lww {
        value: Some(ByteBuf::from(b"v".to_vec())),
        ts: Timestamp::default(),
    };
    let rendered = get(&key(), &get_result(true, Some(lww)));
    assert_eq!(rendered.json["policy"], json!("lww"));
    assert_eq!(rendered.human, "v");

    let counter = get(
        &key(),
        &get_result(true, Some(ReadValue::Counter { value: 5 })),
    );
    assert_eq!(counter.json["policy"], json!("counter"));
    assert_eq!(counter.json["value"], json!(5));
    assert_eq!(counter.human, "users/alice is a counter:\n5");
    let hll = get(
        &key(),
        &get_result(true, Some(ReadValue::Hll { estimate: 9 })),
    );
    assert_eq!(hll.json["estimate"], json!(9));
}

#[test]
fn put_and_del_print_the_context() {
    let result = WriteResult {
        context: token(),
        value: siblings(&[b"v"]),
        warning: Some("many siblings".into()),
    };
    let rendered = written(&key(), "stored", &result);
    assert_eq!(rendered.json, json!({"context": token()}));
    assert_eq!(
        rendered.human,
        format!("stored users/alice\ncontext: {}", token())
    );
    assert_eq!(rendered.warnings, ["many siblings"]);

    let conflicted = WriteResult {
        value: siblings(&[b"v", b"w"]),
        warning: None,
        ..result
    };
    let rendered = written(&key(), "stored", &conflicted);
    assert!(
        rendered.human.contains("it now has 2 siblings"),
        "{}",
        rendered.human
    );

    let deleted = WriteResult {
        context: String::new(),
        value: ReadValue::Counter { value: 0 },
        warning: None,
    };
    let rendered = written(&key(), "deleted", &deleted);
    assert_eq!(rendered.json, json!({"context": ""}));
    assert_eq!(rendered.human, "deleted users/alice");
}

#[test]
fn counter_set_and_hll_shapes() {
    assert_eq!(counter(5).json, json!({"value": 5}));
    assert_eq!(counter(-2).human, "-2");
    let read = SetRead {
        members: vec!["a".into(), "b".into()],
        context: token(),
    };
    assert_eq!(
        set(&read).json,
        json!({"members": ["a", "b"], "context": token()})
    );
    assert_eq!(set(&read).human, "a\nb");
    assert_eq!(set(&SetRead::default()).human, "(empty set)");
    assert_eq!(hll(1000).json, json!({"estimate": 1000}));
    assert_eq!(hll(1000).human, "~1000 distinct items");
}

#[test]
fn map_fields_show_every_part() {
    let mut fields = BTreeMap::new();
    fields.insert(
        "name".to_owned(),
        FieldRead {
            register: vec!["Bob".into(), "Rob".into()],
            counter: None,
            set: vec![],
        },
    );
    fields.insert(
        "visits".to_owned(),
        FieldRead {
            register: vec![],
            counter: Some(3),
            set: vec!["web".into()],
        },
    );
    let rendered = map(&MapRead {
        fields,
        context: token(),
    });
    assert_eq!(
        rendered.json,
        json!({
            "fields": {
                "name": {"register": ["Bob", "Rob"], "counter": null, "set": []},
                "visits": {"register": [], "counter": 3, "set": ["web"]},
            },
            "context": token(),
        })
    );
    assert_eq!(
        rendered.human,
        "name = Bob | Rob (2 concurrent values)\nvisits = 3 (counter)\nvisits = {web} (set)"
    );
}

#[test]
fn status_has_the_documented_node_fields() {
    let info = StatusInfo {
        node: NodeId::from("n1"),
        members: vec![MemberStatus {
            name: NodeId::from("n1"),
            addr: "127.0.0.1:7101".into(),
            state: "up".into(),
            share: 0.33,
            hints: 0,
            phase: "leaving".into(),
        }],
        transfers: TransferInfo {
            pending: 2,
            done: 5,
            keys_sent: 40,
            bytes_sent: 4096,
        },
    };
    let rendered = status(&info);
    assert_eq!(
        rendered.json,
        json!({"node": "n1", "nodes": [
            {"name": "n1", "addr": "127.0.0.1:7101", "state": "up", "phase": "leaving", "share": 0.33, "hints": 0}
        ], "transfers": {"pending": 2, "done": 5, "keys_sent": 40, "bytes_sent": 4096}})
    );
    assert_eq!(
        rendered.human,
        "1 members as n1 sees them:\n\
         NAME  ADDR            STATE         SHARE  HINTS\n\
         n1    127.0.0.1:7101  up (leaving)  33.0%  0\n\
         transfers from n1: 2 partitions pending, 5 done (40 keys, 4096 bytes sent)"
    );
}

#[test]
fn ring_shows_partitions_balance_and_nodes() {
    let info = RingInfo {
        partitions: 1024,
        n: 3,
        balance: 1.05,
        nodes: vec![RingNode {
            name: NodeId::from("n1"),
            vnodes: 64,
            primary_partitions: 350,
            replica_share: 1.0,
        }],
    };
    let rendered = ring(&info);
    assert_eq!(
        rendered.json,
        json!({"partitions": 1024, "n": 3, "balance": 1.05, "nodes": [
            {"name": "n1", "vnodes": 64, "primary_partitions": 350, "replica_share": 1.0}
        ]})
    );
    assert!(
        rendered
            .human
            .starts_with("1024 partitions, n=3, balance 1.05"),
        "{}",
        rendered.human
    );
}

#[test]
fn stats_names_a_silent_node_and_marks_the_cluster_partial() {
    use ringkv::{ClusterStats, NodeAnswer};
    let merged = ClusterStats::merge(
        vec![NodeAnswer {
            node: NodeId::from("n2"),
            addr: "127.0.0.1:7102".into(),
            result: Err("connection refused".into()),
        }],
        10,
    );
    let rendered = stats(&merged, ringkv::client::json::PartitionRows::Omit);
    let cluster = &rendered.json["cluster"];
    assert_eq!(cluster["partial"], json!(true));
    assert_eq!(cluster["distinct_keys"], json!(0));
    assert_eq!(cluster["hot_keys"], json!([]));
    assert_eq!(cluster["unanswered"][0]["name"], json!("n2"));
    assert_eq!(
        rendered.json["nodes"],
        json!([{"name": "n2", "addr": "127.0.0.1:7102", "answered": false, "error": "connection refused"}])
    );
    assert!(rendered.human.contains("(partial)"), "{}", rendered.human);
    assert!(rendered.human.contains("n2"), "{}", rendered.human);
    assert!(
        rendered.warnings[0].contains("n2 (127.0.0.1:7102) did not answer: connection refused"),
        "{:?}",
        rendered.warnings
    );
}

#[test]
fn values_that_are_not_utf8_are_shown_lossily_with_a_pointer_to_raw() {
    let key = Key::new("demo", "bin");
    let text = get(&key, &get_result(true, Some(siblings(&[b"plain"]))));
    assert!(text.warnings.is_empty(), "{:?}", text.warnings);
    let binary = get(&key, &get_result(true, Some(siblings(&[&[0xff, 0x00]]))));
    assert_eq!(binary.warnings.len(), 1);
    assert!(
        binary.warnings[0].contains("ringkv get demo/bin --raw"),
        "{:?}",
        binary.warnings
    );
}

#[test]
fn raw_output_is_the_one_value_or_a_sentence_saying_why_not() {
    use crate::value_io::raw_value;
    let key = Key::new("demo", "bin");
    let one = get_result(true, Some(siblings(&[&[0xff, 0x00, b'\n']])));
    assert_eq!(raw_value(&key, &one).unwrap(), [0xff, 0x00, b'\n']);
    let rendered = Rendered::raw(vec![1, 2]);
    assert_eq!(rendered.raw.as_deref(), Some(&[1u8, 2][..]));
    let two = get_result(true, Some(siblings(&[b"a", b"b"])));
    let err = raw_value(&key, &two).unwrap_err();
    assert!(err.to_string().contains("2 siblings"), "{err}");
    let missing = get_result(false, None);
    assert_eq!(
        raw_value(&key, &missing).unwrap_err().to_string(),
        "demo/bin: not found"
    );
    let counter = GetResult {
        found: true,
        values: vec![],
        context: String::new(),
        value: Some(ReadValue::Counter { value: 3 }),
        warning: None,
    };
    let err = raw_value(&key, &counter).unwrap_err();
    assert!(err.to_string().contains("holds a counter"), "{err}");
}
