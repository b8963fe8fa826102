#!/usr/bin/env python3
"""A ringkv client in Python, over the HTTP/JSON API, with the standard library only.

It shows what any language needs: TLS that trusts the cluster CA and presents a client
certificate, the causal context in X-Ringkv-Context, 300 Multiple Choices for siblings,
and a CRDT counter. Run it against `ringkv dev` from the directory it runs in:

    python3 examples/python/ringkv_http.py --url https://127.0.0.1:8101 --certs ringkv-dev/certs

It exits non-zero, with the reason, at the first answer that is not what it expects.
"""

import argparse
import base64
import http.client
import json
import os
import ssl
import sys
import time
import urllib.parse

# Every request is bounded; a node that does not answer fails the example.
TIMEOUT_S = 30


class Ringkv:
    """One node's HTTP API, reached with a client certificate from the cluster CA."""

    def __init__(self, url, certs, cert_name="client"):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "https":
            raise ValueError(f"{url} is not an https:// URL")
        self.host, self.port = parsed.hostname, parsed.port or 443
        self.tls = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
        self.tls.load_cert_chain(
            os.path.join(certs, f"{cert_name}.pem"), os.path.join(certs, f"{cert_name}.key")
        )

    def request(self, method, path, body=None, headers=None):
        """Sends one request; returns (status, headers as a dict, body bytes)."""
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self.tls, timeout=TIMEOUT_S
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    @staticmethod
    def key_path(bucket, key, kind="keys", **params):
        q = urllib.parse.quote
        path = f"/v1/buckets/{q(bucket, safe='')}/{kind}/{q(key, safe='')}"
        return path + ("?" + urllib.parse.urlencode(params) if params else "")

    def put(self, bucket, key, value, content_type="application/octet-stream", context=None, **params):
        headers = {"Content-Type": content_type}
        if context:
            headers["X-Ringkv-Context"] = context
        status, hdrs, body = self.request("PUT", self.key_path(bucket, key, **params), value, headers)
        expect(status, 204, body)
        return hdrs.get("x-ringkv-context")

    def get(self, bucket, key, **params):
        """Returns (values, context): one value, several (siblings), or none (missing)."""
        status, hdrs, body = self.request("GET", self.key_path(bucket, key, **params))
        context = hdrs.get("x-ringkv-context")
        if status == 200:
            return [body], context
        if status == 300:
            return [base64.b64decode(v) for v in json.loads(body)], context
        if status == 404:
            return [], context
        raise RuntimeError(f"GET {bucket}/{key}: {status} {body.decode(errors='replace')}")

    def resolve(self, bucket, key, merge, **params):
        """Reads the siblings, merges them with `merge`, and writes the result back with
        the read's context, which supersedes every sibling it saw."""
        values, context = self.get(bucket, key, **params)
        merged = merge(values)
        self.put(bucket, key, merged, context=context, **params)
        return merged

    def counter_add(self, bucket, key, amount, **params):
        body = json.dumps({"increment": amount}).encode()
        status, _, resp = self.request(
            "POST", self.key_path(bucket, key, "counters", **params), body,
            {"Content-Type": "application/json"},
        )
        expect(status, 204, resp)

    def counter_get(self, bucket, key, **params):
        status, _, body = self.request("GET", self.key_path(bucket, key, "counters", **params))
        expect(status, 200, body)
        return json.loads(body)["value"]


def expect(status, wanted, body):
    if status != wanted:
        raise RuntimeError(f"expected {wanted}, got {status}: {body.decode(errors='replace')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="https://127.0.0.1:8101", help="a node's HTTP API")
    parser.add_argument("--certs", default="ringkv-dev/certs", help="the certificate directory")
    args = parser.parse_args()
    kv = Ringkv(args.url, args.certs)
    bucket, run = "python", str(int(time.time() * 1000))

    # put and get, with the content type kept
    kv.put(bucket, "greeting-" + run, b"hello from python", content_type="text/plain")
    values, _ = kv.get(bucket, "greeting-" + run)
    assert values == [b"hello from python"], values
    print("put/get:", values[0].decode())

    # two blind writes make siblings; resolve them by writing back with the context
    key = "cart-" + run
    kv.put(bucket, key, b"apples", w=3)
    kv.put(bucket, key, b"pears", w=3)
    values, _ = kv.get(bucket, key, r=3)
    assert sorted(values) == [b"apples", b"pears"], values
    print("siblings:", sorted(v.decode() for v in values))
    merged = kv.resolve(bucket, key, lambda vs: b",".join(sorted(vs)), w=3, r=3)
    values, _ = kv.get(bucket, key, r=3)
    assert values == [merged], values
    print("resolved:", values[0].decode())

    # a counter
    kv.counter_add(bucket, "visits-" + run, 5, w=3)
    kv.counter_add(bucket, "visits-" + run, -2, w=3)
    count = kv.counter_get(bucket, "visits-" + run, r=3)
    assert count == 3, count
    print("counter:", count)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (AssertionError, RuntimeError, OSError, ssl.SSLError) as e:
        print(f"error: {e!r}", file=sys.stderr)
        sys.exit(1)
