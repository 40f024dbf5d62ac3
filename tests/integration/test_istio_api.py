# SPDX-License-Identifier: Apache-2.0
"""Every field of Istio's API for the six kinds isthmus reads is known to it:
implemented, refused as "not implemented yet", or accepted and ignored as
documented — never an "unknown field". The field paths come from Istio's .proto
files (tests/fixtures/istio-api-fields.txt, written by
tests/fixtures/istio_api_fields.py); each is set, alone, in an otherwise valid
file checked with `isthmus -c`.

Registered into run.py's list by register(test)."""

import copy
import json
import os

from harness import (Conn, Env, Registry, appliance, check, ctl_cmd, destination_rule, docs, free_port, gateway, http_get,
                     poll, port_open, service_entry, virtual_service)

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
    "WorkloadEntry": {"address": "127.0.0.1"},
    "ProxyConfig": {},
    "Telemetry": {},
}
API = {"PeerAuthentication": "security.istio.io/v1", "ProxyConfig": "networking.istio.io/v1beta1",
       "Telemetry": "telemetry.istio.io/v1"}


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


def workload_entry(name, addr, port, labels):
    lab = ", ".join(f"{k}: {v}" for k, v in labels.items())
    return (f"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: {name}}}\n"
            f"spec:\n  address: {addr}\n  ports: {{http: {port}}}\n  labels: {{{lab}}}\n")


@_test
def workload_entries(env):
    """A ServiceEntry's workloadSelector makes the WorkloadEntries of its
    namespace that carry its labels its endpoints, each on the port it names:
    traffic reaches those and never one whose labels differ; a DestinationRule
    subset picks among them by their labels; a reload that changes an entry's
    labels takes it out."""
    ups = {n: env.upstream([f"{addr}:0={n}"], name=n)[n]
           for n, addr in (("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4"))}
    gw = free_port()
    se = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: vm}\nspec:\n"
          "  hosts: [vm.example]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n"
          "  workloadSelector: {labels: {app: vm}}\n")
    routes = ("  - match: [{uri: {prefix: /v1}}]\n    route: [{destination: {host: vm.example, subset: v1}}]\n"
              "  - route: [{destination: {host: vm.example}}]\n")

    def conf(b_app):
        return docs(appliance(env), gateway(gw), virtual_service("vs", ["*"], routes), se,
                    destination_rule("vm", "vm.example", ["v1"]),
                    workload_entry("a", "127.0.0.2", ups["a"], {"app": "vm", "version": "v1"}),
                    workload_entry("b", "127.0.0.3", ups["b"], {"app": b_app, "version": "v2"}),
                    workload_entry("c", "127.0.0.4", ups["c"], {"app": "other"}))

    def served(path, n):
        seen = []
        for _ in range(n):
            r = http_get(gw, path)
            check(r.status == 200, f"GET {path}: {r}")
            seen.append(r.header("x-upstream"))
        return seen

    env.start_gateway(env.write("isthmus.yaml", conf("vm")), gw)
    seen = served("/", 40)
    check(set(seen) == {"a", "b"}, f"the selected entries a and b, never c: {seen}")
    seen = served("/v1", 10)
    check(set(seen) == {"a"}, f"subset v1 is entry a: {seen}")
    env.write("isthmus.yaml", conf("other"))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
    seen = served("/", 20)
    check(set(seen) == {"a"}, f"after b's labels changed, a only: {seen}")


def versioned_web(env, ns="default"):
    """Three upstreams a, b and c on 127.0.0.2-4 and the ServiceEntry web.example
    (namespace ns) whose endpoints they are, labelled version: a, b, c."""
    ups = {n: env.upstream([f"{addr}:0={n}"], name=n)[n]
           for n, addr in (("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4"))}
    return ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
            f"metadata: {{name: web, namespace: {ns}}}\nspec:\n"
            "  hosts: [web.example]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n"
            "  endpoints:\n"
            + "".join(f"  - {{address: 127.0.0.{i}, ports: {{http: {ups[n]}}}, labels: {{version: {n}}}}}\n"
                      for i, n in ((2, "a"), (3, "b"), (4, "c"))))


def exported(kind, name, ns, export, spec):
    """A networking resource kind name of namespace ns, spec's lines after
    its exportTo ([export]; none when None)."""
    exp = f"  exportTo: [{export}]\n" if export else ""
    return (f"apiVersion: networking.istio.io/v1\nkind: {kind}\n"
            f"metadata: {{name: {name}, namespace: {ns}}}\nspec:\n{exp}{spec}")


def served_by(gw, path="/", n=10):
    """The x-upstream of n answers to GET path, each a 200."""
    seen = set()
    for _ in range(n):
        r = http_get(gw, path)
        check(r.status == 200, f"GET {path}: {r}")
        seen.add(r.header("x-upstream"))
    return seen


@_test
def dr_workload_selector(env):
    """A DestinationRule's workloadSelector, answered with the appliance's
    labels as Istio answers it for a gateway: the rule that selects the
    appliance is merged with its host's rule without a selector whose exportTo
    is the same (".", as a selecting rule's counts; its subset v1 wins, the
    other's v2 is kept), one that selects other workloads is left out with a
    warning naming it; a reload that changes the appliance's labels changes
    which rule applies."""
    se = versioned_web(env)
    gw = free_port()
    routes = ("  - match: [{uri: {prefix: /v1}}]\n    route: [{destination: {host: web.example, subset: v1}}]\n"
              "  - route: [{destination: {host: web.example, subset: v2}}]\n")

    def rule(name, selector, v1):
        sel = f"  workloadSelector: {{matchLabels: {{{selector}}}}}\n" if selector else ""
        return (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n"
                f"spec:\n  host: web.example\n  exportTo: [.]\n{sel}"
                f"  subsets:\n  - {{name: v1, labels: {{version: {v1}}}}}\n"
                + ("  - {name: v2, labels: {version: c}}\n" if not selector else ""))

    def conf(role):
        return docs(appliance(env, extra=f"  labels: {{istio: ingressgateway, role: {role}}}\n"), gateway(gw),
                    virtual_service("vs", ["*"], routes), se, rule("mesh", None, "a"),
                    rule("edge", "role: edge", "b"), rule("internal", "role: internal", "c"))

    def served(path):
        return served_by(gw, path)

    path = env.write("isthmus.yaml", conf("edge"))
    rc, out = env.check_config(path)
    check(rc == 0 and "DestinationRule default/internal: spec.workloadSelector" in out
          and "selects other workloads" in out and "DestinationRule default/edge:" not in out,
          f"isthmus -c: the rule for other workloads is named, the appliance's is not: {rc} {out}")
    env.start_gateway(path, gw)
    got = served("/v1")
    check(got == {"b"}, f"subset v1 is the selecting rule's (version b): {got}")
    check(served("/") == {"c"}, "subset v2 comes from the rule without a selector (version c)")
    env.write("isthmus.yaml", conf("internal"))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
    check(served("/v1") == {"c"}, "after the labels changed, the internal rule's v1 (version c)")
    env.write("isthmus.yaml", conf("none"))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
    check(served("/v1") == {"a"}, "with no selecting rule, the mesh rule's v1 (version a)")


@_test
def dr_scopes(env):
    """Which DestinationRule a host gets, as Istio's gateway looks it up, with
    real traffic: for an appliance of the root namespace (istio-system), the
    service's namespace's rule comes before the root namespace's wildcard
    "*.example"; a rule of the root namespace exported to itself only comes
    first of all; a rule whose exportTo leaves the appliance's namespace out is
    not seen, and the wildcard applies again. Each reload changes where subset
    v1 goes."""
    se = versioned_web(env, "shop")
    gw = free_port()
    routes = "  - route: [{destination: {host: web.example, subset: v1}}]\n"

    def rule(name, ns, host, version, export=None):
        return exported("DestinationRule", name, ns, export,
                        f"  host: \"{host}\"\n  subsets: [{{name: v1, labels: {{version: {version}}}}}]\n")

    def conf(*rules):
        return docs(appliance(env, extra="  namespace: istio-system\n"), gateway(gw),
                    virtual_service("vs", ["*"], routes), se, *rules)

    def reload(*rules):
        env.write("isthmus.yaml", conf(*rules))
        check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")

    mesh = rule("mesh", "istio-system", "*.example", "a")
    path = env.write("isthmus.yaml", conf(mesh, rule("web", "shop", "web.example", "b")))
    rc, out = env.check_config(path)
    check(rc == 0 and "DestinationRule shop/web:" not in out
          and "DestinationRule istio-system/mesh: spec.host: for host web.example, DestinationRule shop/web "
          "applies in its place" in out, f"isthmus -c: the wildcard rule is shadowed, not the other: {rc} {out}")
    env.start_gateway(path, gw)
    got = served_by(gw)
    check(got == {"b"}, f"the service's namespace's rule before the root's wildcard: {got}")
    reload(mesh, rule("web", "shop", "web.example", "b"),
           rule("private", "istio-system", "*.example", "c", export="."))
    got = served_by(gw)
    check(got == {"c"}, f"the root namespace's private rule first: {got}")
    reload(mesh, rule("web", "shop", "web.example", "b", export="other"))
    got = served_by(gw)
    check(got == {"a"}, f"a rule not exported to istio-system is not seen: {got}")
    rc, out = env.check_config(env.path("isthmus.yaml"))
    check(rc == 0 and "DestinationRule shop/web: spec.exportTo" in out
          and "not exported to the appliance's namespace istio-system" in out,
          f"isthmus -c names the rule it does not see: {rc} {out}")


@_test
def vs_export_to(env):
    """A VirtualService's exportTo, as istiod answers it for a gateway of the
    appliance's namespace (istio-system): one of another namespace exported to
    that namespace only serves there; one exported elsewhere is not used, and
    isthmus -c names it; of two for one host, the one the appliance's
    namespace exports to itself comes first, then those exported to it, then
    the public ones, whatever the file's order. A ServiceEntry that namespace
    does not see is no service: its host's route answers 503."""
    ups = {n: env.upstream([f"127.0.0.1:0={n}"], name=n)[n] for n in ("a", "b")}
    gw = free_port()
    ses = [service_entry(n, f"{n}.example", [{"address": "127.0.0.1", "port": p}]) for n, p in ups.items()]
    ses.append(service_entry("c", "c.example", [{"address": "127.0.0.1", "port": ups["a"]}])
               .replace("metadata: {name: c}", "metadata: {name: c, namespace: shop}", 1)
               .replace("spec:\n", "spec:\n  exportTo: [.]\n", 1))

    def vs(name, ns, host, dest, export=None):
        return exported("VirtualService", name, ns, export,
                        f"  hosts: [{host}]\n  gateways: [istio-system/gw]\n"
                        f"  http:\n  - route: [{{destination: {{host: {dest}.example}}}}]\n")

    def conf(*vss):
        return docs(appliance(env, extra="  namespace: istio-system\n"), gateway(gw), *ses, *vss)

    def answer(host):
        r = http_get(gw, "/", host=host)
        return r.status, r.header("x-upstream")

    path = env.write("isthmus.yaml", conf(vs("shop", "shop", "shop.example", "a", export="istio-system"),
                                          vs("hidden", "shop", "hidden.example", "a", export="."),
                                          vs("public", "web", "both.example", "a"),
                                          vs("own", "istio-system", "both.example", "b", export="."),
                                          vs("to-c", "istio-system", "c.example", "c")))
    rc, out = env.check_config(path)
    check(rc == 0 and "VirtualService shop/hidden: spec.exportTo" in out
          and "not exported to the appliance's namespace istio-system" in out
          and "VirtualService shop/shop:" not in out and "ServiceEntry shop/c: spec.exportTo" in out,
          f"isthmus -c names the hidden ones only: {rc} {out}")
    env.start_gateway(path, gw)
    check(answer("shop.example") == (200, "a"), f"exported to istio-system: {answer('shop.example')}")
    check(answer("hidden.example")[0] == 404, f"exported to shop only: {answer('hidden.example')}")
    check(answer("both.example") == (200, "b"), f"the appliance namespace's own first: {answer('both.example')}")
    check(answer("c.example")[0] == 503, f"a ServiceEntry istio-system does not see: {answer('c.example')}")


@_test
def vs_creation_order(env):
    """Two VirtualServices of one host and namespace: without creation times
    the file's order decides (the first written); with metadata.creationTimestamp
    (a file exported from a cluster), istiod's order: the oldest first, then by
    name within one second, whatever the file's order. A time that is not RFC
    3339 is an error at its position."""
    ups = {n: env.upstream([f"127.0.0.1:0={n}"], name=n)[n] for n in ("a", "b")}
    gw = free_port()
    ses = [service_entry(n, f"{n}.example", [{"address": "127.0.0.1", "port": p}]) for n, p in ups.items()]
    sock = env.path("ctl.sock")

    def vs(name, dest, created=None):
        ts = f", creationTimestamp: \"{created}\"" if created else ""
        return (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}{ts}}}\n"
                f"spec:\n  hosts: [both.example]\n  gateways: [gw]\n"
                f"  http:\n  - route: [{{destination: {{host: {dest}.example}}}}]\n")

    def conf(*vss):
        return env.write("isthmus.yaml", docs(appliance(env), gateway(gw), *ses, *vss))

    def answer():
        r = http_get(gw, "/", host="both.example")
        return r.header("x-upstream") if r.status == 200 else r.status

    env.start_gateway(conf(vs("zeta", "b"), vs("alpha", "a")), gw)
    check(answer() == "b", f"no creation times, the first written (zeta): {answer()}")
    for zeta, alpha, want, why in (("2024-05-02T00:00:00Z", "2024-05-01T23:59:59Z", "a", "alpha is older"),
                                   ("2024-05-01T00:00:00Z", "2024-05-01T04:00:00+03:00", "b", "zeta is older"),
                                   ("2024-05-01T00:00:00Z", "2024-05-01T00:00:00.9Z", "a", "one second: by name")):
        conf(vs("zeta", "b", zeta), vs("alpha", "a", alpha))
        out = ctl_cmd(sock, "reload")
        check("published" in out, f"reload: {out}")
        check(answer() == want, f"zeta {zeta}, alpha {alpha} ({why}): answered by {answer()}, want {want}")
    path = conf(vs("zeta", "b", "2024-05-01 00:00:00"), vs("alpha", "a"))
    rc, out = env.check_config(path)
    check(rc != 0 and "VirtualService default/zeta: metadata.creationTimestamp" in out and "RFC 3339" in out,
          f"a time that is not RFC 3339: {rc} {out}")


@_test
def proxy_config_concurrency(env):
    """A ProxyConfig's concurrency runs that many workers, over the
    Appliance's workers (2 here), as istiod puts it first: the root
    namespace's 1, then the appliance namespace's own 3 after a reload, whose
    new set of workers serves."""
    up = env.upstream(["127.0.0.1:0=a"], name="a")["a"]
    gw = free_port()

    def conf(*pcs):
        return docs(appliance(env), gateway(gw),
                    virtual_service("vs", ["*"], "  - route: [{destination: {host: a.example}}]\n"),
                    service_entry("a", "a.example", [{"address": "127.0.0.1", "port": up}]), *pcs)

    def pc(name, ns, n):
        return (f"apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\n"
                f"metadata: {{name: {name}, namespace: {ns}}}\nspec:\n  concurrency: {n}\n")

    path = env.write("isthmus.yaml", conf(pc("mesh", "istio-system", 1)))
    rc, out = env.check_config(path)
    check(rc == 0 and "ProxyConfig istio-system/mesh sets concurrency 1, which decides the workers" in out,
          f"isthmus -c says the ProxyConfig decides: {rc} {out}")
    env.start_gateway(path, gw)
    poll(lambda: len(env.workers()) == 1, 20, what="one worker")
    check(http_get(gw, "/").status == 200, "served by the one worker")
    env.write("isthmus.yaml", conf(pc("mesh", "istio-system", 1), pc("here", "default", 3)))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
    poll(lambda: len(env.workers()) == 3, 30, what="three workers after the reload")
    check(http_get(gw, "/").status == 200, "served by the new set")


@_test
def telemetry_access_log(env):
    """A Telemetry of the appliance's namespace that disables the "envoy"
    access log provider (the mesh's turned on in istio-system) stops the
    Appliance's access log: a request while it applies writes no line; once a
    reload takes it out, the next request's is the file's only line."""
    up = env.upstream(["127.0.0.1:0=a"], name="a")["a"]
    gw = free_port()
    log = env.path("access.log")
    tel = ("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: %s, namespace: %s}\n"
           "spec:\n  accessLogging: [%s]\n")

    def conf(*tels):
        return docs(appliance(env, extra=f"  accessLog: {{path: {log}, format: text}}\n"), gateway(gw),
                    virtual_service("vs", ["*"], "  - route: [{destination: {host: a.example}}]\n"),
                    service_entry("a", "a.example", [{"address": "127.0.0.1", "port": up}]),
                    tel % ("mesh-default", "istio-system", "{providers: [{name: envoy}]}"), *tels)

    path = env.write("isthmus.yaml", conf(tel % ("quiet", "default", "{disabled: true}")))
    rc, out = env.check_config(path)
    check(rc == 0 and "Telemetry default/quiet disables" in out, f"isthmus -c says the log is off: {rc} {out}")
    env.start_gateway(path, gw)
    check(http_get(gw, "/first").status == 200, "the first request")
    env.write("isthmus.yaml", conf())
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
    poll(lambda: http_get(gw, "/second").status == 200 and os.path.exists(log)
         and "/second" in open(log).read(), 20, what="the second request's line")
    lines = [ln for ln in open(log).read().splitlines() if ln]
    check(lines and all("/first" not in ln for ln in lines), f"no line of the first request: {lines}")


def _filter_conf(env, gw, up, log, expr, routes):
    """One worker, a text access log at log, routes to a.example (the upstream
    on up) and the mesh's Telemetry whose envoy log has the filter expr."""
    tel = ("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, "
           "namespace: istio-system}\nspec:\n  accessLogging:\n  - providers: [{name: envoy}]\n"
           f"    filter: {{expression: \"{expr}\"}}\n")
    return docs(appliance(env, workers=1, extra=f"  accessLog: {{path: {log}, format: text}}\n"), gateway(gw),
                virtual_service("vs", ["*"], routes),
                service_entry("a", "a.example", [{"address": "127.0.0.1", "port": up}]), tel)


@_test
def telemetry_access_log_filter_no_response(env):
    """An exchange that ended without a response (its client gone while the
    upstream delayed) has no response.code: a filter on it is an error, as in
    Envoy's CEL, and writes no line; `response.code < 400` logs a 200. A code
    0 in its place would have logged the exchange."""
    up = env.upstream(["127.0.0.1:0=a"], name="a")["a"]
    gw = free_port()
    log = env.path("access.log")
    env.start_gateway(env.write("isthmus.yaml", _filter_conf(
        env, gw, up, log, "response.code < 400", "  - route: [{destination: {host: a.example}}]\n")), gw)
    with Conn("127.0.0.1", gw, timeout=10) as c:
        c.send(b"GET /delay/3000 HTTP/1.1\r\nHost: test.local\r\n\r\n")
        poll(lambda: Env.ctl("127.0.0.1", up, "delaying").strip() == "1", 5, what="the delayed request upstream")
    check(http_get(gw, "/after").status == 200, "the 200 after it")
    poll(lambda: os.path.exists(log) and "/after" in open(log).read(), 20, what="the 200's line")
    lines = [ln for ln in open(log).read().splitlines() if ln]
    check(len(lines) == 1 and "/after" in lines[0], f"the 200's line only (none for the exchange without a response): {lines}")


@_test
def telemetry_access_log_filter(env):
    """A Telemetry's accessLogging filter, a CEL expression as Envoy's CEL
    access-log filter evaluates it: with `response.code >= 400 ||
    request.headers['x-debug'] == 'true'`, a 200 writes no line, a 404 and a
    200 asked with x-debug: true do. After a reload, a filter on the
    connection's and the upstream's addresses and ports, the protocol, the
    path and the query logs the one request that has them all; after another,
    one on the response flags and the upstream's attempt count, local address
    and transport failure reason; values read whole; the forwarding fields
    as the upstream gets them. isthmus -c
    names the byte of an unknown attribute, of one isthmus does not give yet,
    and of a syntax error."""
    up = env.upstream(["127.0.0.1:0=a"], name="a")["a"]
    gw = free_port()
    log = env.path("access.log")

    def conf(expr):
        return _filter_conf(env, gw, up, log, expr, "  - match: [{uri: {prefix: /ok}}]\n"
                            "    route: [{destination: {host: a.example}}]\n")

    for expr, want in (("respnse.code >= 400", "byte 0: unknown attribute"),
                       ("upstream.tls_version != ''", "upstream.tls_version: an attribute of Envoy's"),
                       ("response.code >=", "byte ")):
        rc, out = env.check_config(env.write("bad.yaml", conf(expr)))
        check(rc != 0 and "spec.accessLogging[0].filter.expression" in out and want in out,
              f"{expr!r}: rc {rc}, {out}")
    path = env.write("isthmus.yaml",
                     conf("response.code >= 400 || request.headers['x-debug'] == 'true'"))
    env.start_gateway(path, gw)
    check(http_get(gw, "/ok/one").status == 200, "a 200")
    check(http_get(gw, "/missing").status == 404, "a 404")
    check(http_get(gw, "/ok/two", headers={"X-Debug": "true"}).status == 200, "a 200 asked with x-debug")
    poll(lambda: os.path.exists(log) and "/ok/two" in open(log).read(), 20, what="the third request's line")
    lines = [ln for ln in open(log).read().splitlines() if ln]
    check(len(lines) == 2 and "/missing" in lines[0] and " 404 " in lines[0] and "/ok/two" in lines[1],
          f"the 404's and the x-debug request's lines only: {lines}")
    # The connection's and the upstream's attributes, after a reload.
    env.write("isthmus.yaml", conf(f"destination.port == {gw} && source.address.startsWith('127.0.0.1:') "
                                   f"&& upstream.address == '127.0.0.1:{up}' && upstream.port == {up} "
                                   "&& request.protocol == 'HTTP/1.1' && request.url_path == '/ok/three' "
                                   "&& request.query == 'q=1' && xds.route_name != ''"))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
    check(http_get(gw, "/ok/four?q=1").status == 200, "a request the new filter leaves out")
    check(http_get(gw, "/ok/three?q=1").status == 200, "a request the new filter logs")
    poll(lambda: "/ok/three" in open(log).read(), 20, what="the line of /ok/three")
    check("/ok/four" not in open(log).read(), "no line of /ok/four")
    # Response flags as Envoy's bits (NR is 0x100), the upstream's attempt
    # count, local address and transport failure reason, absent before an
    # attempt; the connection's certificates, absent on a plain connection.
    env.write("isthmus.yaml", conf("(response.flags == 256 && !has(upstream.request_attempt_count) && "
                                   "!has(upstream.local_address)) || (response.flags == 0 && "
                                   "upstream.request_attempt_count == 1u && "
                                   "upstream.local_address.startsWith('127.0.0.1:') && "
                                   "upstream.transport_failure_reason == '' && "
                                   "!has(connection.subject_peer_certificate) && "
                                   "!has(connection.termination_details) && "
                                   "request.headers['x-want'] == 'yes')"))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
    check(http_get(gw, "/gone").status == 404, "a request without a route")
    check(http_get(gw, "/ok/five", headers={"x-want": "yes"}).status == 200, "a request the filter logs")
    check(http_get(gw, "/ok/six").status == 200, "a request the filter leaves out")
    poll(lambda: "/ok/five" in open(log).read() and "/gone" in open(log).read(), 20,
         what="the lines of /gone and /ok/five")
    check("/ok/six" not in open(log).read(), "no line of /ok/six")
    # Values over the access log's 1 KiB and the filter's 4 KiB scratch are
    # read whole: a long User-Agent or path kept a request out of the log.
    env.write("isthmus.yaml", conf("request.headers['user-agent'] != 'kube-probe/1.29' && "
                                   "request.path.endsWith('tag=end') && request.useragent != 'x'"))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
    pad = "p" * 1100
    for path, agents in ((f"/ok/seven?pad={pad}&tag=end", ["u" * 5000]),
                         ("/ok/nine?tag=end", ["kube-probe/1.29"]),
                         ("/ok/eight?tag=end", ["v" * 2100, "w" * 2100])):
        check(http_get(gw, path, headers=[("User-Agent", a) for a in agents]).status == 200, f"GET {path}")
    poll(lambda: "/ok/seven" in open(log).read() and "/ok/eight" in open(log).read(), 20,
         what="the lines of /ok/seven and /ok/eight")
    check("/ok/nine" not in open(log).read(), "no line of /ok/nine (its line would be before /ok/eight's)")
    # The forwarding fields as the upstream gets them, as Envoy's connection
    # manager sets them before its filters: a plaintext client's
    # X-Forwarded-Proto is the connection's scheme, X-Forwarded-For has the
    # peer appended, X-Request-Id is the one made here.
    env.write("isthmus.yaml", conf("request.headers['x-forwarded-proto'] == 'http' && "
                                   "request.headers['x-forwarded-for'] == '10.9.9.9,127.0.0.1' && "
                                   "request.headers['x-request-id'] != 'mine' && "
                                   "size(request.headers['x-request-id']) == 36"))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
    edge = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.9.9.9", "X-Request-Id": "mine"}
    check(http_get(gw, "/ok/ten", headers=edge).status == 200, "a request the filter logs")
    check(http_get(gw, "/ok/eleven", headers={"X-Forwarded-Proto": "https"}).status == 200,
          "a request the filter leaves out")
    poll(lambda: "/ok/ten" in open(log).read(), 20, what="the line of /ok/ten")
    check("/ok/eleven" not in open(log).read(), "no line of /ok/eleven")


@_test
def gateway_selector(env):
    """A Gateway applies where its selector selects, as istiod gives it to
    the proxies it selects: on an appliance labelled istio: ingressgateway, a
    pasted egress gateway's Gateway (istio: egressgateway) opens no listener,
    with a warning at its selector, and a VirtualService bound to it and to
    the ingress Gateway is served on the ingress one only; a Gateway without
    a selector applies. Without spec.labels every Gateway of the file
    applies, the appliance being the proxy they select."""
    up = env.upstream(["127.0.0.1:0=a"], name="a")["a"]
    ing, egr, bare = free_port(), free_port(), free_port()

    def gw(name, port, sel):
        g = gateway(port, name=name)
        return g.replace("spec:\n", f"spec:\n  selector: {{istio: {sel}}}\n", 1) if sel else g

    def conf(labels):
        return docs(appliance(env, extra="  labels: {istio: ingressgateway}\n" if labels else ""),
                    gw("ingress", ing, "ingressgateway"), gw("egress", egr, "egressgateway"),
                    gw("bare", bare, None),
                    virtual_service("vs", ["*"], "  - route: [{destination: {host: a.example}}]\n",
                                    gateways=("ingress", "egress", "bare")),
                    service_entry("a", "a.example", [{"address": "127.0.0.1", "port": up}]))

    path = env.write("isthmus.yaml", conf(True))
    rc, out = env.check_config(path)
    check(rc == 0 and "2 listeners" in out and "Gateway default/egress: spec.selector" in out
          and "selects other proxies than this appliance" in out
          and "Gateway default/ingress" not in out and "Gateway default/bare" not in out,
          f"isthmus -c: rc {rc}, {out}")
    env.start_gateway(path, ing)
    check(http_get(ing, "/").status == 200 and http_get(bare, "/").status == 200,
          "the ingress Gateway's and the selector-less one's listeners serve")
    check(not port_open("127.0.0.1", egr), f"the egress Gateway's port {egr} is open")
    # Without labels, the appliance is the proxy every Gateway selects.
    env.write("isthmus.yaml", conf(False))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
    poll(lambda: port_open("127.0.0.1", egr), 20, what=f"the egress Gateway's port {egr} to open")
    check(http_get(egr, "/").status == 200, "the egress Gateway's listener serves without labels")


@_test
def istio_envoyfilter_sample(env):
    """Istio's rate-limit sample, two EnvoyFilters of the root namespace that
    select `istio: ingressgateway`: isthmus -c refuses them, at their kind,
    for an appliance with that label (EnvoyFilter is not implemented yet and
    they would apply); an appliance without it serves with them loaded, each
    with a warning that it does not select the appliance."""
    up = env.upstream(["127.0.0.1:0=a"], name="a")["a"]
    gw = free_port()
    here = os.path.dirname(os.path.abspath(__file__))
    sample = open(os.path.join(here, "..", "fixtures", "istio-samples",
                               "productpage-envoy-ratelimit.yaml")).read()

    def conf(labels):
        return docs(appliance(env, extra=f"  labels: {{istio: {labels}}}\n"), gateway(gw),
                    virtual_service("vs", ["*"], "  - route: [{destination: {host: a.example}}]\n"),
                    service_entry("a", "a.example", [{"address": "127.0.0.1", "port": up}]), sample)

    rc, out = env.check_config(env.write("selected.yaml", conf("ingressgateway")))
    check(rc != 0 and out.count("EnvoyFilter is not implemented yet, and this one applies") == 2
          and "EnvoyFilter istio-system/filter-ratelimit: kind" in out, f"refused: rc {rc}, {out}")
    path = env.write("isthmus.yaml", conf("other"))
    rc, out = env.check_config(path)
    check(rc == 0 and out.count("does not select this appliance") == 2, f"loaded: rc {rc}, {out}")
    env.start_gateway(path, gw)
    check(http_get(gw, "/").status == 200, "served beside the EnvoyFilters")


@_test
def workload_entry_errors(env):
    """What isthmus -c says of WorkloadEntries and selectors: endpoints with a
    workloadSelector is an error, as a bad address or port of an entry is; an
    entry no selector matches, a host-name address under STATIC resolution and
    a selector without labels warn."""
    head = docs(appliance(env), gateway(free_port()),
                virtual_service("vs", ["*"], "  - route: [{destination: {host: vm.example}}]\n"))
    se = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: vm}\nspec:\n"
          "  hosts: [vm.example]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n")
    cases = [
        (se + "  endpoints: [{address: 127.0.0.2}]\n  workloadSelector: {labels: {app: vm}}\n",
         "spec.workloadSelector: only one of endpoints and workloadSelector may be set", True),
        (se + "  workloadSelector: {labels: {app: vm}}\n---\n" +
         workload_entry("a", "not_an_address!", 8080, {"app": "vm"}), "WorkloadEntry default/a: spec.address", True),
        (se + "  workloadSelector: {labels: {app: vm}}\n---\n" +
         workload_entry("a", "127.0.0.2", 70000, {"app": "vm"}), "WorkloadEntry default/a: spec.ports.http", True),
        (se + "  workloadSelector: {labels: {app: vm}}\n---\n" +
         workload_entry("a", "127.0.0.2", 8080, {"app": "other"}), "no ServiceEntry of namespace default selects it",
         False),
        (se + "  workloadSelector: {labels: {app: vm}}\n---\n" +
         workload_entry("a", "vm.internal.example", 8080, {"app": "vm"}),
         "its address is a host name, and resolution is STATIC", False),
        (se + "  workloadSelector: {}\n", "no labels: every WorkloadEntry of namespace default", False),
    ]
    for extra, want, error in cases:
        rc, out = env.check_config(env.write("f.yaml", docs(head, extra)))
        check(want in out and (rc != 0) == error, f"{want!r}: rc {rc}, {out}")


@_test
def long_service_host(env):
    """A ServiceEntry host as long as Istio allows (253 bytes) serves: its
    endpoints' keys fit (a host over 140 bytes was refused at the start with
    "File name too long", after isthmus -c had said the file was valid), the
    route reaches them, and the control socket names them whole."""
    host = ".".join(c * 63 for c in "abc") + "." + "d" * 61
    check(len(host) == 253, f"host of {len(host)} bytes")
    ports = env.upstream(["127.0.0.2:0=a", "127.0.0.3:0=b"], name="long")
    gw = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=1), gateway(gw),
        virtual_service("vs", ["*"], f"  - route: [{{destination: {{host: {host}}}}}]\n"),
        service_entry("long", host, [{"address": "127.0.0.2", "port": ports["a"]},
                                     {"address": "127.0.0.3", "port": ports["b"]}])))
    rc, out = env.check_config(conf)
    check(rc == 0, f"isthmus -c: {out}")
    env.start_gateway(conf, gw)
    seen = {http_get(gw, f"/{i}").status for i in range(4)}
    check(seen == {200}, f"answers: {seen}")
    keys = sorted(e["key"] for e in json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json")))
    check(keys == [f"{host}|127.0.0.2:{ports['a']}", f"{host}|127.0.0.3:{ports['b']}"], f"endpoint keys {keys}")
