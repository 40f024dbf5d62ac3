# SPDX-License-Identifier: Apache-2.0
"""Every field of Istio's API for the five kinds isthmus reads is known to it:
implemented, refused as "not implemented yet", or accepted and ignored as
documented — never an "unknown field". The field paths come from Istio's .proto
files (tests/fixtures/istio-api-fields.txt, written by
tests/fixtures/istio_api_fields.py); each is set, alone, in an otherwise valid
file checked with `isthmus -c`.

Registered into run.py's list by register(test)."""

import copy
import json
import os

from harness import Registry, check

_test = Registry()
register = _test.register

FIELDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "istio-api-fields.txt")

# A valid spec of each kind, which a field path is written into.
BASE = {
    "VirtualService": {"hosts": ["*"], "gateways": ["gw"],
                       "http": [{"route": [{"destination": {"host": "a.b"}}]}]},
    "DestinationRule": {"host": "a.b"},
    "Gateway": {"servers": [{"port": {"number": 8080, "protocol": "HTTP"}, "hosts": ["*"]}]},
    "ServiceEntry": {"hosts": ["a.b"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                     "resolution": "STATIC", "endpoints": [{"address": "127.0.0.1"}]},
    "PeerAuthentication": {},
}
API = {"PeerAuthentication": "security.istio.io/v1"}


def with_field(node, segs, leaf):
    """node (a dict) with the path segs set: "a[]" a list (its first item),
    "a{}" a map (its key "k"), the last one to leaf."""
    seg, rest = segs[0], segs[1:]
    name = seg.rstrip("[]{}")
    if seg.endswith("[]"):
        cur = node.get(name) if isinstance(node.get(name), list) and node.get(name) else [{}]
        cur[0] = with_field(cur[0] if isinstance(cur[0], dict) else {}, rest, leaf) if rest else leaf
        node[name] = cur
    elif seg.endswith("{}"):
        cur = node.get(name) if isinstance(node.get(name), dict) else {}
        cur["k"] = with_field(cur.get("k") if isinstance(cur.get("k"), dict) else {}, rest, leaf) if rest else leaf
        node[name] = cur
    else:
        node[name] = (with_field(node.get(name) if isinstance(node.get(name), dict) else {}, rest, leaf)
                      if rest else leaf)
    return node


def document(path):
    kind, _, rest = path.partition(".spec.")
    spec = with_field(copy.deepcopy(BASE[kind]), rest.split("."), "x")
    gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
          "spec": spec if kind == "Gateway" else BASE["Gateway"]}
    docs = [{"apiVersion": "isthmus.io/v1", "kind": "Appliance", "metadata": {"name": "t"},
             "spec": {"locality": "r/z"}}, gw]
    if kind != "Gateway":
        docs.append({"apiVersion": API.get(kind, "networking.istio.io/v1"), "kind": kind,
                     "metadata": {"name": "r"}, "spec": spec})
    return "---\n".join(json.dumps(d) + "\n" for d in docs)


@_test
def istio_api_fields_known(env):
    paths = [line.strip() for line in open(FIELDS) if line.strip() and not line.startswith("#")]
    check(len(paths) > 500, f"only {len(paths)} field paths in {FIELDS}")
    unknown = []
    for p in paths:
        _, out = env.check_config(env.write("f.yaml", document(p)))
        if "unknown field" in out:
            unknown.append(f"{p}: {[l for l in out.splitlines() if 'unknown field' in l][0]}")
    check(not unknown, f"{len(unknown)} fields of Istio's API unknown to isthmus:\n" + "\n".join(unknown[:20]))
