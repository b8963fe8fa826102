//! The HTTP/JSON API through a real TLS client with a client certificate, against real
//! `ringkv node` processes: every status code the API promises, siblings round-tripped
//! through `X-Ringkv-Context`, the CRDT operations, the limits, values shared with the
//! QUIC client, the OpenAPI document, and a client without a certificate refused.

mod common;
#[path = "common/http.rs"]
mod http;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::cluster::Cluster;
use common::{args, make_certs, ringkv};
use http::{Answer, HttpClient};
use hyper::Method;
use serde_json::{Value, json};

const CONTEXT: &str = "x-ringkv-context";

fn client(cluster: &Cluster, i: usize) -> HttpClient {
    HttpClient::new(&cluster.http_url(i), &cluster.certs, Some("client"))
}

fn put(c: &HttpClient, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    c.send(Method::PUT, path, headers, body.to_vec())
}

fn post(c: &HttpClient, path: &str, body: Value) -> Answer {
    c.send(
        Method::POST,
        path,
        &[("content-type", "application/json")],
        body.to_string().into_bytes(),
    )
}

fn context_of(answer: &Answer) -> String {
    answer
        .header(CONTEXT)
        .unwrap_or_else(|| panic!("no {CONTEXT} header: {:?}", answer.headers))
}

#[test]
fn keys_answer_200_204_300_404_and_round_trip_siblings_through_the_context() {
    let cluster = Cluster::start_http(3);
    let c = client(&cluster, 0);
    let other = client(&cluster, 1);

    // One value: its content type is kept from the write.
    let written = put(
        &c,
        "/v1/buckets/demo/keys/hello",
        &[("content-type", "text/plain; charset=utf-8")],
        b"world",
    )
    .expect(204);
    assert!(!context_of(&written).is_empty());
    let got = other.get("/v1/buckets/demo/keys/hello?r=3").expect(200);
    assert_eq!(got.text(), "world");
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );

    // Two blind writes make siblings: 300 with a JSON array of base64 values.
    put(&c, "/v1/buckets/demo/keys/fork?w=3", &[], b"left").expect(204);
    put(&other, "/v1/buckets/demo/keys/fork?w=3", &[], b"right").expect(204);
    let siblings = c.get("/v1/buckets/demo/keys/fork?r=3").expect(300);
    let mut values: Vec<String> = siblings
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {}", siblings.text()))
        .iter()
        .map(|v| {
            let bytes = STANDARD
                .decode(v.as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("not base64: {v}: {e}"));
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect();
    values.sort();
    assert_eq!(values, ["left", "right"]);
    let multipart = c.send(
        Method::GET,
        "/v1/buckets/demo/keys/fork?r=3",
        &[("accept", "multipart/mixed")],
        Vec::new(),
    );
    let multipart = multipart.expect(300);
    let ct = multipart.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("multipart/mixed; boundary="), "{ct}");
    let text = multipart.text();
    assert!(
        text.contains("\r\n\r\nleft\r\n") && text.contains("\r\n\r\nright\r\n"),
        "{text}"
    );

    // Writing back with the read's context resolves them.
    let context = context_of(&siblings);
    put(
        &c,
        "/v1/buckets/demo/keys/fork?w=3",
        &[(CONTEXT, &context)],
        b"merged",
    )
    .expect(204);
    let resolved = other.get("/v1/buckets/demo/keys/fork?r=3").expect(200);
    assert_eq!(resolved.text(), "merged");

    // returnbody answers the merged object.
    let body = put(&c, "/v1/buckets/demo/keys/rb?returnbody=true", &[], b"echo").expect(200);
    assert_eq!(body.text(), "echo");

    // A missing key is 404; a deleted one too, with the tombstone's context.
    let missing = c.get("/v1/buckets/demo/keys/never-written").expect(404);
    assert_eq!(missing.json()["code"], json!("not_found"));
    c.send(
        Method::DELETE,
        "/v1/buckets/demo/keys/hello?w=3",
        &[],
        Vec::new(),
    )
    .expect(204);
    let deleted = other.get("/v1/buckets/demo/keys/hello?r=3").expect(404);
    assert!(deleted.header(CONTEXT).is_some(), "{:?}", deleted.headers);

    // Last writer wins with policy=lww.
    put(&c, "/v1/buckets/demo/keys/lww?policy=lww", &[], b"one").expect(204);
    put(&c, "/v1/buckets/demo/keys/lww?policy=lww&w=3", &[], b"two").expect(204);
    assert_eq!(
        other
            .get("/v1/buckets/demo/keys/lww?r=3")
            .expect(200)
            .text(),
        "two"
    );

    // An operation id is accepted when well-formed and refused when not.
    put(
        &c,
        "/v1/buckets/demo/keys/once",
        &[("x-ringkv-op-id", "00000000deadbeef-7")],
        b"v",
    )
    .expect(204);
    let bad = put(
        &c,
        "/v1/buckets/demo/keys/once",
        &[("x-ringkv-op-id", "deadbeef")],
        b"v",
    )
    .expect(400);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("CLIENT-SEQ")
    );
    c.get("/v1/buckets/demo/keys/x?bogus=1").expect(400);
    c.get("/v1/buckets/demo/keys/x?n=10").expect(400);
    put(
        &c,
        "/v1/buckets/demo/keys/x",
        &[(CONTEXT, "not a token!")],
        b"v",
    )
    .expect(400);

    // Values are shared with the QUIC client: HTTP octet-stream writes read back raw, and
    // QUIC writes are served as octet-stream.
    put(&c, "/v1/buckets/demo/keys/shared?w=3", &[], b"from-http").expect(204);
    let quic = cluster.client(2, &["get", "demo/shared", "--r", "3", "--json"]);
    quic.success();
    assert_eq!(quic.json()["values"], json!(["from-http"]));
    cluster
        .client(2, &["put", "demo/from-quic", "bytes", "--w", "3"])
        .success();
    let served = c.get("/v1/buckets/demo/keys/from-quic?r=3").expect(200);
    assert_eq!(served.text(), "bytes");
    assert_eq!(
        served.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
}

#[test]
fn crdts_take_json_operations_and_answer_value_and_context() {
    let cluster = Cluster::start_http(3);
    let c = client(&cluster, 0);
    let other = client(&cluster, 2);

    post(
        &c,
        "/v1/buckets/demo/counters/visits?w=3",
        json!({"increment": 5}),
    )
    .expect(204);
    let after = post(
        &c,
        "/v1/buckets/demo/counters/visits?w=3&returnbody=true",
        json!({"increment": -2}),
    )
    .expect(200);
    assert_eq!(after.json(), json!({"value": 3}));
    assert_eq!(
        other
            .get("/v1/buckets/demo/counters/visits?r=3")
            .expect(200)
            .json(),
        json!({"value": 3})
    );
    // The same operation id sent twice, through two nodes, counts once.
    let once = |client: &HttpClient| {
        client
            .send(
                Method::POST,
                "/v1/buckets/demo/counters/once?w=3&returnbody=true",
                &[("x-ringkv-op-id", "00000000000000aa-1")],
                json!({"increment": 7}).to_string().into_bytes(),
            )
            .expect(200)
            .json()
    };
    assert_eq!(once(&c), json!({"value": 7}));
    assert_eq!(once(&other), json!({"value": 7}), "a retry is applied once");

    post(
        &c,
        "/v1/buckets/demo/sets/tags?w=3",
        json!({"add": ["a", "b", "c"]}),
    )
    .expect(204);
    let set = other
        .get("/v1/buckets/demo/sets/tags?r=3")
        .expect(200)
        .json();
    assert_eq!(set["value"], json!(["a", "b", "c"]));
    let context = set["context"].as_str().unwrap_or_default().to_owned();
    post(
        &c,
        "/v1/buckets/demo/sets/tags?w=3",
        json!({"remove": ["a"], "add": ["d"], "context": context}),
    )
    .expect(204);
    let set = other
        .get("/v1/buckets/demo/sets/tags?r=3")
        .expect(200)
        .json();
    assert_eq!(set["value"], json!(["b", "c", "d"]));
    // Without a context the set is read first.
    post(
        &c,
        "/v1/buckets/demo/sets/tags?w=3&r=3",
        json!({"remove": ["b"]}),
    )
    .expect(204);
    assert_eq!(
        other
            .get("/v1/buckets/demo/sets/tags?r=3")
            .expect(200)
            .json()["value"],
        json!(["c", "d"])
    );

    post(
        &c,
        "/v1/buckets/demo/maps/user?w=3",
        json!({"ops": [
            {"set_register": {"field": "name", "value": "alice"}},
            {"increment": {"field": "logins", "delta": 2}},
            {"add_members": {"field": "roles", "members": ["admin"]}},
        ]}),
    )
    .expect(204);
    let map = other
        .get("/v1/buckets/demo/maps/user?r=3")
        .expect(200)
        .json();
    assert_eq!(map["value"]["name"]["register"], json!(["alice"]), "{map}");
    assert_eq!(map["value"]["logins"]["counter"], json!(2), "{map}");
    assert_eq!(map["value"]["roles"]["set"], json!(["admin"]), "{map}");
    assert!(map["context"].is_string(), "{map}");
    post(
        &c,
        "/v1/buckets/demo/maps/user?w=3&r=3",
        json!({"ops": [{"remove_field": {"field": "roles"}}]}),
    )
    .expect(204);
    let map = other
        .get("/v1/buckets/demo/maps/user?r=3")
        .expect(200)
        .json();
    assert!(map["value"].get("roles").is_none(), "{map}");

    post(
        &c,
        "/v1/buckets/demo/hlls/visitors?w=3",
        json!({"add": ["x", "y", "z", "x"]}),
    )
    .expect(204);
    let hll = other
        .get("/v1/buckets/demo/hlls/visitors?r=3")
        .expect(200)
        .json();
    assert_eq!(hll, json!({"value": 3}));

    // Another policy's route is 409 with the right route named; a missing object is 404.
    let wrong = c.get("/v1/buckets/demo/keys/visits").expect(409);
    assert!(
        wrong.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("/v1/buckets/demo/counters/visits"),
        "{}",
        wrong.text()
    );
    c.get("/v1/buckets/demo/sets/visits").expect(409);
    c.get("/v1/buckets/demo/counters/nothing-here").expect(404);
    post(&c, "/v1/buckets/demo/counters/visits", json!({"add": 1})).expect(400);
    let two_writes = c.send(
        Method::POST,
        "/v1/buckets/demo/sets/tags",
        &[("x-ringkv-op-id", "0000000000000001-1")],
        json!({"add": ["e"], "remove": ["c"], "context": ""})
            .to_string()
            .into_bytes(),
    );
    two_writes.expect(400);
}

#[test]
fn limits_get_413_or_400_with_a_sentence_and_a_missing_certificate_is_refused() {
    let cluster = Cluster::start_http(1);
    let c = client(&cluster, 0);
    let limit = ringkv::net::http::limits::VALUE_BODY_BYTES_MAX;

    let big = put(
        &c,
        "/v1/buckets/demo/keys/big?n=1&w=1",
        &[],
        &vec![b'x'; limit + 1],
    )
    .expect(413);
    let error = big.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains(&format!("over the limit of {limit}")),
        "{error}"
    );
    put(
        &c,
        "/v1/buckets/demo/keys/fits?n=1&w=1",
        &[],
        &vec![b'x'; limit],
    )
    .expect(204);

    let long_key = "k".repeat(ringkv::net::http::limits::KEY_BYTES_MAX + 1);
    let refused = c
        .get(&format!("/v1/buckets/demo/keys/{long_key}?n=1&r=1"))
        .expect(400);
    assert!(
        refused.text().contains("over the HTTP limit"),
        "{}",
        refused.text()
    );

    let filler = "v".repeat(1024);
    let many: Vec<(String, String)> = (0..40)
        .map(|i| (format!("x-filler-{i}"), filler.clone()))
        .collect();
    let headers: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let refused = c
        .send(Method::GET, "/v1/status", &headers, Vec::new())
        .expect(400);
    assert!(refused.text().contains("headers are"), "{}", refused.text());

    let members: Vec<String> = (0..=ringkv::net::http::limits::BATCH_ITEMS_MAX)
        .map(|i| i.to_string())
        .collect();
    let refused = post(
        &c,
        "/v1/buckets/demo/sets/s?n=1&w=1",
        json!({"add": members}),
    )
    .expect(400);
    assert!(
        refused.text().contains("over the limit"),
        "{}",
        refused.text()
    );
    let ops: Vec<Value> = (0..=ringkv::net::http::limits::MAP_OPS_MAX)
        .map(|i| json!({"increment": {"field": format!("f{i}"), "delta": 1}}))
        .collect();
    post(&c, "/v1/buckets/demo/maps/m?n=1&w=1", json!({"ops": ops})).expect(400);

    // No client certificate: the handshake or the first request fails, nothing is served.
    let anonymous = HttpClient::new(&cluster.http_url(0), &cluster.certs, None);
    let refused = anonymous.try_send(Method::GET, "/v1/status", &[], Vec::new());
    assert!(
        refused.is_err(),
        "a client without a certificate was served: {refused:?}"
    );
}

#[test]
fn a_failed_quorum_is_503_with_its_counts_and_nodes() {
    let mut cluster = Cluster::start_http(2);
    let c = client(&cluster, 0);
    put(&c, "/v1/buckets/demo/keys/q?n=2&w=2", &[], b"v").expect(204);
    cluster.kill(1);
    let failed = put(
        &c,
        "/v1/buckets/demo/keys/q?n=2&w=2&strict=true&timeout_ms=1000",
        &[],
        b"v2",
    )
    .expect(503);
    let body = failed.json();
    assert_eq!(body["code"], json!("quorum_failed"), "{body}");
    assert_eq!(body["quorum"]["needed"], json!(2), "{body}");
    assert_eq!(body["quorum"]["n"], json!(2), "{body}");
    let named: Vec<String> = ["acked", "timed_out", "unreachable"]
        .iter()
        .flat_map(|k| body["quorum"][k].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    assert!(named.iter().any(|n| n == "n2"), "n2 is not named: {body}");
}

#[test]
fn every_documented_route_is_served_and_operations_match_the_cli_json() {
    let cluster = Cluster::start_http(3);
    let c = client(&cluster, 0);
    let doc = c.get("/v1/openapi.json").expect(200).json();
    assert!(
        doc["openapi"].as_str().unwrap_or_default().starts_with('3'),
        "{doc}"
    );
    let paths = doc["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("no paths: {doc}"));
    let mut served = Vec::new();
    for (template, item) in paths {
        let path = template.replace("{bucket}", "routes").replace("{key}", "k");
        for method in item
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let method: Method = method
                .to_uppercase()
                .parse()
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            let body = if method == Method::POST {
                b"{}".to_vec()
            } else {
                Vec::new()
            };
            let answer = c.send(method.clone(), &path, &[], body);
            let code = answer.status.as_u16();
            assert!(
                code != 405 && !(code == 404 && answer.text().contains("no_route")),
                "{method} {path} is documented but not served: {code} {}",
                answer.text()
            );
            served.push(format!("{method} {template}"));
        }
    }
    for (method, path) in ringkv::net::http::router::ROUTES {
        let entry = format!("{} {path}", method.to_uppercase());
        assert!(served.contains(&entry), "{entry} is not in the document");
    }
    let unknown = c.get("/v1/nothing").expect(404);
    assert_eq!(unknown.json()["code"], json!("no_route"));

    let status = c.get("/v1/status").expect(200).json();
    let cli = cluster.client(0, &["status", "--json"]);
    cli.success();
    let cli = cli.json();
    assert_eq!(keys(&status), keys(&cli));
    assert_eq!(status["node"], cli["node"]);
    let names = |v: &Value| -> Vec<String> {
        v["nodes"]
            .as_array()
            .map(|n| {
                n.iter()
                    .filter_map(|m| m["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(&status), ["n1", "n2", "n3"]);
    assert_eq!(names(&status), names(&cli));

    let ring = c.get("/v1/ring").expect(200).json();
    let cli = cluster.client(0, &["ring", "--json"]);
    cli.success();
    assert_eq!(ring, cli.json());

    let stats = c.get("/v1/stats").expect(200).json();
    let cli = cluster.client(0, &["stats", "--json"]);
    cli.success();
    let cli = cli.json();
    assert_eq!(keys(&stats), keys(&cli));
    assert_eq!(keys(&stats["cluster"]), keys(&cli["cluster"]));
    assert_eq!(
        stats["cluster"]["nodes_answered"],
        json!(3),
        "{}",
        stats["cluster"]
    );
    let summary = |v: &Value| -> Vec<bool> {
        v["nodes"]
            .as_array()
            .map(|n| n.iter().map(|m| m.get("partitions").is_some()).collect())
            .unwrap_or_default()
    };
    assert_eq!(summary(&stats), [false; 3], "no partition rows by default");
    assert_eq!(summary(&cli), [false; 3]);
    let detailed = c.get("/v1/stats?partitions=true").expect(200).json();
    let cli = cluster.client(0, &["stats", "--json", "--partitions"]);
    cli.success();
    assert_eq!(summary(&detailed), [true; 3]);
    assert_eq!(summary(&cli.json()), [true; 3]);
    c.get("/v1/stats?top=0").expect(400);
    c.get("/v1/stats?partitions=maybe").expect(400);
}

#[test]
fn plain_http_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"));
    let certs = dir.path().join("certs");
    make_certs(&certs, 1);
    let refused = ringkv(&args(&[
        "node",
        "--name",
        "n1",
        "--listen",
        "127.0.0.1:0",
        "--dir",
        &dir.path().join("n1").display().to_string(),
        "--certs",
        &certs.display().to_string(),
        "--http",
        "0.0.0.0:0",
        "--http-insecure",
    ]));
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(refused.stderr.contains("loopback"), "{}", refused.stderr);
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}
