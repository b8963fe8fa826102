//! Reply interpretation without a network: policies, tokens, deadlines.

use super::*;

fn set_value(members: &[&str]) -> ReadValue {
    ReadValue::Set {
        members: members.iter().map(|m| m.to_string()).collect(),
        context: Context::empty(),
    }
}

#[test]
fn a_live_key_of_another_policy_is_named_in_the_error() {
    let key = Key::new("b", "k");
    let err = expect_policy(&key, Policy::Counter, true, Some(set_value(&["a"])))
        .expect_err("a set is not a counter");
    let text = err.to_string();
    assert!(text.contains("b/k holds a `set` object"), "{text}");
    assert!(text.contains("not a `counter`"), "{text}");
}

#[test]
fn a_dead_key_of_another_policy_reads_as_empty() {
    let key = Key::new("b", "k");
    let tombstone = ReadValue::Siblings {
        values: vec![],
        context: Context::empty(),
    };
    assert_eq!(
        expect_policy(&key, Policy::Set, false, Some(tombstone)).unwrap(),
        None
    );
    assert_eq!(expect_policy(&key, Policy::Set, false, None).unwrap(), None);
    let set = set_value(&["x"]);
    assert_eq!(
        expect_policy(&key, Policy::Set, true, Some(set.clone())).unwrap(),
        Some(set)
    );
}

#[test]
fn bad_context_tokens_are_refused_before_sending() {
    let err = parse_context(Some("!!not base64")).expect_err("garbage token");
    assert!(matches!(err, ClientError::BadContext { .. }), "{err}");
    assert!(err.to_string().contains("pass the token exactly"), "{err}");
    assert_eq!(parse_context(None).unwrap(), Context::empty());
    assert_eq!(parse_context(Some("")).unwrap(), Context::empty());
}

#[test]
fn policies_without_a_context_have_an_empty_token() {
    assert_eq!(token_of(&ReadValue::Counter { value: 3 }), "");
    assert_eq!(token_of(&ReadValue::Hll { estimate: 3 }), "");
    assert_eq!(
        token_of(&set_value(&["a"])),
        Context::empty().to_token(),
        "a set carries its context"
    );
}

#[test]
fn the_call_deadline_covers_the_requests_own_timeout() {
    let mut opts = QuorumOpts::default();
    let get = |opts| ClientRequest::Get {
        key: Key::new("b", "k"),
        opts,
    };
    assert_eq!(
        call_timeout_ms(CLIENT_TIMEOUT_MS, &get(opts)),
        CLIENT_TIMEOUT_MS
    );
    opts.timeout_ms = Some(30_000);
    assert_eq!(
        call_timeout_ms(CLIENT_TIMEOUT_MS, &get(opts)),
        30_000 + CLIENT_TIMEOUT_MARGIN_MS
    );
    opts.timeout_ms = Some(100);
    assert_eq!(
        call_timeout_ms(CLIENT_TIMEOUT_MS, &get(opts)),
        CLIENT_TIMEOUT_MS
    );
    assert_eq!(
        call_timeout_ms(CLIENT_TIMEOUT_MS, &ClientRequest::Status),
        CLIENT_TIMEOUT_MS
    );
}
