#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Configuration-loading scale check: generates appliance files of one shape at
sizes n and k*n, times `isthmus -c -f FILE` on each, and prints the ratio (k for
linear work, k*k for quadratic).

    python3 bench/conf_scale.py [--build build] [--k 4] [--only SHAPE,...] [SHAPE=N ...]

Each shape names what grows: keys of one mapping, hosts of one VirtualService,
resources of one kind, endpoints, subsets... A shape given as SHAPE=N sets its
base size. Files go to a temporary directory, removed at the end. Exit status 0;
this reports, it does not judge (the unit test tests/unit/test_conf_scale.c
does, through the library)."""

import argparse
import os
import subprocess
import sys
import tempfile
import time

CERT_DIR = "."  # set by main: a self-signed server.pem and server.key

APP = """apiVersion: isthmus.io/v1
kind: Appliance
metadata:
  name: t
spec:
  locality: r1/z1
  namespace: default
"""


def gw(hosts=('"*"',), port=8080, name="gw", extra=""):
    hl = "".join("    - %s\n" % h for h in hosts)
    return ("---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: %s\n"
            "spec:\n  servers:\n  - port: {number: %d, name: http, protocol: HTTP}\n"
            "    hosts:\n%s%s" % (name, port, hl, extra))


def vs(name, hosts, routes, gateways=("gw",)):
    hl = "".join("  - %s\n" % h for h in hosts)
    gl = "".join("  - %s\n" % g for g in gateways)
    return ("---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
            "  name: %s\nspec:\n  hosts:\n%s  gateways:\n%s  http:\n%s" % (name, hl, gl, routes))


def route(dests, matches=""):
    d = "".join("    - destination: {host: %s%s}\n" % (h, ", subset: %s" % s if s else "")
                for h, s in dests)
    return "%s%s:\n%s" % (matches, "    route" if matches else "  - route", d)


def se(name, hosts, eps="", ports="  - {number: 80, name: http}\n"):
    hl = "".join("  - %s\n" % h for h in hosts)
    if eps and not eps.startswith("  endpoints:"):
        eps = "  endpoints:\n" + eps
    return ("---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n"
            "  name: %s\nspec:\n  hosts:\n%s  ports:\n%s  resolution: STATIC\n%s"
            % (name, hl, ports, eps))


def ep(addr, extra=""):
    return "  - {address: %s%s}\n" % (addr, extra)


def ip(i):
    return "10.%d.%d.%d" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)


def shape_keys(n):
    # The first case: one mapping with n keys (about 10 bytes each).
    body = "".join("    k%07d: v\n" % i for i in range(n))
    return APP + "  labels:\n" + body


def shape_vs_hosts(n):
    # The second case: one VirtualService with n hosts.
    hosts = ["h%d.example.com" % i for i in range(n)]
    return (APP + gw() + se("s", ["svc.example.com"], ep("10.0.0.1")) +
            vs("v", hosts, route([("svc.example.com", None)])))


def shape_gw_hosts(n):
    # A Gateway server with n hosts, n VirtualServices of one host each.
    hosts = ["h%d.example.com" % i for i in range(n)]
    out = [APP, gw(hosts), se("s", ["svc.example.com"], ep("10.0.0.1"))]
    for i in range(n):
        out.append(vs("v%d" % i, [hosts[i]], route([("svc.example.com", None)])))
    return "".join(out)


def shape_services(n):
    # n ServiceEntries, n VirtualServices routing to them (one cluster each).
    out = [APP, gw()]
    for i in range(n):
        out.append(se("s%d" % i, ["s%d.svc.example.com" % i], ep(ip(i))))
        out.append(vs("v%d" % i, ["h%d.example.com" % i],
                      route([("s%d.svc.example.com" % i, None)])))
    return "".join(out)


def shape_routes(n):
    # One VirtualService with n routes, each to its own host (n clusters).
    out = [APP, gw()]
    rs = []
    for i in range(n):
        rs.append(route([("s%d.svc.example.com" % i, None)],
                        "  - match:\n    - uri: {prefix: /p%d}\n" % i))
    out.append(vs("v", ["a.example.com"], "".join(rs)))
    return "".join(out)


def shape_dests(n):
    # One route with n weighted destinations to distinct hosts.
    d = "".join("    - destination: {host: s%d.svc.example.com}\n      weight: 1\n" % i
                for i in range(n))
    return APP + gw() + vs("v", ["a.example.com"], "  - route:\n" + d)


def shape_matches(n):
    m = "".join("    - uri: {prefix: /p%d}\n" % i for i in range(n))
    return (APP + gw() + se("s", ["svc.example.com"], ep("10.0.0.1")) +
            vs("v", ["a.example.com"], route([("svc.example.com", None)], "  - match:\n" + m)))


def shape_endpoints(n):
    # One ServiceEntry with n endpoints, each in its own locality (at most
    # 8192 endpoints compile: the endpoint-state table's size).
    eps = "".join(ep(ip(i), ", locality: r1/z%d" % i) for i in range(n))
    return (APP + gw() + se("s", ["svc.example.com"], "  endpoints:\n" + eps) +
            vs("v", ["a.example.com"], route([("svc.example.com", None)])))


def shape_subsets(n):
    # A DestinationRule with n subsets, one route per subset.
    subs = "".join("  - name: v%d\n    labels: {version: v%d}\n" % (i, i) for i in range(n))
    dr = ("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n"
          "  name: d\nspec:\n  host: svc.example.com\n  subsets:\n" + subs)
    eps = "".join(ep(ip(i), ", labels: {version: v%d}" % i) for i in range(min(n, 8000)))
    rs = "".join(route([("svc.example.com", "v%d" % i)]) for i in range(n))
    return (APP + gw() + se("s", ["svc.example.com"], "  endpoints:\n" + eps) + dr +
            vs("v", ["a.example.com"], rs))


def shape_drs(n):
    # n DestinationRules (one host each) and n routes to those hosts.
    out = [APP, gw()]
    for i in range(n):
        out.append("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
                   "metadata:\n  name: d%d\nspec:\n  host: s%d.svc.example.com\n"
                   "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n" % (i, i))
    rs = "".join(route([("s%d.svc.example.com" % i, None)]) for i in range(n))
    out.append(vs("v", ["a.example.com"], rs))
    return "".join(out)


def shape_drs_one_host(n):
    # n/2 DestinationRules of one host selecting other workloads, then n/2 without a
    # selector, each with exportTo "." and a subset: what istiod merges pairwise.
    out = [APP, gw(), se("s", ["svc.example.com"], ep("10.0.0.1"))]
    for i in range(n):
        sel = "  workloadSelector: {matchLabels: {app: x%d}}\n" % i if i < n // 2 else "  exportTo: [.]\n"
        out.append("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
                   "metadata:\n  name: d%d\nspec:\n  host: svc.example.com\n%s"
                   "  subsets: [{name: v%d, labels: {version: v%d}}]\n" % (i, sel, i, i))
    out.append(vs("v", ["a.example.com"], route([("svc.example.com", None)])))
    return "".join(out)


def shape_se_hosts(n):
    # One ServiceEntry with n hosts.
    return APP + se("s", ["h%d.svc.example.com" % i for i in range(n)], ep("10.0.0.1"))


def shape_se_ports(n):
    ports = "".join("  - {number: %d, name: p%d}\n" % (i + 1, i) for i in range(n))
    return APP + se("s", ["svc.example.com"], ep("10.0.0.1"), ports)


def shape_ep_ports(n):
    # One endpoint whose ports map names n ports of the ServiceEntry.
    ports = "".join("  - {number: %d, name: p%d}\n" % (i + 1, i) for i in range(n))
    pm = "".join("      p%d: %d\n" % (i, i + 1) for i in range(n))
    eps = "  endpoints:\n  - address: 10.0.0.1\n    ports:\n" + pm
    return APP + se("s", ["svc.example.com"], eps, ports)


def shape_servers(n):
    # A Gateway with n servers on n ports (n listeners).
    srv = "".join("  - port: {number: %d, name: p%d, protocol: HTTP}\n    hosts: ['*']\n"
                  % (1024 + i, i) for i in range(n))
    g = ("---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\n"
         "spec:\n  servers:\n" + srv)
    return (APP + g + se("s", ["svc.example.com"], ep("10.0.0.1")) +
            vs("v", ["a.example.com"], route([("svc.example.com", None)])))


def shape_gateways(n):
    # n Gateways (one port each), one VirtualService bound to all of them.
    out = [APP]
    for i in range(n):
        out.append(gw(port=1024 + i, name="g%d" % i))
    out.append(se("s", ["svc.example.com"], ep("10.0.0.1")))
    out.append(vs("v", ["a.example.com"], route([("svc.example.com", None)]),
                  ["g%d" % i for i in range(n)]))
    return "".join(out)


def shape_healthchecks(n):
    hc = "".join("  - {host: h%d.example.com, port: 80}\n" % i for i in range(n))
    return APP + "  healthChecks:\n" + hc


def shape_pp_ports(n):
    pp = "".join("    - %d\n" % (1024 + i) for i in range(n))
    srv = "".join("  - port: {number: %d, name: p%d, protocol: HTTP}\n    hosts: ['*']\n"
                  % (1024 + i, i) for i in range(n))
    g = ("---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\n"
         "spec:\n  servers:\n" + srv)
    return APP + "  proxyProtocol:\n    ports:\n" + pp + g


def shape_seq(n):
    # A long sequence of scalars (a VirtualService's gateways, all "mesh").
    return APP + vs("v", ["a.example.com"], route([("svc.example.com", None)]),
                    ["mesh"] * n)


def shape_docs(n):
    # n empty documents.
    return APP + "---\n" * n


def shape_string(n):
    # One long scalar: n * 100 bytes.
    return APP + "  user: " + "u" * (100 * n) + "\n"


def shape_tls_servers(n):
    # n HTTPS servers on one port (one certificate each, as one per customer
    # domain), n VirtualServices of one host each. The certificate files are
    # the test ones of the repository.
    cert = CERT_DIR
    srv = "".join("  - port: {number: 8443, name: s%d, protocol: HTTPS}\n    hosts: [h%d.example.com]\n"
                  "    tls: {mode: SIMPLE, credentialName: c}\n" % (i, i) for i in range(n))
    g = ("---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\n"
         "spec:\n  servers:\n" + srv)
    out = [APP, "  credentials:\n  - {name: c, certificate: %s/server.pem, privateKey: %s/server.key}\n"
           % (cert, cert), g, se("s", ["svc.example.com"], ep("10.0.0.1"))]
    for i in range(n):
        out.append(vs("v%d" % i, ["h%d.example.com" % i], route([("svc.example.com", None)])))
    return "".join(out)


def shape_wildcards(n):
    # A Gateway server with n hosts, one VirtualService whose hosts are n
    # wildcards, each covering one server host.
    hosts = ["h%d.d%d.example.com" % (i, i) for i in range(n)]
    return (APP + gw(hosts) + se("s", ["svc.example.com"], ep("10.0.0.1")) +
            vs("v", ["'*.d%d.example.com'" % i for i in range(n)],
               route([("svc.example.com", None)])))


def shape_namespaces(n):
    # n namespaced Gateway hosts ("ns<i>/h<i>...") and n VirtualServices, one
    # per namespace.
    hosts = ["ns%d/h%d.example.com" % (i, i) for i in range(n)]
    out = [APP, gw(hosts), se("s", ["svc.example.com"], ep("10.0.0.1"))]
    for i in range(n):
        out.append(vs("v", ["h%d.example.com" % i], route([("svc.example.com", None)]),
                      ["default/gw"]).replace("  name: v\n", "  name: v\n  namespace: ns%d\n" % i))
    return "".join(out)


def shape_labels(n):
    # Endpoints with n labels each and a subset selecting on n labels.
    lab = "{" + ", ".join("k%d: v" % i for i in range(n)) + "}"
    eps = "".join(ep(ip(i), ", labels: " + lab) for i in range(4))
    dr = ("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n"
          "  name: d\nspec:\n  host: svc.example.com\n  subsets:\n  - name: a\n    labels: " + lab + "\n")
    return (APP + gw() + se("s", ["svc.example.com"], eps) + dr +
            vs("v", ["a.example.com"], route([("svc.example.com", "a")])))


def shape_fprio(n):
    # failoverPriority with n entries, 2000 endpoints.
    fp = "[" + ", ".join("'k%d='" % i for i in range(n)) + "]"
    eps = "".join(ep(ip(i), ", locality: r1/z%d" % (i % 3)) for i in range(2000))
    dr = ("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n"
          "  name: d\nspec:\n  host: svc.example.com\n  trafficPolicy:\n"
          "    outlierDetection: {consecutive5xxErrors: 1}\n"
          "    loadBalancer: {simple: RANDOM, localityLbSetting: {failoverPriority: " + fp + "}}\n")
    return (APP + gw() + se("s", ["svc.example.com"], eps) + dr +
            vs("v", ["a.example.com"], route([("svc.example.com", None)])))


def shape_dr_ports(n):
    # A DestinationRule with n port-level settings and n subsets (failover
    # without outlier detection: the warning pass looks at every pair).
    lb = "loadBalancer: {simple: RANDOM, localityLbSetting: {failover: [{from: r1, to: r2}]}}"
    pls = "".join("    - port: {number: %d}\n      %s\n" % (1 + i, lb) for i in range(n))
    subs = "".join("  - name: v%d\n    trafficPolicy: {%s}\n" % (i, lb) for i in range(n))
    dr = ("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n"
          "  name: d\nspec:\n  host: svc.example.com\n  trafficPolicy:\n"
          "    portLevelSettings:\n" + pls + "  subsets:\n" + subs)
    return APP + dr


def shape_credentials(n):
    cert = CERT_DIR
    cr = "".join("  - {name: c%d, certificate: %s/server.pem, privateKey: %s/server.key}\n"
                 % (i, cert, cert) for i in range(n))
    return APP + "  credentials:\n" + cr


def shape_ciphers(n):
    cert = CERT_DIR
    cs = "[" + ", ".join(["ECDHE-RSA-AES128-GCM-SHA256"] * n) + "]"
    g = ("---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\n"
         "spec:\n  servers:\n  - port: {number: 8443, name: s, protocol: HTTPS}\n    hosts: ['*']\n"
         "    tls: {mode: SIMPLE, serverCertificate: %s/server.pem, privateKey: %s/server.key, "
         "cipherSuites: %s}\n" % (cert, cert, cs))
    return APP + g


SHAPES = {
    "keys": (shape_keys, 25000),
    "vs_hosts": (shape_vs_hosts, 25000),
    "gw_hosts": (shape_gw_hosts, 2000),
    "services": (shape_services, 2000),
    "routes": (shape_routes, 2000),
    "dests": (shape_dests, 2000),
    "matches": (shape_matches, 5000),
    "endpoints": (shape_endpoints, 2000),
    "subsets": (shape_subsets, 2000),
    "drs": (shape_drs, 2000),
    "drs_one_host": (shape_drs_one_host, 2000),
    "se_hosts": (shape_se_hosts, 5000),
    "se_ports": (shape_se_ports, 5000),
    "ep_ports": (shape_ep_ports, 5000),
    "servers": (shape_servers, 2000),
    "gateways": (shape_gateways, 2000),
    "healthchecks": (shape_healthchecks, 5000),
    "pp_ports": (shape_pp_ports, 2000),
    "seq": (shape_seq, 25000),
    "docs": (shape_docs, 25000),
    "string": (shape_string, 25000),
    "tls_servers": (shape_tls_servers, 1000),
    "wildcards": (shape_wildcards, 5000),
    "namespaces": (shape_namespaces, 2000),
    "labels": (shape_labels, 5000),
    "fprio": (shape_fprio, 2000),
    "dr_ports": (shape_dr_ports, 500),
    "credentials": (shape_credentials, 500),
    "ciphers": (shape_ciphers, 2000),
}


def run(binary, path):
    t0 = time.monotonic()
    r = subprocess.run([binary, "-c", "-f", path], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    dt = time.monotonic() - t0
    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    return dt, r.returncode, last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--only", default="")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("sizes", nargs="*", help="SHAPE=N base sizes")
    a = ap.parse_args()
    sizes = {k: v[1] for k, v in SHAPES.items()}
    for s in a.sizes:
        k, _, v = s.partition("=")
        sizes[k] = int(v)
    names = a.only.split(",") if a.only else list(SHAPES)
    binary = os.path.join(a.build, "isthmus")
    tmp = tempfile.mkdtemp(prefix="conf_scale.")
    global CERT_DIR
    CERT_DIR = tmp
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=conf-scale", "-keyout", os.path.join(tmp, "server.key"),
                    "-out", os.path.join(tmp, "server.pem")], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("%-13s %9s %9s %9s %9s %6s  %s" % ("shape", "n", "bytes", "t(n) s", "t(kn) s",
                                             "ratio", "last line of -c at k*n"))
    for name in names:
        gen = SHAPES[name][0]
        n = sizes[name]
        times = []
        for size in (n, a.k * n):
            path = os.path.join(tmp, "%s-%d.yaml" % (name, size))
            with open(path, "w") as f:
                f.write(gen(size))
            dt, rc, last = run(binary, path)
            times.append((dt, rc, last, os.path.getsize(path)))
            if not a.keep:
                os.unlink(path)
        ratio = times[1][0] / times[0][0] if times[0][0] > 0 else float("inf")
        print("%-13s %9d %9d %9.3f %9.3f %6.1f  rc=%d %s" % (
            name, n, times[1][3], times[0][0], times[1][0], ratio, times[1][1],
            times[1][2][:70]))
        sys.stdout.flush()
    if not a.keep:
        for f in ("server.key", "server.pem"):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
