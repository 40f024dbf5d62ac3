# SPDX-License-Identifier: Apache-2.0
"""Integration tests of TLS: HTTPS servers chosen by SNI, client certificates,
RSA and ECDSA on one server, protocol versions, session resumption across
workers, httpsRedirect, PeerAuthentication on plaintext listeners, TLS to
upstreams (nginx), the PROXY protocol, certificate rotation and configuration
errors.

Certificates are made per test with the openssl CLI in the test's temp dir.
Registered into run.py's list by register(test)."""

import base64
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

from harness import (Conn, Registry, Skip, TestFailure, appliance, check, check_wrk_clean, ctl_cmd, curl, docs,
                     file_lines, free_port, gateway, have, http_get, in_netns, make_netns, poll, service_entry,
                     service_entry_protocol,
                     spawn_listening, virtual_service, vmrss_kib, wrk_reap)
from test_security import check_lingering_close

# bench/tinyrec.py's TLS client through memory BIOs (records sent together).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from tinyrec import bio_session, read_until  # noqa: E402

SVC = "tls.test.internal"
_test = Registry()
register = _test.register


# --------------------------------------------------------------------------- certificates


class Pki:
    """CAs and certificates signed by them, made with the openssl CLI in env.dir."""

    def __init__(self, env):
        self.env = env
        self.serial = 1000
        self.cas = {}

    def _openssl(self, *args):
        p = subprocess.run(["openssl", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           cwd=self.env.dir, timeout=60)
        check(p.returncode == 0, f"openssl {' '.join(args)}: {p.stdout.decode(errors='replace')}")

    def ca(self, name="ca"):
        """The CA certificate's path (made on first use); its key is NAME.key."""
        if name not in self.cas:
            crt, key = self.env.path(f"{name}.crt"), self.env.path(f"{name}.key")
            self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                          "-days", "30", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
                          "-addext", "keyUsage=critical,keyCertSign,cRLSign")
            self.cas[name] = (crt, key)
        return self.cas[name][0]

    def leaf(self, name, sans, key="rsa", ca="ca", key_file=None, out=None):
        """A certificate with CN=name and sans (["DNS:a.example.com", "URI:spiffe://..."]),
        signed by ca, for server and client use. key: "rsa" or "ec" (P-256); key_file:
        reuse that key instead; out: base name of the files (default name).
        Returns (certificate path, key path)."""
        self.ca(ca)
        base = out or name
        crt, csr, ext = (self.env.path(base + s) for s in (".crt", ".csr", ".ext"))
        if key_file:
            keyp, keyargs = key_file, ["-key", key_file]
        else:
            keyp = self.env.path(base + ".key")
            alg = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec" else ["rsa:2048"]
            keyargs = ["-newkey", *alg, "-nodes", "-keyout", keyp]
        self._openssl("req", "-new", *keyargs, "-out", csr, "-subj", f"/CN={name}")
        # The SANs in a section of their own: a value may hold a comma.
        alt = "".join(f"{t}.{i}={v}\n" for i, (t, v) in enumerate(x.split(":", 1) for x in sans))
        with open(ext, "w") as f:
            f.write("subjectAltName=@alt\nbasicConstraints=CA:FALSE\n"
                    f"extendedKeyUsage=serverAuth,clientAuth\n[alt]\n{alt}")
        self.serial += 1
        cacrt, cakey = self.cas[ca]
        self._openssl("x509", "-req", "-in", csr, "-CA", cacrt, "-CAkey", cakey, "-set_serial", str(self.serial),
                      "-days", "30", "-sha256", "-out", crt, "-extfile", ext)
        return crt, keyp

    def _ca_dir(self, tag, counter, start, more):
        """A directory for `openssl ca` (an empty index, the counter file
        holding start) and its config with more ({d}: the directory);
        (directory, config path)."""
        d = self.env.path(tag)
        os.makedirs(d, exist_ok=True)
        for f, text in (("index.txt", ""), (counter, start)):
            with open(os.path.join(d, f), "w") as fh:
                fh.write(text)
        cnf = os.path.join(d, "ca.cnf")
        with open(cnf, "w") as fh:
            fh.write(f"[ca]\ndefault_ca = d\n[d]\ndatabase = {d}/index.txt\ndefault_md = sha256\n" +
                     more.replace("{d}", d))
        return d, cnf

    def leaf_dated(self, name, sans, start, end, ca="ca"):
        """leaf() valid from start to end (openssl ca's YYYYMMDDHHMMSSZ)."""
        self.ca(ca)
        _, cnf = self._ca_dir(f"{name}-dated.d", "serial", "1000\n",
                              "serial = {d}/serial\nnew_certs_dir = {d}\npolicy = p\ncopy_extensions = copy\n"
                              "[p]\ncommonName = supplied\n[x]\n"
                              f"subjectAltName={','.join(sans)}\nextendedKeyUsage=serverAuth,clientAuth\n")
        crt, key, csr = (self.env.path(f"{name}{s}") for s in (".crt", ".key", ".csr"))
        self._openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                      "-subj", f"/CN={name}")
        cacrt, cakey = self.cas[ca]
        self._openssl("ca", "-batch", "-config", cnf, "-keyfile", cakey, "-cert", cacrt, "-in", csr, "-out", crt,
                      "-startdate", start, "-enddate", end, "-extensions", "x", "-notext")
        return crt, key

    def crl(self, revoked, ca="ca"):
        """A CRL of ca revoking the certificates at the paths in revoked; its path."""
        self.ca(ca)
        _, cnf = self._ca_dir(f"{ca}-crl.d", "crlnumber", "01\n",
                              "crlnumber = {d}/crlnumber\ndefault_crl_days = 1\n")
        cacrt, cakey = self.cas[ca]
        for crt in revoked:
            self._openssl("ca", "-config", cnf, "-keyfile", cakey, "-cert", cacrt, "-revoke", crt)
        out = self.env.path(f"{ca}.crl")
        self._openssl("ca", "-config", cnf, "-keyfile", cakey, "-cert", cacrt, "-gencrl", "-out", out)
        return out

    def rotate(self, path_crt, path_key, name, sans, garbage=False):
        """Replaces the pair on disk the way cert-manager does: new files beside the
        old ones, renamed into place. garbage: the new certificate is not PEM.
        Returns the new serial (decimal) or None."""
        tmp = os.path.basename(path_crt) + ".next"
        if garbage:
            with open(self.env.path(tmp + ".crt"), "w") as f:
                f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
            os.replace(self.env.path(tmp + ".crt"), path_crt)
            return None
        crt, key = self.leaf(name, sans, out=tmp)
        os.replace(key, path_key)
        os.replace(crt, path_crt)
        return self.serial


# --------------------------------------------------------------------------- configuration


def tls_simple(crt_key, mode="SIMPLE"):
    """A server tls block's inside: mode and the certificate pair."""
    return f"mode: {mode}, serverCertificate: {crt_key[0]}, privateKey: {crt_key[1]}"


def server(port, hosts, tls, protocol="HTTPS"):
    """One Gateway server; tls: the inside of its tls flow map (None: no tls)."""
    hl = ", ".join(f'"{h}"' for h in hosts)
    s = f"  - port: {{number: {port}, name: {protocol.lower()}-{port}, protocol: {protocol}}}\n    hosts: [{hl}]\n"
    return s + (f"    tls: {{{tls}}}\n" if tls is not None else "")


def gateway_of(*servers, name="gw"):
    """A Gateway of servers; a port name a server before has gets "-2", "-3"...
    (Istio: port names in servers must be unique), so the listener keeps the
    first one's."""
    seen = {}

    def unique(m):
        seen[m.group(1)] = seen.get(m.group(1), 0) + 1
        return m.group(0) if seen[m.group(1)] == 1 else f"name: {m.group(1)}-{seen[m.group(1)]},"
    named = [re.sub(r"name: ([^,}]+),", unique, s, count=1) for s in servers]
    return (f"apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n"
            f"  servers:\n" + "".join(named))


def route_to(host):
    return f"  - route: [{{destination: {{host: {host}}}}}]\n"


def world(env, servers, vs_hosts=("*",), workers=2, app_extra="", extra_docs=(), start=True, timeouts=None):
    """An upstream "a" on 127.0.0.2, the Gateway of servers, one VirtualService per
    host in vs_hosts routing to it; starts the gateway on the first server's port
    unless start is false. Returns the config path."""
    up = env.upstream(["127.0.0.2:0=a"], name="a")
    vss = [virtual_service(f"vs{i}", [h], route_to(SVC)) for i, h in enumerate(vs_hosts)]
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=workers, timeouts=timeouts, extra=app_extra), gateway_of(*servers), *vss,
        service_entry("tls", SVC, [{"address": "127.0.0.2", "port": up["a"]}]), *extra_docs))
    if start:
        env.start_gateway(conf, int(re.search(r"number: (\d+)", servers[0]).group(1)))
    return conf


def peer_auth(name, mode, namespace="default", selector=None, port_modes=None):
    s = (f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
         f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n")
    if selector:
        s += "  selector: {matchLabels: {" + ", ".join(f"{k}: {v}" for k, v in selector.items()) + "}}\n"
    s += f"  mtls: {{mode: {mode}}}\n"
    if port_modes:
        s += "  portLevelMtls:\n" + "".join(f'    "{p}": {{mode: {m}}}\n' for p, m in port_modes.items())
    return s


def mesh_identity(pki):
    crt, key = pki.leaf("gw-mesh", ["URI:spiffe://cluster.local/ns/default/sa/gateway"])
    return f"  meshIdentity: {{certificate: {crt}, privateKey: {key}, caCertificates: {pki.ca()}}}\n"


# --------------------------------------------------------------------------- clients


def client_ctx(pki, ca="ca", cert=None, alpn=None, max_version=None, ciphers=None):
    """A client context trusting ca (no hostname check: the tests look at the
    certificate themselves), presenting cert (a (crt, key) pair) when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(pki.ca(ca))
    if cert:
        ctx.load_cert_chain(*cert)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if max_version:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


class TlsConn(Conn):
    """Conn over TLS. preamble: bytes sent in the clear before the ClientHello (a PROXY header)."""

    def __init__(self, port, sni, ctx, preamble=b"", timeout=10.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if preamble:
                raw.sendall(preamble)
            self.sock = ctx.wrap_socket(raw, server_hostname=sni)
        except BaseException:
            raw.close()
            raise
        self.buf = b""
        self.timeout = timeout


def tls_get(port, sni, ctx, path="/", host=None, preamble=b""):
    with TlsConn(port, sni, ctx, preamble) as c:
        return c.request("GET", path, host or sni or "test.local")


def served(port, sni, ctx):
    """The certificate the gateway presents for sni: (CN, [SAN values], serial as int)."""
    with TlsConn(port, sni, ctx) as c:
        cert = c.sock.getpeercert()
    cn = [v for rdn in cert["subject"] for k, v in rdn if k == "commonName"]
    return cn[0], [v for _, v in cert.get("subjectAltName", ())], int(cert["serialNumber"], 16)


def refused(port, sni, ctx, path="/", host=None, preamble=b""):
    """Asserts the gateway ends the TLS connection (an alert, a reset or a close)
    without an HTTP response; returns what the client saw."""
    try:
        r = tls_get(port, sni, ctx, path, host, preamble)
    except socket.timeout:
        raise TestFailure(f"port {port} sni {sni!r}: neither answered nor closed within 10 s")
    except (ssl.SSLError, OSError, EOFError) as e:
        return f"{type(e).__name__}: {e}"
    raise TestFailure(f"port {port} sni {sni!r}: expected the connection refused, got HTTP {r.status}")


def handshake_refused(port, sni, ctx):
    """Asserts the handshake itself fails (nothing readable after it)."""
    try:
        with TlsConn(port, sni, ctx):
            pass
    except socket.timeout:
        raise TestFailure(f"port {port} sni {sni!r}: handshake neither done nor refused within 10 s")
    except (ssl.SSLError, OSError) as e:
        return f"{type(e).__name__}: {e}"
    raise TestFailure(f"port {port} sni {sni!r}: handshake succeeded, expected it refused")


def plain_refused(port, data=b"GET / HTTP/1.1\r\nHost: test.local\r\n\r\n", addr="127.0.0.1"):
    """Asserts the gateway closes a connection that sent data, with no HTTP response."""
    with Conn(addr, port, timeout=5) as c:
        c.send(data)
        closed = c.closed_by_peer(5)
        check(closed and b"HTTP/" not in c.buf,
              f"port {port}: {data[:40]!r} should be closed without a response; closed={closed} got {c.buf[:200]!r}")


def s_client(port, *args, sni=None, data=b"", timeout=20):
    """openssl s_client's exit status and output; sni None: no SNI at all."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
    argv += ["-servername", sni] if sni else ["-noservername"]
    p = subprocess.run(argv + list(args), input=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def header_fields(body):
    """The upstream's /headers echo as {lowercased name: [values]}."""
    fields = {}
    for line in body.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        fields.setdefault(k.strip().lower(), []).append(v.strip())
    return fields


# --------------------------------------------------------------------------- SNI


@_test
def tls_sni_selects_server(env):
    """One HTTPS port, four servers: the exact host, the wildcard and "*" each
    present their own certificate; the routes are the server's own;
    X-Forwarded-Proto is https; ALPN picks http/1.1."""
    pki = Pki(env)
    port = free_port()
    a = pki.leaf("a", ["DNS:a.example.com"])
    b = pki.leaf("b", ["DNS:b.example.com"], key="ec")
    wild = pki.leaf("wild", ["DNS:*.example.com"])
    anyc = pki.leaf("any", ["DNS:fallback.test"])
    world(env, [server(port, ["a.example.com"], tls_simple(a)), server(port, ["b.example.com"], tls_simple(b)),
                server(port, ["*.example.com"], tls_simple(wild)), server(port, ["*"], tls_simple(anyc))],
          vs_hosts=("a.example.com", "b.example.com", "*.example.com", "fallback.test"))
    ctx = client_ctx(pki)
    for sni, want in (("a.example.com", "a"), ("b.example.com", "b"), ("x.example.com", "wild"),
                      ("x.y.example.com", "wild"), ("other.org", "any"), (None, "any")):
        cn, sans, _ = served(port, sni, ctx)
        check(cn == want, f"SNI {sni!r}: served CN={cn} {sans}, want CN={want}")
    r = tls_get(port, "a.example.com", client_ctx(pki, alpn=["h2", "http/1.1"]), "/headers")
    check(r.status == 200 and r.header("x-upstream") == "a", f"GET via SNI a.example.com: {r}")
    f = header_fields(r.body)
    check(f.get("x-forwarded-proto") == ["https"], f"X-Forwarded-Proto upstream: {f.get('x-forwarded-proto')}")
    # ALPN as Istio's gateway servers offer it: h2 first, http/1.1 for the rest.
    with TlsConn(port, "a.example.com", client_ctx(pki, alpn=["h2", "http/1.1"])) as c:
        check(c.sock.selected_alpn_protocol() == "h2", f"ALPN chose {c.sock.selected_alpn_protocol()!r}")
    with TlsConn(port, "a.example.com", client_ctx(pki, alpn=["http/1.1"])) as c:
        check(c.sock.selected_alpn_protocol() == "http/1.1", f"ALPN chose {c.sock.selected_alpn_protocol()!r}")
    r = tls_get(port, "a.example.com", ctx, host="b.example.com")
    check(r.status == 404, f"Host of another server through a.example.com's server: {r.status}, want 404")
    check(tls_get(port, "x.y.example.com", ctx).status == 200, "the wildcard server's route")
    check(tls_get(port, "other.org", ctx, host="fallback.test").status == 200, "the \"*\" server's route")
    # curl, verifying the chain and the name as a user would.
    rc, out, err = curl(["--cacert", pki.ca(), "--resolve", f"b.example.com:{port}:127.0.0.1", "-o", "/dev/null",
                         "-w", "%{http_code} %{scheme}", f"https://b.example.com:{port}/"])
    check(rc == 0 and out == "200 HTTPS", f"curl https://b.example.com: rc {rc} {out!r} {err}")
    # The control socket lists each HTTPS server's vhosts, and the routes count responses.
    routes = json.loads(ctl_cmd(env.path("ctl.sock"), "show routes json"))
    servers = {vh["https_server"] for li in routes for vh in li["vhosts"]}
    check(len(servers) == 4 and "" not in servers, f"show routes: HTTPS servers {servers}")
    text = ctl_cmd(env.path("ctl.sock"), "show routes")
    check("https_server=" in text, f"show routes (text) does not name the HTTPS servers:\n{text}")


@_test
def tls_reload_client_auth_changed(env):
    """A reload that changes what a server asks of clients (SIMPLE becomes
    MUTUAL, then its CA changes) leaves the connections it took before
    unserved: their next request is 421 Misdirected Request and the
    connection closes, so the client connects again and is checked (they were
    served on, the new routes given to a client that never showed a
    certificate); so does one that makes it a TLS server of tcp routes. A
    reload that changes only the server's certificate keeps them."""
    pki = Pki(env)
    port = free_port()
    first, second = pki.leaf("first", ["DNS:m.example.com"]), pki.leaf("second", ["DNS:m.example.com"])
    client = pki.leaf("client", ["URI:spiffe://x/client"])
    other_ca_client = pki.leaf("client2", ["URI:spiffe://x/client"], ca="ca2")
    conf = world(env, [server(port, ["m.example.com"], tls_simple(first))], vs_hosts=("m.example.com",))
    text = open(conf).read()

    def reload(new_tls):
        with open(conf, "w") as f:
            f.write(text.replace(tls_simple(first), new_tls))
        ans = ctl_cmd(env.path("ctl.sock"), "reload")
        check("published" in ans, f"reload: {ans!r}")

    ctx = client_ctx(pki)
    with TlsConn(port, "m.example.com", ctx) as c:
        check(c.request("GET", "/", "m.example.com").status == 200, "before the reload")
        simple_session = c.sock.session  # a ticket of the SIMPLE server
        reload(tls_simple(second))
        r = c.request("GET", "/", "m.example.com")
        check(r.status == 200, f"a new server certificate only: the connection serves on: {r}")
        reload(f"{tls_simple(first, 'MUTUAL')}, caCertificates: {pki.ca()}")
        r = c.request("GET", "/", "m.example.com")
        check(r.status == 421 and c.closed_by_peer(5), f"SIMPLE became MUTUAL: want 421 and the close, got {r}")
    refused(port, "m.example.com", ctx)
    # Nor does a session of the SIMPLE server resume on the MUTUAL one: the
    # session context (the settings' fingerprint) tells them apart, or a ticket
    # taken before would skip the client certificate the server now requires.
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="m.example.com", session=simple_session) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: m.example.com\r\nConnection: close\r\n\r\n")
            got = s.recv(64)
            resumed = s.session_reused
    except (ssl.SSLError, OSError, EOFError):
        got, resumed = b"", False
    check(not resumed and not got.startswith(b"HTTP/1.1 200"),
          f"a SIMPLE server's session resumed on the MUTUAL server without a client certificate: {got!r}")
    with TlsConn(port, "m.example.com", client_ctx(pki, cert=client)) as c:
        check(c.request("GET", "/", "m.example.com").status == 200, "a client certificate after the reload")
        reload(f"{tls_simple(first, 'MUTUAL')}, caCertificates: {pki.ca('ca2')}")
        r = c.request("GET", "/", "m.example.com")
        check(r.status == 421, f"another client CA: want 421, got {r}")
    with TlsConn(port, "m.example.com", client_ctx(pki, cert=other_ca_client)) as c:
        check(c.request("GET", "/", "m.example.com").status == 200, "the new CA's client")
        # The server becomes a TLS server of tcp routes: its HTTP clients
        # are not served by them (they got 404 on and on).
        with open(conf, "w") as f:
            f.write(text.replace(tls_simple(first), f"{tls_simple(first, 'MUTUAL')}, caCertificates: {pki.ca('ca2')}")
                    .replace("protocol: HTTPS", "protocol: TLS") +
                    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs-tcp}\n"
                    f"spec:\n  hosts: [m.example.com]\n  gateways: [gw]\n  tcp:\n"
                    f"  - route: [{{destination: {{host: {SVC}}}}}]\n")
        ans = ctl_cmd(env.path("ctl.sock"), "reload")
        check("published" in ans, f"reload: {ans!r}")
        r = c.request("GET", "/", "m.example.com")
        check(r.status == 421 and c.closed_by_peer(5), f"HTTPS became TLS for tcp routes: want 421 and the close, got {r}")


@_test
def tls_sni_unknown_and_absent(env):
    """No "*" server: the longest wildcard wins, and an SNI that no server has
    is closed without a handshake; so is a ClientHello without SNI, as Envoy
    closes it (Istio gives each server but a "*" one its hosts as server
    names: no filter chain matches it); it got the port's first server."""
    pki = Pki(env)
    port = free_port()
    first = pki.leaf("first", ["DNS:a.example.com"])
    wild = pki.leaf("wild", ["DNS:*.example.com"])
    deep = pki.leaf("deep", ["DNS:*.deep.example.com"])
    world(env, [server(port, ["a.example.com"], tls_simple(first)),
                server(port, ["*.example.com"], tls_simple(wild)),
                server(port, ["*.deep.example.com"], tls_simple(deep))],
          vs_hosts=("a.example.com", "*.example.com", "*.deep.example.com"))
    ctx = client_ctx(pki)
    for sni, want in (("x.deep.example.com", "deep"), ("x.y.deep.example.com", "deep"),
                      ("deep.example.com", "wild"), ("x.example.com", "wild")):
        cn, _, _ = served(port, sni, ctx)
        check(cn == want, f"SNI {sni!r}: served CN={cn}, want {want}")
    for sni in ("other.org", "example.com", None):
        why = handshake_refused(port, sni, ctx)
        check("certificate verify failed" not in why, f"SNI {sni}: a certificate was sent ({why})")
    rc, out = s_client(port, sni="other.org")
    check("Server certificate" not in out and "-----BEGIN CERTIFICATE" not in out,
          f"s_client with an unknown SNI got a certificate: {out}")
    check(tls_get(port, "x.deep.example.com", ctx).status == 200, "gateway broken after refusals")


# --------------------------------------------------------------------------- client certificates


@_test
def tls_mutual(env):
    """MUTUAL with subjectAltNames: no client certificate, one from another CA and
    one with another SAN are refused; the right one is served. A second server
    on the port takes its certificate and CA from Appliance credentials."""
    pki = Pki(env)
    port = free_port()
    srv = pki.leaf("m", ["DNS:m.example.com"])
    good = pki.leaf("client", ["URI:spiffe://x/client"])
    other_san = pki.leaf("client-other", ["URI:spiffe://x/other"])
    foreign = pki.leaf("client-foreign", ["URI:spiffe://x/client"], ca="ca2")
    cred = pki.leaf("creds", ["DNS:creds.example.com"])
    creds = (f"  credentials:\n  - {{name: web, certificate: {cred[0]}, privateKey: {cred[1]}}}\n"
             f"  - {{name: web-cacert, caCertificates: {pki.ca()}}}\n")
    mutual = (f"{tls_simple(srv, 'MUTUAL')}, caCertificates: {pki.ca()}, "
              'subjectAltNames: ["spiffe://x/client"]')
    world(env, [server(port, ["m.example.com"], mutual),
                server(port, ["creds.example.com"], "mode: MUTUAL, credentialName: web")],
          vs_hosts=("m.example.com", "creds.example.com"), app_extra=creds)
    for sni in ("m.example.com", "creds.example.com"):
        refused(port, sni, client_ctx(pki))
        refused(port, sni, client_ctx(pki, cert=foreign))
        r = tls_get(port, sni, client_ctx(pki, cert=good), "/headers")
        check(r.status == 200, f"{sni} with a good client certificate: {r}")
    refused(port, "m.example.com", client_ctx(pki, cert=other_san))
    r = tls_get(port, "creds.example.com", client_ctx(pki, cert=other_san))
    check(r.status == 200, f"creds.example.com has no subjectAltNames, any SAN from the CA goes: {r}")
    cn, _, _ = served(port, "creds.example.com", client_ctx(pki, cert=good))
    check(cn == "creds", f"credentialName's certificate not served: CN={cn}")
    rc, out, err = curl(["--cacert", pki.ca(), "--cert", good[0], "--key", good[1], "--resolve",
                         f"m.example.com:{port}:127.0.0.1", "-o", "/dev/null", "-w", "%{http_code}",
                         f"https://m.example.com:{port}/"])
    check(rc == 0 and out == "200", f"curl with a client certificate: rc {rc} {out!r} {err}")
    rc, out, err = curl(["--cacert", pki.ca(), "--resolve", f"m.example.com:{port}:127.0.0.1", "-o", "/dev/null",
                         "-w", "%{http_code}", f"https://m.example.com:{port}/"])
    check(rc != 0 and out in ("", "000"), f"curl without a client certificate: rc {rc} {out!r}")


@_test
def tls_mutual_crl(env):
    """caCrl: a client certificate the CA revoked is refused; another one of the
    same CA is served."""
    pki = Pki(env)
    port = free_port()
    srv = pki.leaf("r", ["DNS:r.example.com"])
    good = pki.leaf("client", ["URI:spiffe://x/client"])
    revoked = pki.leaf("client-revoked", ["URI:spiffe://x/client"])
    crl = pki.crl([revoked[0]])
    world(env, [server(port, ["*"], f"{tls_simple(srv, 'MUTUAL')}, "
                                     f"caCertificates: {pki.ca()}, caCrl: {crl}")])
    r = tls_get(port, "r.example.com", client_ctx(pki, cert=good))
    check(r.status == 200, f"a certificate the CRL does not list: {r}")
    refused(port, "r.example.com", client_ctx(pki, cert=revoked))


@_test
def tls_mutual_credential_crl(env):
    """credentialName: the client CA and its CRL come from the credential
    itself, or from "<name>-cacert" (Istio's SDS naming: the -cacert secret
    holds ca.crt and ca.crl); a certificate that CRL lists is refused either
    way, another of the CA served."""
    pki = Pki(env)
    port = free_port()
    one = pki.leaf("one", ["DNS:one.example.com"])
    two = pki.leaf("two", ["DNS:two.example.com"])
    good = pki.leaf("client", ["URI:spiffe://x/client"])
    revoked = pki.leaf("client-revoked", ["URI:spiffe://x/client"])
    crl = pki.crl([revoked[0]])
    creds = (f"  credentials:\n  - {{name: one, certificate: {one[0]}, privateKey: {one[1]}}}\n"
             f"  - {{name: one-cacert, caCertificates: {pki.ca()}, caCrl: {crl}}}\n"
             f"  - {{name: two, certificate: {two[0]}, privateKey: {two[1]}, "
             f"caCertificates: {pki.ca()}, caCrl: {crl}}}\n")
    world(env, [server(port, ["one.example.com"], "mode: MUTUAL, credentialName: one"),
                server(port, ["two.example.com"], "mode: MUTUAL, credentialName: two")],
          vs_hosts=("one.example.com", "two.example.com"), app_extra=creds)
    for sni in ("one.example.com", "two.example.com"):
        r = tls_get(port, sni, client_ctx(pki, cert=good))
        check(r.status == 200, f"{sni}: a certificate the CRL does not list: {r}")
        refused(port, sni, client_ctx(pki, cert=revoked))


@_test
def tls_envoy_validation_defaults(env):
    """What Envoy does with istiod's output where the Gateway says nothing:
    without cipherSuites, TLS 1.2 takes Envoy's ECDHE AEAD suites only (a
    static-RSA or CBC suite was taken, OpenSSL's defaults); an intermediate CA
    given as caCertificates verifies what it issued (Envoy's partial chain:
    it was "unknown ca"); and caCrl is checked for every certificate of the
    chain, so a client certificate whose intermediate CA the root revoked is
    refused (only the leaf was checked)."""
    pki = Pki(env)
    port = free_port()
    srv = pki.leaf("v", ["DNS:*.example.com"])
    # An intermediate CA under the root, and a client certificate it issued.
    ikey, icsr, icrt, iext = (env.path(f"int{s}") for s in (".key", ".csr", ".crt", ".ext"))
    with open(iext, "w") as f:
        f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    pki._openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", ikey, "-out", icsr, "-subj", "/CN=int")
    pki._openssl("x509", "-req", "-in", icsr, "-CA", pki.ca(), "-CAkey", env.path("ca.key"), "-set_serial", "5000",
                 "-days", "30", "-sha256", "-out", icrt, "-extfile", iext)
    pki.cas["int"] = (icrt, ikey)
    client = pki.leaf("ic", ["URI:spiffe://x/ic"], ca="int")
    bundle, crls = env.path("bundle.crt"), env.path("chain.crl")
    with open(bundle, "w") as f:
        f.write(open(pki.ca()).read() + open(icrt).read())
    root_crl, int_crl = pki.crl([icrt], ca="ca"), pki.crl([], ca="int")
    with open(crls, "w") as f:
        f.write(open(root_crl).read() + open(int_crl).read())
    world(env, [server(port, ["a.example.com"], tls_simple(srv)),
                server(port, ["partial.example.com"], f"{tls_simple(srv, 'MUTUAL')}, caCertificates: {icrt}"),
                server(port, ["crl.example.com"],
                       f"{tls_simple(srv, 'MUTUAL')}, caCertificates: {bundle}, caCrl: {crls}")],
          vs_hosts=("a.example.com", "partial.example.com", "crl.example.com"))
    tls12 = ssl.TLSVersion.TLSv1_2
    for suite in ("AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA"):
        handshake_refused(port, "a.example.com", client_ctx(pki, max_version=tls12, ciphers=suite))
    r = tls_get(port, "a.example.com", client_ctx(pki, max_version=tls12, ciphers="ECDHE-RSA-AES128-GCM-SHA256"))
    check(r.status == 200, f"Envoy's default suite refused: {r}")
    r = tls_get(port, "partial.example.com", client_ctx(pki, cert=client))
    check(r.status == 200, f"a certificate of the intermediate CA given as the trust anchor: {r}")
    refused(port, "crl.example.com", client_ctx(pki, cert=client))


@_test
def tls_istio_mutual_server_crl_and_sans(env):
    """An ISTIO_MUTUAL Gateway server applies its caCrl and subjectAltNames to
    mesh clients, as Istio's BuildListenerTLSContext passes them (the CRL was
    dropped without a word, so a revoked mesh certificate was served, and
    subjectAltNames were an error); its versions are not applied (Istio
    applies them to the other modes only): a warning, and TLS 1.2 clients
    still served."""
    pki = Pki(env)
    port = free_port()
    good = pki.leaf("mesh-good", ["URI:spiffe://cluster.local/ns/default/sa/good"])
    other = pki.leaf("mesh-other", ["URI:spiffe://cluster.local/ns/default/sa/other"])
    revoked = pki.leaf("mesh-revoked", ["URI:spiffe://cluster.local/ns/default/sa/good"])
    crl = pki.crl([revoked[0]])
    conf = world(env, [server(port, ["*"], f'mode: ISTIO_MUTUAL, caCrl: {crl}, minProtocolVersion: TLSV1_3, '
                                           'subjectAltNames: ["spiffe://cluster.local/ns/default/sa/good"]')],
                 app_extra=mesh_identity(pki))
    r = tls_get(port, "a.example.com", client_ctx(pki, cert=good, max_version=ssl.TLSVersion.TLSv1_2))
    check(r.status == 200, f"a mesh client with the SAN, over TLS 1.2: {r}")
    refused(port, "a.example.com", client_ctx(pki, cert=revoked))
    refused(port, "a.example.com", client_ctx(pki, cert=other))
    out = subprocess.run([env.isthmus, "-c", "-f", conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=60).stdout.decode()
    check("tls.minProtocolVersion: minProtocolVersion has no effect with ISTIO_MUTUAL" in out, f"isthmus -c: {out}")


@_test
def tls_optional_mutual(env):
    """OPTIONAL_MUTUAL: no certificate is fine, a good one is fine, one the CA did
    not sign is refused."""
    pki = Pki(env)
    port = free_port()
    srv = pki.leaf("o", ["DNS:o.example.com"])
    world(env, [server(port, ["*"], f"{tls_simple(srv, 'OPTIONAL_MUTUAL')}, "
                                     f"caCertificates: {pki.ca()}")])
    check(tls_get(port, "o.example.com", client_ctx(pki)).status == 200, "no client certificate refused")
    good = pki.leaf("client", ["URI:spiffe://x/client"])
    check(tls_get(port, "o.example.com", client_ctx(pki, cert=good)).status == 200, "good certificate refused")
    foreign = pki.leaf("client-foreign", ["URI:spiffe://x/client"], ca="ca2")
    refused(port, "o.example.com", client_ctx(pki, cert=foreign))


@_test
def tls_optional_mutual_with_sans(env):
    """OPTIONAL_MUTUAL with subjectAltNames requires a certificate, as Envoy's
    validator does once it has names to check: none is refused, one with a
    listed SAN is served, one with another SAN is refused."""
    pki = Pki(env)
    port = free_port()
    srv = pki.leaf("os", ["DNS:os.example.com"])
    world(env, [server(port, ["*"], f"{tls_simple(srv, 'OPTIONAL_MUTUAL')}, caCertificates: {pki.ca()}, "
                                     'subjectAltNames: ["spiffe://x/client"]')])
    refused(port, "os.example.com", client_ctx(pki))
    good = pki.leaf("client", ["URI:spiffe://x/client"])
    check(tls_get(port, "os.example.com", client_ctx(pki, cert=good)).status == 200, "listed SAN refused")
    other = pki.leaf("client-other", ["URI:spiffe://x/other"])
    refused(port, "os.example.com", client_ctx(pki, cert=other))


def cert_hash(crt, colons=False):
    """verifyCertificateHash of the certificate at crt: its SHA-256 in hex, or
    as `openssl x509 -fingerprint -sha256` prints it (upper case, colons)."""
    p = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-fingerprint", "-sha256"],
                       stdout=subprocess.PIPE, check=True)
    fp = p.stdout.decode().strip().split("=", 1)[1]
    return fp if colons else fp.replace(":", "").lower()


def spki_pin(crt):
    """verifyCertificateSpki of the certificate at crt: the SHA-256 of its DER
    SubjectPublicKeyInfo, in base64."""
    pub = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-pubkey"], stdout=subprocess.PIPE,
                         check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub, stdout=subprocess.PIPE,
                         check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@_test
def tls_client_pins(env):
    """A MUTUAL server's verifyCertificateHash and verifyCertificateSpki: a
    client certificate must match one of either list (the colon-separated form
    too), besides being signed by the CA; the SPKI pin still takes a
    certificate re-issued for the same key; a mismatch ends the handshake with
    an alert. OPTIONAL_MUTUAL with pins requires a certificate, as Envoy's
    validator does once it has hashes or names to check.
    insecureSkipVerify takes any client certificate (it is still required), and
    XFCC describes it. caCertCredentialName takes the client CA from another
    credential, over the CA that credentialName's own would give. Bad pins and
    misplaced fields are errors naming the field; on a PASSTHROUGH server they
    are a warning."""
    pki = Pki(env)
    port = free_port()
    srv = pki.leaf("p", ["DNS:*.example.com"])
    hashed = pki.leaf("hashed", ["URI:spiffe://x/hashed"])
    keyed = pki.leaf("keyed", ["URI:spiffe://x/keyed"])
    rekeyed = pki.leaf("rekeyed", ["URI:spiffe://x/keyed"], key_file=keyed[1])
    other = pki.leaf("other", ["URI:spiffe://x/other"])
    alien = pki.leaf("alien", ["URI:spiffe://x/alien"], ca="ca2")
    pins = (f'verifyCertificateHash: ["{cert_hash(hashed[0], colons=True)}", "{cert_hash(alien[0])}"], '
            f'verifyCertificateSpki: ["{spki_pin(keyed[0])}"]')
    creds = (f"  credentials:\n  - {{name: web, certificate: {srv[0]}, privateKey: {srv[1]}}}\n"
             f"  - {{name: web-cacert, caCertificates: {pki.ca()}}}\n"
             f"  - {{name: partners-ca, caCertificates: {pki.ca('ca2')}}}\n")
    hosts = ("pin.example.com", "opt.example.com", "skip.example.com", "cacred.example.com")
    world(env, [server(port, [hosts[0]], f"{tls_simple(srv, 'MUTUAL')}, caCertificates: {pki.ca()}, {pins}"),
                server(port, [hosts[1]], f"{tls_simple(srv, 'OPTIONAL_MUTUAL')}, caCertificates: {pki.ca()}, "
                                         f'verifyCertificateHash: ["{cert_hash(hashed[0])}"]'),
                server(port, [hosts[2]], f"{tls_simple(srv, 'MUTUAL')}, caCertificates: {pki.ca()}, "
                                         'subjectAltNames: ["spiffe://x/nobody"], insecureSkipVerify: true'),
                server(port, [hosts[3]], "mode: MUTUAL, credentialName: web, caCertCredentialName: partners-ca")],
          vs_hosts=hosts, app_extra=creds)

    def get(sni, cert):
        return tls_get(port, sni, client_ctx(pki, cert=cert))

    for cert in (hashed, keyed, rekeyed):
        r = get(hosts[0], cert)
        check(r.status == 200, f"{hosts[0]}: a pinned certificate ({cert[0]}) refused: {r}")
    refused(port, hosts[0], client_ctx(pki, cert=other))
    refused(port, hosts[0], client_ctx(pki))
    # The pin is a check beyond the chain: a pinned certificate of another CA is refused.
    refused(port, hosts[0], client_ctx(pki, cert=alien))
    for tls12 in (False, True):
        ctx = client_ctx(pki, cert=other, max_version=ssl.TLSVersion.TLSv1_2 if tls12 else None)
        got = alert_of(port, hosts[0], ctx)
        check(got == "SSLV3_ALERT_BAD_CERTIFICATE", f"an unpinned certificate (TLS 1.2: {tls12}): alert {got!r}")

    # Pins make a certificate required even under OPTIONAL_MUTUAL, as Envoy's
    # validator asks for one once it has hashes to check (it served one).
    refused(port, hosts[1], client_ctx(pki))
    check(get(hosts[1], hashed).status == 200, "OPTIONAL_MUTUAL: the pinned certificate refused")
    refused(port, hosts[1], client_ctx(pki, cert=other))

    with TlsConn(port, hosts[2], client_ctx(pki, cert=alien)) as c:
        r = c.request("GET", "/rawecho", hosts[2])
    check(r.status == 200, f"insecureSkipVerify: a certificate of another CA, without the SAN, refused: {r}")
    xfcc = xfcc_seen(r)
    check(len(xfcc) == 1 and f"Hash={cert_hash(alien[0])}" in xfcc[0], f"insecureSkipVerify: XFCC {xfcc}")
    refused(port, hosts[2], client_ctx(pki))

    check(get(hosts[3], alien).status == 200, "caCertCredentialName: a certificate of its CA refused")
    refused(port, hosts[3], client_ctx(pki, cert=other))

    # Mistakes: (tls inside, field path, words).
    bad_hash = "AB:" * 31 + "A"
    cases = (
        (f"{tls_simple(srv, 'MUTUAL')}, caCertificates: {pki.ca()}, verifyCertificateHash: [\"{bad_hash}\"]",
         "tls.verifyCertificateHash[0]", "invalid hex-encoded SHA-256"),
        (f"{tls_simple(srv, 'MUTUAL')}, caCertificates: {pki.ca()}, "
         f'verifyCertificateSpki: ["{base64.b64encode(bytes(31)).decode()}"]',
         "tls.verifyCertificateSpki[0]", "invalid base64-encoded SHA-256"),
        (f'{tls_simple(srv)}, verifyCertificateSpki: ["{spki_pin(keyed[0])}"]',
         "tls.verifyCertificateSpki", "needs mode MUTUAL or OPTIONAL_MUTUAL"),
        (f"{tls_simple(srv, 'MUTUAL')}, caCertCredentialName: nowhere",
         "tls.caCertCredentialName", 'credential "nowhere" is not among'),
        (f"{tls_simple(srv, 'MUTUAL')}, caCertificates: {pki.ca()}, caCertCredentialName: partners-ca",
         "tls.caCertCredentialName", "use one of caCertificates, caCertCredentialName"),
    )
    for i, (inside, field, words) in enumerate(cases):
        path = env.write(f"bad{i}.yaml", docs(appliance(env, extra=creds),
                                              gateway_of(server(port, ["*"], inside))))
        rc, out = env.check_config(path)
        line = next((l for l in out.splitlines() if words in l), "")
        check(rc != 0 and re.match(re.escape(path) + r":\d+:\d+: error: ", line) and field in line,
              f"case {i}: want an error at {field}: {words}; rc {rc}:\n{out}")
    path = env.write("pt.yaml", docs(appliance(env), gateway_of(
        server(port, ["*"], f'mode: PASSTHROUGH, verifyCertificateHash: ["{cert_hash(hashed[0])}"]',
               protocol="TLS"))))
    rc, out = env.check_config(path)
    check(rc == 0 and "verifyCertificateHash" in out and "has no effect" in out,
          f"pins on a PASSTHROUGH server: rc {rc}:\n{out}")


def x509(path, *what):
    """What `openssl x509 -noout WHAT` prints of the certificate at path
    (names in RFC 2253), after its "name=". """
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", *what, "-nameopt", "RFC2253"],
                         stdout=subprocess.PIPE, check=True).stdout.decode().strip()
    return out.split("=", 1)[1]


@_test
def tls_header_operators(env):
    """The TLS command operators of a route's header values: the client
    certificate's URI and DNS SANs (comma-separated), subject and issuer (RFC
    2253), SHA-256 and SHA-1, serial (lowercase hex), the PEM (URL-encoded) and
    its validity's start and end (as START_TIME); the TLS version, cipher and
    session identifier, the server name, and the appliance's own certificate's
    SANs and subject, as Envoy formats them; the client's all empty (so not
    sent) without a client certificate."""
    pki = Pki(env)
    port = free_port()
    srv = pki.leaf("t", ["DNS:t.example.com"])
    client = pki.leaf("client", ["URI:spiffe://x/a", "DNS:a.example.com", "URI:spiffe://x/b"])
    ops = {"x-san": "DOWNSTREAM_PEER_URI_SAN", "x-dns": "DOWNSTREAM_PEER_DNS_SAN",
           "x-subject": "DOWNSTREAM_PEER_SUBJECT", "x-fp": "DOWNSTREAM_PEER_FINGERPRINT_256",
           "x-tls": "DOWNSTREAM_TLS_VERSION", "x-sni": "REQUESTED_SERVER_NAME",
           "x-issuer": "DOWNSTREAM_PEER_ISSUER", "x-fp1": "DOWNSTREAM_PEER_FINGERPRINT_1",
           "x-serial": "DOWNSTREAM_PEER_SERIAL", "x-cert": "DOWNSTREAM_PEER_CERT",
           "x-start": "DOWNSTREAM_PEER_CERT_V_START", "x-end": "DOWNSTREAM_PEER_CERT_V_END",
           "x-cipher": "DOWNSTREAM_TLS_CIPHER", "x-session": "DOWNSTREAM_TLS_SESSION_ID",
           "x-local-dns": "DOWNSTREAM_LOCAL_DNS_SAN", "x-local-uri": "DOWNSTREAM_LOCAL_URI_SAN",
           "x-local-subject": "DOWNSTREAM_LOCAL_SUBJECT"}
    sets = ", ".join(f'{k}: "%{v}%"' for k, v in ops.items())
    vs = virtual_service("ops", ["t.example.com"],
                         f"  - headers: {{request: {{set: {{{sets}}}}}}}\n"
                         f"    route: [{{destination: {{host: {SVC}}}}}]\n")
    world(env, [server(port, ["t.example.com"], f"{tls_simple(srv, 'OPTIONAL_MUTUAL')}, "
                                               f"caCertificates: {pki.ca()}")],
          vs_hosts=(), extra_docs=(vs,))
    def iso(asn1):  # "Dec  5 02:00:00 2026 GMT" as START_TIME
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.strptime(asn1, "%b %d %H:%M:%S %Y GMT"))

    der = subprocess.run(["openssl", "x509", "-in", client[0], "-outform", "DER"], stdout=subprocess.PIPE,
                         check=True).stdout
    local = {"x-tls": "TLSv1.3", "x-sni": "t.example.com", "x-local-dns": "t.example.com",
             "x-local-subject": x509(srv[0], "-subject")}
    want = dict(local, **{
        "x-san": "spiffe://x/a,spiffe://x/b", "x-dns": "a.example.com", "x-subject": x509(client[0], "-subject"),
        "x-fp": cert_hash(client[0]), "x-issuer": x509(client[0], "-issuer"),
        "x-fp1": hashlib.sha1(der).hexdigest(), "x-serial": x509(client[0], "-serial").lower().lstrip("0") or "0",
        "x-cert": urllib.parse.quote(ssl.DER_cert_to_PEM_cert(der), safe=""),
        "x-start": iso(x509(client[0], "-startdate")), "x-end": iso(x509(client[0], "-enddate"))})
    for cert, expect in ((client, want), (None, local)):
        with TlsConn(port, "t.example.com", client_ctx(pki, cert=cert)) as c:
            r = c.request("GET", "/rawecho", "t.example.com")
            cipher = c.sock.cipher()[0]
        check(r.status == 200, f"/rawecho: {r}")
        got = {}
        for line in r.body.decode("latin-1").split("\r\n"):
            k, _, v = line.partition(":")
            if k.lower() in ops:
                got[k.lower()] = v.strip()
        if "x-serial" in got:  # BN_bn2hex keeps a byte's leading zero
            got["x-serial"] = got["x-serial"].lstrip("0") or "0"
        session = got.pop("x-session", "")
        check(re.fullmatch(r"([0-9a-f]{2})+", session), f"session id {session!r}")
        check(got.pop("x-cipher", None) == cipher, f"cipher: want {cipher}, got {got}")
        check(got == expect, f"client certificate {cert is not None}: upstream got {got}, want {expect}")


@_test
def tls_handshake_duration(env):
    """%DOWNSTREAM_HANDSHAKE_DURATION%: the milliseconds from the accept of the
    client's connection to the end of its TLS handshake, a number in Istio's
    JSON encoding, the same for every request of the connection, over
    HTTP/1.1 and HTTP/2; a client that waits 300 ms before its ClientHello
    has them counted; null on a plaintext connection."""
    pki = Pki(env)
    port, plain = free_port(), free_port()
    srv = pki.leaf("t", ["DNS:t.example.com"])
    log = env.path("access.log")
    fmt = "{path: '%REQ(:PATH)%', proto: '%PROTOCOL%', hs: '%DOWNSTREAM_HANDSHAKE_DURATION%', conn: '%CONNECTION_ID%'}"
    world(env, [server(port, ["t.example.com"], tls_simple(srv)), server(plain, ["*"], None, protocol="HTTP")],
          app_extra=f"  accessLog: {{path: {log}, format: istio-json, jsonFormat: {fmt}}}\n")
    with TlsConn(port, "t.example.com", client_ctx(pki)) as c:
        for path in ("/one", "/two"):
            r = c.request("GET", path, "t.example.com")
            check(r.status == 200, f"{path}: {r}")
    def accepted():
        m = re.search(r"^connections_accepted: (\d+)$", ctl_cmd(env.path("ctl.sock"), "show info"), re.M)
        return int(m.group(1)) if m else -1

    before = accepted()
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    # The duration runs from the accept: it must have come before the delay.
    poll(lambda: accepted() > before, 5, what="the gateway to accept the late client's connection")
    time.sleep(0.3)  # the delay measured: the ClientHello comes 300 ms after the accept
    with client_ctx(pki).wrap_socket(raw, server_hostname="t.example.com") as late:
        late.sendall(b"GET /late HTTP/1.1\r\nHost: t.example.com\r\nConnection: close\r\n\r\n")
        got = b""
        while chunk := late.recv(65536):
            got += chunk
    check(got.startswith(b"HTTP/1.1 200 "), f"/late: {got[:80]!r}")
    rc, out, err = curl(["-k", "--http2", "-o", "/dev/null", "-w", "%{http_version}",
                         "--resolve", f"t.example.com:{port}:127.0.0.1", f"https://t.example.com:{port}/h2"])
    check(rc == 0 and out == "2", f"curl --http2: rc {rc} {out} {err}")
    rc, out, err = curl(["-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{plain}/plain"])
    check(rc == 0 and out == "200", f"plaintext: rc {rc} {out} {err}")
    poll(lambda: len(file_lines(log)) >= 5, 5, what="five access-log lines")
    by_path = {l["path"]: l for l in (json.loads(x) for x in file_lines(log))}
    check(sorted(by_path) == ["/h2", "/late", "/one", "/plain", "/two"], f"lines {file_lines(log)}")
    one, two, late_l, h2, pl = (by_path[p] for p in ("/one", "/two", "/late", "/h2", "/plain"))
    check(type(one["hs"]) is int and 0 <= one["hs"] < 300 and one["conn"] == two["conn"] and two["hs"] == one["hs"],
          f"one connection's handshake: {one} {two}")
    check(type(late_l["hs"]) is int and 300 <= late_l["hs"] < 5000, f"a ClientHello 300 ms late: {late_l}")
    check(h2["proto"] == "HTTP/2" and type(h2["hs"]) is int and 0 <= h2["hs"] < 300, f"HTTP/2: {h2}")
    check(pl["hs"] is None and pl["proto"] == "HTTP/1.1", f"plaintext: {pl}")


@_test
def tls_access_log_operators(env):
    """The access log's operators for the client's TLS connection and its
    certificate (those of the header values: version, cipher, session id, URI
    and DNS SANs, subject, issuer, SHA-256, serial, the appliance's own
    certificate's DNS SAN), the socket's peer, the upstream's address and
    port, the upstream's protocol, the host name and Envoy's timings, in
    Istio's JSON encoding: typed (ports and durations numbers), null without a
    client certificate."""
    import socket as socketmod
    pki = Pki(env)
    port = free_port()
    srv = pki.leaf("t", ["DNS:t.example.com"])
    client = pki.leaf("client", ["URI:spiffe://x/a", "DNS:a.example.com", "URI:spiffe://x/b"])
    log = env.path("access.log")
    ops = {"tls": "DOWNSTREAM_TLS_VERSION", "cipher": "DOWNSTREAM_TLS_CIPHER",
           "session": "DOWNSTREAM_TLS_SESSION_ID", "san": "DOWNSTREAM_PEER_URI_SAN",
           "dns": "DOWNSTREAM_PEER_DNS_SAN", "subject": "DOWNSTREAM_PEER_SUBJECT",
           "issuer": "DOWNSTREAM_PEER_ISSUER", "fp": "DOWNSTREAM_PEER_FINGERPRINT_256",
           "serial": "DOWNSTREAM_PEER_SERIAL", "local_dns": "DOWNSTREAM_LOCAL_DNS_SAN",
           "peer": "DOWNSTREAM_DIRECT_REMOTE_ADDRESS", "peer_port": "DOWNSTREAM_DIRECT_REMOTE_PORT",
           "client_port": "DOWNSTREAM_REMOTE_PORT", "up": "UPSTREAM_REMOTE_ADDRESS",
           "up_ip": "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", "up_port": "UPSTREAM_REMOTE_PORT",
           "up_proto": "UPSTREAM_PROTOCOL", "host": "HOSTNAME", "req_ms": "REQUEST_DURATION",
           "sent_ms": "REQUEST_TX_DURATION", "resp_ms": "RESPONSE_DURATION", "tx_ms": "RESPONSE_TX_DURATION",
           "path": "REQ(:PATH)"}
    fmt = ", ".join(f"{k}: '%{v}%'" for k, v in ops.items())
    world(env, [server(port, ["t.example.com"], f"{tls_simple(srv, 'OPTIONAL_MUTUAL')}, "
                                               f"caCertificates: {pki.ca()}")],
          app_extra=f"  accessLog: {{path: {log}, format: istio-json, jsonFormat: {{{fmt}}}}}\n")
    up_port = int(re.search(r"ports: \{http: (\d+)\}", open(env.path("isthmus.yaml")).read()).group(1))

    ciphers, ports = {}, {}
    for name, cert in (("with", client), ("without", None)):
        with TlsConn(port, "t.example.com", client_ctx(pki, cert=cert)) as c:
            r = c.request("GET", f"/{name}", "t.example.com")
            ciphers[name] = c.sock.cipher()[0]
            ports[name] = c.sock.getsockname()[1]
        check(r.status == 200, f"/{name}: {r}")
    poll(lambda: len(file_lines(log)) >= 2, 5, what="two access-log lines")
    by_path = {l["path"]: l for l in (json.loads(x) for x in file_lines(log))}
    w, wo = by_path.get("/with"), by_path.get("/without")
    check(w and wo, f"a line is missing: {file_lines(log)}")
    common = {"tls": "TLSv1.3", "local_dns": "t.example.com", "up": f"127.0.0.2:{up_port}", "up_ip": "127.0.0.2",
              "up_port": up_port, "up_proto": "HTTP/1.1", "host": socketmod.gethostname()}
    want = dict(common, san="spiffe://x/a,spiffe://x/b", dns="a.example.com", subject=x509(client[0], "-subject"),
                issuer=x509(client[0], "-issuer"), fp=cert_hash(client[0]))
    for line, exp, name in ((w, want, "with"), (wo, common, "without")):
        check({k: line[k] for k in exp} == exp, f"client certificate {name}: {line}, want {exp}")
        check(line["cipher"] == ciphers[name] and re.fullmatch(r"([0-9a-f]{2})+", line["session"]) and
              line["peer"] == f"127.0.0.1:{ports[name]}" and line["peer_port"] == ports[name] and
              line["client_port"] == ports[name], f"connection of the line {name}: {line}")
        check(all(type(line[k]) is int for k in ("req_ms", "sent_ms", "resp_ms", "tx_ms")) and
              0 <= line["req_ms"] <= line["sent_ms"] <= line["resp_ms"] < 10000 and line["tx_ms"] < 10000,
              f"timings {name}: {line}")
    check((w["serial"].lstrip("0") or "0") == (x509(client[0], "-serial").lower().lstrip("0") or "0"),
          f"serial {w['serial']}")
    check(all(wo[k] is None for k in ("san", "dns", "subject", "issuer", "fp", "serial")),
          f"no client certificate: {wo}")


@_test
def tls_access_log_filter_certificates(env):
    """The access-log filter's attributes of the client's TLS connection, as
    Envoy's CEL gives them: the first URI and DNS SAN, the subject and the
    SHA-256 digest of the client certificate, the appliance's own
    certificate's first DNS SAN and subject. Without a client certificate the
    SANs and the digest are absent and the subject is ""; on a plain
    connection they are all absent. The filter logs exactly the requests
    whose attributes it names."""
    pki = Pki(env)
    port, plain = free_port(), free_port()
    srv = pki.leaf("t", ["DNS:t.example.com", "DNS:u.example.com"])
    client = pki.leaf("client", ["URI:spiffe://x/a", "DNS:a.example.com", "URI:spiffe://x/b", "DNS:b.example.com"])
    log = env.path("access.log")
    subject = x509(client[0], "-subject")
    expr = (f"(connection.uri_san_peer_certificate == 'spiffe://x/a' && "
            f"connection.dns_san_peer_certificate == 'a.example.com' && "
            f"connection.subject_peer_certificate == '{subject}' && "
            f"connection.sha256_peer_certificate_digest == '{cert_hash(client[0])}' && "
            f"connection.dns_san_local_certificate == 't.example.com' && "
            f"connection.subject_local_certificate != '' && !has(connection.uri_san_local_certificate)) || "
            f"(request.url_path == '/without' && connection.subject_peer_certificate == '' && "
            f"!has(connection.uri_san_peer_certificate) && !has(connection.sha256_peer_certificate_digest)) || "
            f"(request.url_path == '/plain' && !has(connection.subject_peer_certificate) && "
            f"!has(connection.subject_local_certificate))")
    tel = ("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, "
           "namespace: istio-system}\nspec:\n  accessLogging:\n  - providers: [{name: envoy}]\n"
           f"    filter: {{expression: \"{expr}\"}}\n")
    world(env, [server(port, ["t.example.com"], f"{tls_simple(srv, 'OPTIONAL_MUTUAL')}, caCertificates: {pki.ca()}"),
                server(plain, ["*"], None, protocol="HTTP")],
          app_extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"%REQ(:PATH)%\"}}\n", extra_docs=[tel])
    for path, cert in (("/with", client), ("/without", None), ("/other", None)):
        with TlsConn(port, "t.example.com", client_ctx(pki, cert=cert)) as c:
            check(c.request("GET", path, "t.example.com").status == 200, f"{path}")
    for path in ("/plain", "/other-plain"):
        check(http_get(plain, path).status == 200, f"plaintext {path}")
    poll(lambda: len(file_lines(log)) >= 3, 10, what="three access-log lines")
    check(sorted(file_lines(log)) == ["/plain", "/with", "/without"], f"lines: {file_lines(log)}")


def xfcc_expected(pki, crt, by=()):
    """The X-Forwarded-Client-Cert element Envoy makes for the client
    certificate at crt (SANITIZE_SET with Subject, Cert, URI and DNS, as Istio
    configures its gateways): the digest, PEM, subject (RFC 2253) and SANs
    read back with the openssl CLI."""
    der = subprocess.run(["openssl", "x509", "-in", crt, "-outform", "DER"], stdout=subprocess.PIPE,
                         check=True).stdout
    subj = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-subject", "-nameopt", "RFC2253"],
                          stdout=subprocess.PIPE, check=True).stdout.decode().strip()
    text = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-ext", "subjectAltName"],
                          stdout=subprocess.PIPE, check=True).stdout.decode()
    sans = [s.strip() for s in text.splitlines()[-1].split(",")]
    uris = [s[4:] for s in sans if s.startswith("URI:")]
    parts = [f"By={b}" for b in by]
    parts += ["Hash=" + hashlib.sha256(der).hexdigest(),
              'Cert="' + urllib.parse.quote(ssl.DER_cert_to_PEM_cert(der), safe="") + '"',
              'Subject="' + subj[len("subject="):] + '"']
    parts += [f"URI={u}" for u in uris] or ["URI="]
    parts += [f"DNS={s[4:]}" for s in sans if s.startswith("DNS:")]
    return ";".join(parts)


def xfcc_seen(r):
    """The X-Forwarded-Client-Cert fields of the request /rawecho sent back."""
    return [line.split(":", 1)[1].strip() for line in r.body.decode("latin-1").split("\r\n")
            if line.lower().startswith("x-forwarded-client-cert:")]


@_test
def tls_xfcc_san_separators(env):
    """A client certificate's SAN that holds the field's own separators (a
    URI SAN "spiffe://a,By=x" or "spiffe://b;URI=y") is left out of X-Forwarded-Client-Cert,
    where it would split the element into keys of the client's choosing; its
    plain SANs go in."""
    pki = Pki(env)
    port = free_port()
    srv = pki.leaf("xs", ["DNS:xs.example.com"])
    odd = pki.leaf("client-odd", ["URI:spiffe://a,By=x", "URI:spiffe://b;URI=y", "URI:spiffe://x/plain"])
    world(env, [server(port, ["*"], f"{tls_simple(srv, 'OPTIONAL_MUTUAL')}, caCertificates: {pki.ca()}")])
    with TlsConn(port, "xs.example.com", client_ctx(pki, cert=odd)) as c:
        r = c.request("GET", "/rawecho", "xs.example.com")
    seen = xfcc_seen(r)
    check(r.status == 200 and len(seen) == 1 and "URI=spiffe://x/plain" in seen[0] and "By=x" not in seen[0]
          and "URI=y" not in seen[0], f"X-Forwarded-Client-Cert for a SAN with separators: {seen}")


@_test
def tls_xfcc(env):
    """X-Forwarded-Client-Cert as an Istio gateway's Envoy treats it: by default
    (SANITIZE_SET) a client's own field never reaches the upstream, and a client
    that presented a certificate gets Envoy's element for it (By, Hash, Cert,
    Subject, URI, DNS), over HTTP/1.1 and HTTP/2 alike; forwardClientCertDetails
    APPEND_FORWARD, FORWARD_ONLY, ALWAYS_FORWARD_ONLY and SANITIZE behave as
    Envoy's modes, through reloads; a value Istio does not define is an error
    naming the field."""
    pki = Pki(env)
    port, plain = free_port(), free_port()
    srv = pki.leaf("x", ["DNS:x.example.com", "URI:spiffe://cluster.local/ns/istio-system/sa/ingress"])
    good = pki.leaf("client", ["URI:spiffe://x/client", "DNS:client.example.com", "URI:spiffe://x/client2",
                               "DNS:alt.example.com"])
    servers = [server(port, ["*"], f"{tls_simple(srv, 'OPTIONAL_MUTUAL')}, caCertificates: {pki.ca()}"),
               server(plain, ["*"], None, protocol="HTTP")]

    def topology(mode):
        return f"  gatewayTopology: {{forwardClientCertDetails: {mode}}}\n" if mode else ""

    conf = world(env, servers)
    ours = xfcc_expected(pki, good[0], by=["spiffe://cluster.local/ns/istio-system/sa/ingress"])
    forged = [("X-Forwarded-Client-Cert", 'By=spiffe://evil;Hash=00;URI=spiffe://evil/admin')]

    def seen():
        """The fields the upstream got: plain HTTP, TLS without and with a
        client certificate, each sending a forged field."""
        with Conn("127.0.0.1", plain) as c:
            r0 = c.request("GET", "/rawecho", "x.example.com", forged)
        out = []
        for cert in (None, good):
            with TlsConn(port, "x.example.com", client_ctx(pki, cert=cert)) as c:
                out.append(c.request("GET", "/rawecho", "x.example.com", forged))
        for r in (r0, *out):
            check(r.status == 200, f"/rawecho: {r}")
        return [xfcc_seen(r) for r in (r0, *out)]

    check(seen() == [[], [], [ours]], f"SANITIZE_SET (the default): {seen()}, want only [{ours}] with a certificate")
    # HTTP/2 over TLS, the same element.
    rc, out, err = curl(["--http2", "--cacert", pki.ca(), "--cert", good[0], "--key", good[1],
                         "-H", f"X-Forwarded-Client-Cert: {forged[0][1]}",
                         "--resolve", f"x.example.com:{port}:127.0.0.1", f"https://x.example.com:{port}/rawecho"])
    got = [l.split(":", 1)[1].strip() for l in out.split("\r\n") if l.lower().startswith("x-forwarded-client-cert:")]
    check(rc == 0 and got == [ours], f"HTTP/2: rc {rc} {err} {got}")

    sock = env.path("ctl.sock")
    f = forged[0][1]
    for mode, want in (("APPEND_FORWARD", [[], [], [f + "," + ours]]),
                       ("FORWARD_ONLY", [[], [], [f]]),
                       ("ALWAYS_FORWARD_ONLY", [[f], [f], [f]]),
                       ("SANITIZE", [[], [], []]),
                       ("UNDEFINED", [[], [], [ours]])):
        world(env, servers, app_extra=topology(mode), start=False)
        ans = ctl_cmd(sock, "reload")
        check("published" in ans, f"reload to {mode}: {ans!r}")
        check(seen() == want, f"{mode}: {seen()}, want {want}")

    bad = world(env, servers, app_extra=topology("SANITISE"), start=False)
    rc, out = env.check_config(bad)
    check(rc != 0 and "forwardClientCertDetails" in out and "SANITISE" in out, f"a bad mode: rc {rc}: {out}")
    check(conf == bad, "the file moved")


@_test
def tls_weak_certificate_refused_at_load(env):
    """A certificate OpenSSL's security level refuses (an RSA-1024 key, a SHA-1
    signature) used to pass isthmus -c, then every handshake of its server
    failed with nothing said (a reload to it too): it is an error at its tls
    block with OpenSSL's reason, for a server, a client CA, a client
    certificate of a DestinationRule and a reload, which keeps the old
    certificate serving; a server that allows TLS 1.0 (security level 0) takes
    it."""
    pki = Pki(env)
    port = free_port()
    good = pki.leaf("good", ["DNS:a.example.com"])
    weak = {}
    cacrt, cakey = pki.cas["ca"]
    for name, bits, md in (("rsa1024", 1024, "-sha256"), ("sha1", 2048, "-sha1")):
        crt, key, csr = env.path(f"{name}.crt"), env.path(f"{name}.key"), env.path(f"{name}.csr")
        pki._openssl("req", "-new", "-newkey", f"rsa:{bits}", "-nodes", "-keyout", key, "-out", csr,
                     "-subj", "/CN=a.example.com")
        pki._openssl("x509", "-req", "-in", csr, "-CA", cacrt, "-CAkey", cakey, "-set_serial", str(7000 + bits),
                     "-days", "2", md, "-out", crt)
        weak[name] = (crt, key)
    conf = world(env, [server(port, ["a.example.com"], tls_simple(good))])
    ctx = client_ctx(pki)
    check(tls_get(port, "a.example.com", ctx).status == 200, "the good certificate")
    for name, reason in (("rsa1024", "ee key too small"), ("sha1", "ca md too weak")):
        bad = world(env, [server(port, ["a.example.com"], tls_simple(weak[name]))], start=False)
        rc, out = env.check_config(bad)
        m = re.search(re.escape(bad) + r":(\d+):(\d+): error: .*tls.*OpenSSL refuses these TLS settings: " +
                      reason, out)
        check(rc == 1 and m, f"{name}: isthmus -c exit {rc}, want 1 and an error naming {reason!r}: {out}")
        ans = ctl_cmd(env.path("ctl.sock"), "reload")
        check("published" not in ans and reason in ans, f"{name}: a reload to it answered {ans!r}")
        check(tls_get(port, "a.example.com", ctx).status == 200, f"{name}: the old certificate after the reload")
    # A CA whose key is too weak for the level: every client it signed would be
    # refused at the handshake ("CA certificate key too weak").
    wca, wcakey = env.path("weakca.crt"), env.path("weakca.key")
    pki._openssl("req", "-x509", "-newkey", "rsa:1024", "-nodes", "-keyout", wcakey, "-out", wca, "-days", "2",
                 "-subj", "/CN=weakca", "-addext", "basicConstraints=critical,CA:TRUE")
    bad = world(env, [server(port, ["a.example.com"], f"{tls_simple(good, 'MUTUAL')}, caCertificates: {wca}")],
                start=False)
    rc, out = env.check_config(bad)
    check(rc == 1 and "CA certificate key too weak" in out, f"a weak client CA: isthmus -c exit {rc}: {out}")
    # TLS 1.0 allowed: security level 0, as BoringSSL serves it for Envoy.
    old = world(env, [server(port, ["a.example.com"], f"{tls_simple(weak['sha1'])}, minProtocolVersion: TLSV1_0, "
                              "cipherSuites: [ECDHE-RSA-AES128-SHA, ECDHE-RSA-AES128-GCM-SHA256]")], start=False)
    rc, out = env.check_config(old)
    check(rc == 0, f"a TLS 1.0 server with a SHA-1 certificate: isthmus -c exit {rc}: {out}")
    # A DestinationRule's client certificate.
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n"
          f"  host: {SVC}\n  trafficPolicy:\n    tls: {{mode: MUTUAL, clientCertificate: {weak['rsa1024'][0]}, "
          f"privateKey: {weak['rsa1024'][1]}, caCertificates: {pki.ca()}}}\n")
    bad = world(env, [server(port, ["a.example.com"], tls_simple(good))], extra_docs=[dr], start=False)
    rc, out = env.check_config(bad)
    check(rc == 1 and re.search(r"DestinationRule default/d: spec\.trafficPolicy\.tls.*ee key too small", out),
          f"a weak client certificate: isthmus -c exit {rc}: {out}")
    check(conf == bad, "the file moved")


def alert_of(port, sni, ctx):
    """The SSLError reason the client gets when the gateway ends the handshake
    (Python names the alert: TLSV13_ALERT_CERTIFICATE_REQUIRED, ...); after a
    TLS 1.3 handshake the client thinks complete, the first read reports it."""
    try:
        with TlsConn(port, sni, ctx) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            c.read_response()
    except ssl.SSLError as e:
        return e.reason or str(e)
    except (OSError, EOFError, TestFailure) as e:
        return f"no alert: {type(e).__name__}: {e}"
    return "no alert: an HTTP response"


@_test
def tls_handshake_alerts(env):
    """A refused handshake ends with its TLS alert, not a bare close: no client
    certificate on a MUTUAL server gets "certificate required" (TLS 1.3) or
    "handshake failure" (TLS 1.2), one the CA did not sign "unknown ca"; a
    protocol version the server refuses gets "protocol version". curl and openssl s_client show it as Istio documents."""
    pki = Pki(env)
    port = free_port()
    m = pki.leaf("m", ["DNS:m.example.com"])
    v13 = pki.leaf("v13", ["DNS:v13.example.com"])
    world(env, [server(port, ["m.example.com"], f"{tls_simple(m, 'MUTUAL')}, caCertificates: {pki.ca()}"),
                server(port, ["v13.example.com"], f"{tls_simple(v13)}, minProtocolVersion: TLSV1_3")],
          vs_hosts=("m.example.com", "v13.example.com"))
    cases = (("m.example.com", client_ctx(pki), "TLSV13_ALERT_CERTIFICATE_REQUIRED"),
             ("m.example.com", client_ctx(pki, max_version=ssl.TLSVersion.TLSv1_2), "SSLV3_ALERT_HANDSHAKE_FAILURE"),
             ("m.example.com", client_ctx(pki, cert=pki.leaf("alien", ["URI:spiffe://x/a"], ca="ca2")),
              "TLSV1_ALERT_UNKNOWN_CA"),
             ("v13.example.com", client_ctx(pki, max_version=ssl.TLSVersion.TLSv1_2), "TLSV1_ALERT_PROTOCOL_VERSION"))
    for sni, ctx, want in cases:
        for _ in range(3):  # every time, not by luck of scheduling
            got = alert_of(port, sni, ctx)
            check(got == want, f"{sni} ({ctx.maximum_version.name}): the client saw {got!r}, want {want}")
    # HTTP/1.1: curl reads the alert with its response; with h2 it fails the
    # write of its preface first (rc 55) and does not say which alert came.
    rc, out, err = curl(["--http1.1", "--cacert", pki.ca(), "--resolve", f"m.example.com:{port}:127.0.0.1",
                         f"https://m.example.com:{port}/"])
    check(rc == 56 and "alert certificate required" in err, f"curl without a client certificate: rc {rc} {err!r}")
    rc, out = s_client(port, "-tls1_2", sni="v13.example.com")
    check(rc != 0 and "alert protocol version" in out and "SSL alert number 70" in out,
          f"s_client -tls1_2 to a TLS 1.3-only server: rc {rc}\n{out[-800:]}")
    r = tls_get(port, "m.example.com", client_ctx(pki, cert=pki.leaf("c", ["URI:spiffe://x/c"])))
    check(r.status == 200, f"a client with a certificate after the refusals: {r}")


# --------------------------------------------------------------------------- algorithms and versions


@_test
def tls_lingering_close(env):
    """check_lingering_close over TLS: the answer, then close_notify and the
    connection's end, what the client sends meanwhile read and dropped."""
    pki = Pki(env)
    port = free_port()
    world(env, [server(port, ["*"], tls_simple(pki.leaf("a", ["DNS:a.example.com"])))],
          app_extra="  limits: {maxRequestBodyBytes: 1000}\n")
    ctx = client_ctx(pki)
    check_lingering_close(lambda: TlsConn(port, "a.example.com", ctx, timeout=5))


@_test
def tls_handshake_burst_spares_open_connections(env):
    """A burst of TLS handshakes (200 ClientHellos at once, RSA-2048: each
    server flight a signature) does not hold up an open connection of the same
    worker for the whole burst: handshakes are the heavy work, and a loop turn
    runs them for a bounded time, so a request on an established connection,
    sent right after the burst, is answered while most of the burst still waits
    (as HAProxy's scheduler runs its heavy class). Without the bound the request
    is answered together with the burst's last handshakes. The client is the
    benchmark's (bench/hsburst.py): three bursts, one of which must show it (a
    client descheduled between the burst and its request would let the worker
    finish the burst first); every handshake of each is answered."""
    pki = Pki(env)
    port = free_port()
    pair = pki.leaf("burst", ["DNS:localhost"])
    world(env, [server(port, ["*"], tls_simple(pair))], workers=1)
    n = 200
    client = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "hsburst.py")
    p = subprocess.run([sys.executable, client, str(port), pki.ca(), str(n), "3"], capture_output=True, timeout=240)
    out = p.stdout.decode(errors="replace")
    rounds = [line.split() for line in out.splitlines()]
    check(p.returncode == 0 and len(rounds) == 3 and all(len(r) == 3 for r in rounds),
          f"hsburst: rc {p.returncode}:\n{out}{p.stderr.decode(errors='replace')[-2000:]}")
    before = [int(r[2]) for r in rounds]
    check(min(before) <= n // 4, f"the open connection's request was answered after {before} of {n} handshakes "
          f"(want at most {n // 4} in one burst); get_ms all_ms answered:\n{out}")


@_test
def tls_small_records_read_together(env):
    """A request body sent as 4,000 TLS records of one byte each, all at once:
    the worker reads every record that came before it passes the bytes on, so
    the body goes upstream in a few sends, not one TCP segment a byte (OpenSSL's
    read returns one record at a time; HAProxy reads until its buffer is full).
    Counted on the gateway's upstream connection (ss: data_segs_out); the body
    arrives whole."""
    pki = Pki(env)
    port = free_port()
    pair = pki.leaf("recs", ["DNS:localhost"])
    conf = world(env, [server(port, ["*"], tls_simple(pair))], workers=1)
    up_port = int(re.search(r"ports: \{http: (\d+)\}", open(conf).read()).group(1))
    n = 4000
    sock, obj, inc, out = bio_session(port, client_ctx(pki))
    try:
        obj.write(f"POST /echo/count HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n".encode())
        for _ in range(n):
            obj.write(b"x")
        wire = out.read()
        check(len(wire) > 20 * n, f"{len(wire)} bytes on the wire for {n} records")
        sock.sendall(wire)
        got = read_until(sock, obj, inc, rb"\r\n\r\n\d+\n", time.monotonic() + 30)
        check(got.startswith(b"HTTP/1.1 200") and got.endswith(f"\r\n\r\n{n}\n".encode()),
              f"the body did not arrive whole: {got!r}")
        ss = subprocess.run(["ss", "-tniH", "state", "established", "dst", f"127.0.0.2:{up_port}"],
                            capture_output=True, text=True, timeout=10).stdout
        segs = [int(x) for x in re.findall(r"data_segs_out:(\d+)", ss)]
        check(len(segs) == 1, f"want the one upstream connection in ss:\n{ss}")
        check(segs[0] <= n // 10, f"{segs[0]} segments went upstream for a {n}-byte body in 1-byte records")
    finally:
        sock.close()


@_test
def tls_close_notify_after_small_records(env):
    """A request in 1-byte records followed by the client's close_notify, all
    in one write, the TCP connection left open: the worker reads the records
    together and still sees the close_notify after them as the client's end,
    which ends the exchange at once (as a FIN does), not at the idle timeout
    (60 s here) with the socket still open."""
    pki = Pki(env)
    port = free_port()
    pair = pki.leaf("recs", ["DNS:localhost"])
    world(env, [server(port, ["*"], tls_simple(pair))], workers=1, timeouts={"idle": "60s"})
    sock, obj, inc, out = bio_session(port, client_ctx(pki))
    try:
        for b in b"GET / HTTP/1.1\r\nHost: x\r\n\r\n":
            obj.write(bytes([b]))
        try:
            obj.unwrap()
        except ssl.SSLWantReadError:
            pass  # our close_notify is written; the gateway's is not awaited
        sock.sendall(out.read())
        sock.settimeout(1)
        deadline = time.monotonic() + 10
        ended = False
        while not ended and time.monotonic() < deadline:
            try:
                ended = sock.recv(65536) == b""
            except socket.timeout:
                continue
            except ConnectionResetError:
                ended = True
        check(ended, "the gateway kept the connection open 10 s after the client's close_notify")
    finally:
        sock.close()


@_test
def tls_rsa_and_ecdsa(env):
    """tlsCertificates with an RSA and an ECDSA certificate on one server, and the
    same from credentialNames: the client's signature algorithms (TLS 1.3) or
    cipher suites (TLS 1.2) pick the certificate."""
    pki = Pki(env)
    port = free_port()
    rsa = pki.leaf("dual-rsa", ["DNS:dual.example.com", "DNS:cred.example.com"])
    ec = pki.leaf("dual-ec", ["DNS:dual.example.com", "DNS:cred.example.com"], key="ec")
    creds = (f"  credentials:\n  - {{name: r, certificate: {rsa[0]}, privateKey: {rsa[1]}}}\n"
             f"  - {{name: e, certificate: {ec[0]}, privateKey: {ec[1]}}}\n")
    world(env, [server(port, ["dual.example.com"],
                       f"mode: SIMPLE, tlsCertificates: [{{serverCertificate: {rsa[0]}, privateKey: {rsa[1]}}}, "
                       f"{{serverCertificate: {ec[0]}, privateKey: {ec[1]}}}]"),
                server(port, ["cred.example.com"], "mode: SIMPLE, credentialNames: [r, e]")],
          vs_hosts=("dual.example.com", "cred.example.com"), app_extra=creds)
    cases = ((["-tls1_3", "-sigalgs", "ECDSA+SHA256"], "dual-ec", "256 bit"),
             (["-tls1_3", "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"], "dual-rsa", "2048 bit"),
             (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], "dual-ec", "256 bit"),
             (["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"], "dual-rsa", "2048 bit"))
    for sni in ("dual.example.com", "cred.example.com"):
        for args, cn, bits in cases:
            rc, out = s_client(port, "-CAfile", pki.ca(), "-verify_return_error", *args, sni=sni)
            check(rc == 0 and f"subject=CN = {cn}" in out and f"Server public key is {bits}" in out
                  and "Verification: OK" in out, f"{sni} {args}: want CN={cn} ({bits}), rc {rc}:\n{out[-1500:]}")
    rc, out, err = curl(["--cacert", pki.ca(), "--tlsv1.2", "--tls-max", "1.2", "--ciphers",
                         "ECDHE-ECDSA-AES128-GCM-SHA256", "--resolve", f"dual.example.com:{port}:127.0.0.1",
                         "-o", "/dev/null", "-w", "%{http_code}", f"https://dual.example.com:{port}/"])
    check(rc == 0 and out == "200", f"curl over ECDSA: rc {rc} {out!r} {err}")


@_test
def tls_protocol_versions(env):
    """Per server on one port: minProtocolVersion TLSV1_3 refuses a TLS 1.2
    client; maxProtocolVersion TLSV1_2 with one cipher suite negotiates exactly
    that and refuses a client without it; minProtocolVersion TLSV1_0 with a
    suite for it serves TLS 1.0 and 1.1 clients (OpenSSL's security level 0
    there: above it OpenSSL refuses both versions), which the other servers
    refuse."""
    pki = Pki(env)
    port = free_port()
    c13 = pki.leaf("v13", ["DNS:v13.example.com"])
    c12 = pki.leaf("v12", ["DNS:v12.example.com"])
    c10 = pki.leaf("v10", ["DNS:v10.example.com"])
    world(env, [server(port, ["v13.example.com"], f"{tls_simple(c13)}, minProtocolVersion: TLSV1_3"),
                server(port, ["v12.example.com"], f"{tls_simple(c12)}, maxProtocolVersion: TLSV1_2, "
                                                   "cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256]"),
                server(port, ["v10.example.com"], f"{tls_simple(c10)}, minProtocolVersion: TLSV1_0, "
                                                   "cipherSuites: [ECDHE-RSA-AES128-SHA]")],
          vs_hosts=("v13.example.com", "v12.example.com", "v10.example.com"))
    for version in ("-tls1", "-tls1_1"):
        old = (version, "-cipher", "ECDHE-RSA-AES128-SHA@SECLEVEL=0")
        rc, out = s_client(port, *old, "-ign_eof", sni="v10.example.com",
                           data=b"GET / HTTP/1.1\r\nHost: v10.example.com\r\nConnection: close\r\n\r\n")
        check(rc == 0 and "Cipher is ECDHE-RSA-AES128-SHA" in out and "HTTP/1.1 200" in out,
              f"s_client {version} to the TLSV1_0 server: rc {rc}\n{out[-1500:]}")
        rc, out = s_client(port, *old, sni="v12.example.com")
        check(rc != 0 and "protocol version" in out, f"s_client {version} to a TLS 1.2 server: rc {rc}\n{out[-800:]}")
    with TlsConn(port, "v13.example.com", client_ctx(pki)) as c:
        check(c.sock.version() == "TLSv1.3", f"v13 negotiated {c.sock.version()}")
    handshake_refused(port, "v13.example.com", client_ctx(pki, max_version=ssl.TLSVersion.TLSv1_2))
    rc, out = s_client(port, "-tls1_2", sni="v13.example.com")
    check(rc != 0 and "Cipher is (NONE)" in out, f"s_client -tls1_2 to a TLS 1.3-only server: rc {rc}\n{out[-800:]}")
    with TlsConn(port, "v12.example.com", client_ctx(pki)) as c:
        check(c.sock.version() == "TLSv1.2" and c.sock.cipher()[0] == "ECDHE-RSA-AES128-GCM-SHA256",
              f"v12 negotiated {c.sock.version()} {c.sock.cipher()}")
        c.send(b"GET / HTTP/1.1\r\nHost: v12.example.com\r\n\r\n")
        check(c.read_response().status == 200, "request over TLS 1.2")
    handshake_refused(port, "v12.example.com", client_ctx(pki, ciphers="ECDHE-RSA-AES256-GCM-SHA384",
                                                           max_version=ssl.TLSVersion.TLSv1_2))


# --------------------------------------------------------------------------- peers that do not read


KU_COUNT = 300_000  # KeyUpdates the flood sends at most (27 bytes each, and as many in answers)
KU_SECONDS = 10


def asan_build(env):
    """Whether env's isthmus was built with AddressSanitizer: freed memory
    then stays in its quarantine (256 MiB), so RSS does not tell what is live."""
    p = subprocess.run([env.isthmus, "-vv"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return "-fsanitize=address" in p.stdout


def ku_world(env, limits=""):
    """One worker terminating TLS for ku.example.com; returns (port, client ctx).
    Deadlines past the floods: the connection stays while they last (it sends
    no whole request, so the request-header timeout would close it first). The
    fewest receive buffers: each is touched once as the ring goes round (16 MiB
    of RSS by default), which is not what grows here."""
    pki = Pki(env)
    port = free_port()
    crt = pki.leaf("ku", ["DNS:ku.example.com"])
    world(env, [server(port, ["ku.example.com"], tls_simple(crt))], vs_hosts=("ku.example.com",), workers=1,
          timeouts={"requestHeader": "60s", "idle": "60s"},
          app_extra=f"  limits: {{receiveBuffersPerWorker: 16{limits}}}\n")
    return port, client_ctx(pki)


def ku_flood(env, port, mode, count, seconds=KU_SECONDS):
    """Starts tests/keyupdate_flood in mode; returns (process, its result line)
    once it has one (the process waits for its stdin to end)."""
    flood = subprocess.Popen([os.path.join(env.build, "tests", "keyupdate_flood"), str(port), "ku.example.com",
                              str(count), str(seconds), mode],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = flood.stdout.readline()
    if line != b"connected\n":
        flood.stdin.close()
        raise TestFailure(f"the flood client did not connect: status {flood.wait(10)}: {flood.stderr.read()!r}")
    return flood, flood.stdout.readline().decode()


def ku_end(flood):
    flood.stdin.close()
    flood.wait(10)


@_test
def tls_keyupdate_limit(env):
    """More than 32 KeyUpdates in a row without application data close the
    connection (BoringSSL's limit, so Envoy's): each costs the worker a key
    derivation and, when the peer asks, a record back, also when they follow
    data read in the same delivery. KeyUpdates between requests are served
    however many there are."""
    port, ctx = ku_world(env)
    for _ in range(3):
        check(tls_get(port, "ku.example.com", ctx).status == 200, "warm-up request")
    flood, line = ku_flood(env, port, "bare", KU_COUNT)
    ku_end(flood)
    check(line.startswith("closed after "), f"a client sending {KU_COUNT} KeyUpdates and nothing else: {line!r}")
    flood, line = ku_flood(env, port, "requests", 100)
    ku_end(flood)
    check(line == "served 100\n", f"100 requests each after a KeyUpdate: {line!r}")
    # KeyUpdates that follow data in one write, read with it (the worker
    # reads every record that came), are still in a row: 40 close it, 20 do not.
    flood, line = ku_flood(env, port, "after", 40, 10)
    ku_end(flood)
    check(line == "closed after 40\n", f"40 KeyUpdates after a byte of data: {line!r}")
    flood, line = ku_flood(env, port, "after", 20, 2)
    ku_end(flood)
    check(line == "open after 20\n", f"20 KeyUpdates after a byte of data: {line!r}")
    check(tls_get(port, "ku.example.com", ctx, "/after").status == 200, "a request after the floods")


@_test
def tls_keyupdate_flood(env):
    """A TLS 1.3 client sends KeyUpdate(update_requested) in a loop, a byte of
    a request header after each (so under the limit of KeyUpdates in a row),
    and never reads: the worker answers each with a KeyUpdate of its own until
    64 KiB of them wait unsent, then reads no more of that client. So what the
    client sent stays in its socket, the worker's memory does not grow with it,
    and other clients are served meanwhile and after. (The request head may be
    long enough not to end the flood first with a 431.) In a network namespace
    with small TCP buffers, so that the kernel's take no 300,000 KeyUpdates
    (4 MiB each way) before the worker has to stop reading: a worker that
    stops ends the flood within seconds, one that does not lets it run to its
    end."""
    ns = make_netns(env, {"net.ipv4.tcp_wmem": "4096 16384 16384",
                          "net.ipv4.tcp_rmem": "4096 16384 16384"})
    with in_netns(env, ns):
        keyupdate_flood_in(env)


def keyupdate_flood_in(env):
    port, ctx = ku_world(env, ", maxRequestHeaderBytes: 1048576")
    for _ in range(20):
        check(tls_get(port, "ku.example.com", ctx).status == 200, "warm-up request")
    (wpid,) = env.workers()
    rss0 = vmrss_kib(wpid)
    peak, stop = [rss0], threading.Event()

    def sample():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], vmrss_kib(wpid))

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    flood = None
    try:
        # Under ASan each KeyUpdate costs the worker three times as long: the
        # flood gets as long to send as many (it stops at KU_COUNT).
        flood, line = ku_flood(env, port, "trickle", KU_COUNT,
                               KU_SECONDS * 3 if asan_build(env) else KU_SECONDS)
        m = re.fullmatch(r"sent (\d+) unsent (\d+)\n", line)
        if not m:
            raise TestFailure(f"the flood client failed: {line!r}")
        sent, unsent = int(m[1]), int(m[2])
        # Still open and unread: the worker serves others beside it.
        for i in range(5):
            check(tls_get(port, "ku.example.com", ctx, f"/during{i}").status == 200, "a request beside the flood")
    finally:
        stop.set()
        t.join()
        if flood:
            ku_end(flood)
    grew = peak[0] - rss0
    # Before 2026-12-03 the worker read all 300,000 (unsent 0) and grew by
    # 5.9 MiB; since, it stops reading once 64 KiB of answers wait, and grows
    # by 0.4 MiB.
    check(unsent > 0, f"the worker read all {sent} KeyUpdates of a client that reads none of the answers")
    check(grew < 2048 or asan_build(env), f"the worker grew by {grew} KiB while the client sent {sent} KeyUpdates")
    check(tls_get(port, "ku.example.com", ctx, "/after").status == 200, "a request after the flood")


# --------------------------------------------------------------------------- resumption


@_test
def tls_resumption_across_upgrade(env):
    """A binary upgrade (SIGUSR2) hands the session-ticket keys over: a
    session issued before it resumes after it (TLS 1.3 and 1.2), as it
    resumes on another worker; the new master made new keys, and every client
    paid a full handshake after an upgrade."""
    from test_control import _own_binary, _upgrade_done

    pki = Pki(env)
    port = free_port()
    exe = _own_binary(env)
    crt = pki.leaf("r", ["DNS:r.example.com"])
    world(env, [server(port, ["*"], tls_simple(crt))], workers=2)
    sess = {}
    for version in ("-tls1_3", "-tls1_2"):
        sess[version] = env.path(f"sess{version}")
        rc, out = s_client(port, version, "-ign_eof", "-sess_out", sess[version], sni="r.example.com",
                           data=b"GET / HTTP/1.1\r\nHost: r.example.com\r\nConnection: close\r\n\r\n")
        check(rc == 0 and "New," in out and "HTTP/1.1 200" in out, f"{version} before: rc {rc}:\n{out[-1500:]}")
    _upgrade_done(env, exe)
    for version in ("-tls1_3", "-tls1_2"):
        rc, out = s_client(port, version, "-ign_eof", "-sess_in", sess[version], sni="r.example.com",
                           data=b"GET / HTTP/1.1\r\nHost: r.example.com\r\nConnection: close\r\n\r\n")
        check(rc == 0 and "Reused," in out and "HTTP/1.1 200" in out,
              f"{version}: the session issued before the upgrade did not resume after it: rc {rc}:\n{out[-1500:]}")


@_test
def tls_resumption_across_workers(env):
    """Session tickets sealed with keys every worker shares: s_client resumes
    (TLS 1.3 and 1.2) on each reconnect, also once the worker that issued the
    ticket is gone (killed, then replaced by the master) and another worker
    accepts."""
    import signal
    import urllib.request

    pki = Pki(env)
    port, admin = free_port(), free_port()
    crt = pki.leaf("r", ["DNS:r.example.com"])
    world(env, [server(port, ["*"], tls_simple(crt))], workers=2,
          app_extra=f"  admin: {{address: 127.0.0.1:{admin}}}\n")
    sock = env.path("ctl.sock")

    def per_worker():
        return {w["pid"]: w["requests"] for w in json.loads(ctl_cmd(sock, "show workers json"))}

    def connect(version, sess_arg, sess, want):
        before = per_worker()
        rc, out = s_client(port, version, "-ign_eof", sess_arg, sess, sni="r.example.com",
                           data=b"GET / HTTP/1.1\r\nHost: r.example.com\r\nConnection: close\r\n\r\n")
        check(rc == 0 and want in out and "HTTP/1.1 200" in out, f"{version} {sess_arg}: want {want!r}, rc {rc}:\n"
                                                                  f"{out[-1500:]}")
        now = per_worker()
        return {pid for pid in now if now[pid] > before.get(pid, 0)}

    def tls_metrics(prefix="isthmus_tls_"):
        body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
        return {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in body.splitlines() if l.startswith(prefix)}

    for version in ("-tls1_3", "-tls1_2"):
        sess = env.path(f"sess{version}")
        issuer = connect(version, "-sess_out", sess, "New,")
        check(len(issuer) == 1 and os.path.getsize(sess) > 0, f"{version}: issuing worker {issuer}")
        for _ in range(4):
            connect(version, "-sess_in", sess, "Reused,")
        victim = issuer.pop()
        os.kill(victim, signal.SIGKILL)
        poll(lambda: victim not in env.workers() and len(env.workers()) == 2, 10,
             what=f"worker {victim} to be replaced")
        before = tls_metrics()
        for _ in range(4):
            by = connect(version, "-sess_in", sess, "Reused,")
            check(victim not in by, f"served by the killed worker {victim}?")
        after = tls_metrics()
        # Optional: isthmus_tls_* metrics, where they exist, count these handshakes.
        for name in ("isthmus_tls_resumed_total", "isthmus_tls_handshakes_total"):
            check(after[name] - before.get(name, 0) == 4,
                  f"{version}: {name} moved by {after[name] - before.get(name, 0)} over 4 resumed handshakes")
    # The HTTPS server's route counts its responses, once per route.
    routes = tls_metrics("isthmus_route_responses_total{")
    ok = [k for k in routes if 'code_class="2xx"' in k]
    check(len(ok) == 1 and routes[ok[0]] >= 18, f"2xx route series over HTTPS: { {k: routes[k] for k in ok} }")


# --------------------------------------------------------------------------- httpsRedirect


@_test
def tls_https_redirect(env):
    """An HTTP server with httpsRedirect answers 301 to https://host/path?query,
    as Envoy's createSslRedirectPath makes it: the Host as it came, its port
    too (isthmus dropped it), and the request's path (an absolute-form
    target's path: the whole target was pasted after the host); the HTTPS
    server of that host serves."""
    pki = Pki(env)
    https, http = free_port(), free_port()
    crt = pki.leaf("a", ["DNS:a.example.com"])
    world(env, [server(https, ["a.example.com"], tls_simple(crt)),
                server(http, ["a.example.com"], "httpsRedirect: true", protocol="HTTP")],
          vs_hosts=("a.example.com",))
    poll(lambda: socket.create_connection(("127.0.0.1", http), 1).close() is None, 5, what="the HTTP port")
    with Conn("127.0.0.1", http) as c:
        r = c.request("GET", "/p/x?q=1&r=2", host=f"a.example.com:{http}")
    check(r.status == 301 and r.header("location") == f"https://a.example.com:{http}/p/x?q=1&r=2",
          f"redirect: {r.status} location {r.header('location')!r}")
    with Conn("127.0.0.1", http) as c:
        c.send(b"GET http://a.example.com/abs?x=1 HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        r = c.read_response()
    check(r.status == 301 and r.header("location") == "https://a.example.com/abs?x=1",
          f"an absolute-form target's redirect: {r.status} location {r.header('location')!r}")
    check(r.header("x-upstream") is None, "the redirect went to the upstream")
    rc, out, err = curl(["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", "Host: a.example.com",
                         f"http://127.0.0.1:{http}/"])
    check(out == "301 https://a.example.com/", f"curl: {out!r} {err}")
    check(tls_get(https, "a.example.com", client_ctx(pki)).status == 200, "the HTTPS server")


@_test
def tls_trusted_forwarded_proto(env):
    """Behind a proxy that terminated TLS (gatewayTopology.numTrustedProxies: 1),
    that proxy's X-Forwarded-Proto says the scheme, as Envoy reads it: `https`
    is not redirected by httpsRedirect, matches `scheme: {exact: https}` and
    reaches the upstream as it is; `http`, or none, is redirected. Without
    trusted proxies the field is the client's word: it neither escapes the
    redirect nor matches, and the upstream gets the connection's scheme."""
    http = free_port()
    ups = env.upstream(["127.0.0.2:0=s"], name="s")
    upp = env.upstream(["127.0.0.3:0=p"], name="p")

    def write(trusted):
        return env.write("isthmus.yaml", docs(
            appliance(env, extra=f"  gatewayTopology: {{numTrustedProxies: {trusted}}}\n"),
            gateway_of(server(http, ["r.example.com"], "httpsRedirect: true", protocol="HTTP"),
                       server(http, ["o.example.com"], None, protocol="HTTP")),
            virtual_service("vs", ["r.example.com", "o.example.com"],
                            "  - match: [{scheme: {exact: https}}]\n    route: [{destination: {host: s.internal}}]\n"
                            "  - route: [{destination: {host: p.internal}}]\n"),
            service_entry("s", "s.internal", [{"address": "127.0.0.2", "port": ups["s"]}]),
            service_entry("p", "p.internal", [{"address": "127.0.0.3", "port": upp["p"]}])))

    env.start_gateway(write(1), http)

    def get(host, xfp):
        hdrs = [("X-Forwarded-For", "203.0.113.7")] + ([("X-Forwarded-Proto", xfp)] if xfp else [])
        with Conn("127.0.0.1", http) as c:
            r = c.request("GET", "/headers", host, hdrs)
        if r.status != 200:
            return r.status, r.header("location")
        return r.status, r.header("x-upstream"), header_fields(r.body).get("x-forwarded-proto")

    for host, xfp, want in (("r.example.com", None, (301, "https://r.example.com/headers")),
                            ("r.example.com", "http", (301, "https://r.example.com/headers")),
                            ("r.example.com", "https", (200, "s", ["https"])),
                            ("o.example.com", "https", (200, "s", ["https"])),
                            ("o.example.com", "http", (200, "p", ["http"])),
                            ("o.example.com", None, (200, "p", ["http"]))):
        check(get(host, xfp) == want, f"trusted, {host} with X-Forwarded-Proto {xfp}: {get(host, xfp)}, want {want}")
    write(0)
    ans = ctl_cmd(env.path("ctl.sock"), "reload")
    check("published" in ans, f"reload: {ans!r}")
    for host, xfp, want in (("r.example.com", "https", (301, "https://r.example.com/headers")),
                            ("o.example.com", "https", (200, "p", ["http"]))):
        check(get(host, xfp) == want, f"untrusted, {host} with X-Forwarded-Proto {xfp}: {get(host, xfp)}, want {want}")


@_test
def tls_https_redirect_every_host(env):
    """httpsRedirect redirects every host its server names, as Istio's gateway
    does, whether a VirtualService binds the host or not; a host that a server
    without the redirect names exactly, through another Gateway, is served; one
    that both servers name is redirected; a host no server names is 404."""
    http = free_port()
    up = env.upstream(["127.0.0.2:0=a"], name="a")
    conf = env.write("isthmus.yaml", docs(
        appliance(env),
        gateway_of(server(http, ["*.example.com", "b.other.org", "tie.example.net"], "httpsRedirect: true",
                          protocol="HTTP"), name="gw"),
        gateway_of(server(http, ["plain.example.com", "tie.example.net", "c.test"], None, protocol="HTTP"),
                   name="gw2"),
        virtual_service("bound", ["a.example.com"], route_to(SVC), gateways=("gw",)),
        virtual_service("plain", ["plain.example.com", "tie.example.net"], route_to(SVC), gateways=("gw2",)),
        service_entry("tls", SVC, [{"address": "127.0.0.2", "port": up["a"]}])))
    env.start_gateway(conf, http)
    for host, want in (("x.example.com", 301), ("y.z.example.com", 301), (f"b.other.org:{http}", 301),
                       ("a.example.com", 301), ("tie.example.net", 301), ("plain.example.com", 200),
                       ("c.test", 404), ("example.com", 404), ("nothing.org", 404)):
        with Conn("127.0.0.1", http) as c:
            r = c.request("GET", "/p/x?q=1", host=host)
        loc = f"https://{host}/p/x?q=1" if want == 301 else None  # the Host as it came
        check(r.status == want and r.header("location") == loc,
              f"Host {host}: {r.status} location {r.header('location')!r}, want {want} {loc}")
        check((r.header("x-upstream") == "a") == (want == 200), f"Host {host}: x-upstream {r.header('x-upstream')}")


# --------------------------------------------------------------------------- PeerAuthentication


@_test
def tls_peer_auth_strict(env):
    """A mesh-wide STRICT PeerAuthentication on a plaintext listener: plaintext is
    closed without an answer; only mutual TLS with a mesh-CA client certificate is
    served."""
    pki = Pki(env)
    port = free_port()
    world(env, [server(port, ["*"], None, protocol="HTTP")], app_extra=mesh_identity(pki),
          extra_docs=[peer_auth("mesh", "STRICT", namespace="istio-system")])
    plain_refused(port)
    peer = pki.leaf("peer", ["URI:spiffe://cluster.local/ns/default/sa/client"])
    r = tls_get(port, "test.local", client_ctx(pki, cert=peer), "/headers")
    check(r.status == 200, f"mutual TLS to a STRICT port: {r}")
    refused(port, "test.local", client_ctx(pki))
    refused(port, "test.local", client_ctx(pki, cert=pki.leaf("alien", ["URI:spiffe://x/y"], ca="ca2")))
    cn, sans, _ = served(port, "test.local", client_ctx(pki, cert=peer))
    check(cn == "gw-mesh" and "spiffe://cluster.local/ns/default/sa/gateway" in sans,
          f"the gateway did not present its mesh identity: {cn} {sans}")


@_test
def tls_peer_auth_levels(env):
    """Workload policy (selector on the Appliance's labels) over namespace and
    mesh-wide: PERMISSIVE serves plaintext and mutual TLS on one port, a port
    level DISABLE is plaintext only, a port level STRICT refuses plaintext; a
    policy whose selector does not match is ignored."""
    pki = Pki(env)
    p1, p2, p3 = free_port(), free_port(), free_port()
    app = mesh_identity(pki) + "  labels: {app: edge, tier: front}\n"
    world(env, [server(p, ["*"], None, protocol="HTTP") for p in (p1, p2, p3)], app_extra=app,
          extra_docs=[peer_auth("mesh", "STRICT", namespace="istio-system"),
                      peer_auth("ns", "STRICT"),
                      peer_auth("other", "DISABLE", selector={"app": "other"}),
                      peer_auth("edge", "PERMISSIVE", selector={"app": "edge"},
                                port_modes={p2: "DISABLE", p3: "STRICT"})])
    for p in (p2, p3):
        poll(lambda: socket.create_connection(("127.0.0.1", p), 1).close() is None, 5, what=f"port {p}")
    peer = client_ctx(pki, cert=pki.leaf("peer", ["URI:spiffe://cluster.local/ns/default/sa/client"]))
    check(env.get("/").status == 200, "PERMISSIVE: plaintext")
    check(tls_get(p1, "test.local", peer).status == 200, "PERMISSIVE: mutual TLS")
    check(env.get("/", headers={"Connection": "close"}).status == 200, "PERMISSIVE: plaintext again")
    with Conn("127.0.0.1", p2) as c:
        check(c.request("GET", "/", "test.local").status == 200, "DISABLE: plaintext")
    refused(p2, "test.local", peer)
    plain_refused(p3)
    check(tls_get(p3, "test.local", peer).status == 200, "STRICT port: mutual TLS")


# --------------------------------------------------------------------------- TLS to upstreams


def spawn_nginx(env, servers, listens):
    """nginx (in env.dir) with the http servers given (nginx.conf text); waits
    (bounded) until each (address, port) of listens takes connections."""
    if not have("nginx"):
        raise Skip("nginx is not installed (Debian package nginx)")
    # nginx gives its temporary directories to its workers' user: a directory
    # of their own, so that the test's (where isthmus keeps its control
    # socket, which it wants owned by root) stays root's.
    tmp = env.path("nginx-temp")
    os.makedirs(tmp, exist_ok=True)
    conf = env.write("nginx.conf", f"""
worker_processes 1; pid {env.path('nginx.pid')}; error_log {env.path('nginx-error.log')} info;
events {{ worker_connections 256; }}
http {{
  access_log {env.path('nginx-access.log')};
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
{servers}
}}
""")
    proc = env.spawn("nginx", ["nginx", "-c", conf, "-p", env.dir, "-g", "daemon off;"])

    def up():
        check(proc.alive(), f"nginx exited: {proc.log()}")
        for addr, port in listens:
            socket.create_connection((addr, port), 1).close()
        return True

    poll(up, 5, what="nginx to listen")
    return proc


def start_nginx(env, pki, addr):
    """nginx on addr:port with TLS, requiring a client certificate from ca;
    answers "tls-upstream <client DN> sni=<SNI>". Returns the port."""
    if not have("nginx"):
        raise Skip("nginx is not installed (Debian package nginx)")
    port = free_port(addr)
    crt, key = pki.leaf("nginx-up", ["DNS:tls-up.test.internal"])
    spawn_nginx(env, f"""  server {{
    listen {addr}:{port} ssl;
    ssl_certificate {crt}; ssl_certificate_key {key};
    ssl_verify_client on; ssl_client_certificate {pki.ca()};
    location / {{ default_type text/plain; return 200 "tls-upstream $ssl_client_s_dn sni=$ssl_server_name\\n"; }}
  }}""", [(addr, port)])
    return port


def dr_tls(name, host, tls):
    return (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n"
            f"spec:\n  host: {host}\n  trafficPolicy:\n    tls: {{{tls}}}\n")


def checked_health(sock, keys):
    """{endpoint key: healthy?} for those of keys checked at least once."""
    doc = {e["key"]: e for e in json.loads(ctl_cmd(sock, "show endpoints json"))}
    return {k: doc[k]["health"] == "healthy" for k in keys if k in doc and doc[k]["checks"] > 0}


@_test
def tls_upstream_health_checks(env):
    """Active health checks of a cluster that originates TLS speak TLS, as
    Envoy's checker does through the cluster's transport socket: an HTTP check
    to nginx (which requires a client certificate) with MUTUAL settings passes,
    also with the server name taken from a hostHeader with a port (without
    it); the same with a subjectAltNames nginx's certificate lacks, or with
    another CA, fails; a TCP check passes only once the handshake completes
    (against a listener that never answers one it fails, though the connect
    succeeds); a subset with other settings is checked with the service's own.
    A reload that mends the subjectAltNames makes its endpoint healthy."""
    pki = Pki(env)
    nport = start_nginx(env, pki, "127.0.0.5")
    mute = socket.socket()
    mute.bind(("127.0.0.6", 0))
    mute.listen(64)  # accepted by the kernel, never read: no handshake
    port = free_port()
    client = pki.leaf("gw-client", ["URI:spiffe://x/gw"])
    mutual_nosni = f"mode: MUTUAL, clientCertificate: {client[0]}, privateKey: {client[1]}, caCertificates: {pki.ca()}"
    mutual = f"{mutual_nosni}, sni: tls-up.test.internal"
    badsan = f"{mutual}, subjectAltNames: [spiffe://wrong/name]"
    http = "type: http, path: /healthz"
    cases = {  # cluster host: (address, port, tls, check, healthy?)
        "hc-mtls.internal": ("127.0.0.5", nport, mutual, http, True),
        "hc-hostport.internal": ("127.0.0.5", nport, mutual_nosni,
                                 f"{http}, hostHeader: 'tls-up.test.internal:8443'", True),
        "hc-badsan.internal": ("127.0.0.5", nport, badsan, http, False),
        "hc-badca.internal": ("127.0.0.5", nport, mutual.replace(pki.ca(), pki.ca("ca2")), http, False),
        "hc-tcp.internal": ("127.0.0.5", nport, mutual, "type: tcp", True),
        "hc-mute.internal": ("127.0.0.6", mute.getsockname()[1], mutual, "type: tcp", False),
    }
    checks = "  healthChecks:\n"
    parts = [gateway(port)]
    for i, (host, (addr, p, tls, hc, _)) in enumerate(cases.items()):
        checks += (f"  - {{host: {host}, {hc}, interval: 300ms, timeout: 2s, healthyThreshold: 1, "
                   f"unhealthyThreshold: 1}}\n")
        parts.append(virtual_service(f"vs{i}", [host.split(".")[0] + ".up"], route_to(host)))
        parts.append(service_entry(host.split(".")[0], host, [{"address": addr, "port": p, "labels": {"v": "1"}}]))
        dr = dr_tls(host.split(".")[0], host, tls)
        if host == "hc-mtls.internal":  # a subset the check does not use
            dr += "  subsets:\n  - name: v1\n    labels: {v: \"1\"}\n    trafficPolicy: {tls: {mode: DISABLE}}\n"
        parts.append(dr)
    conf = env.write("isthmus.yaml", docs(appliance(env, extra=checks), *parts))
    env.start_gateway(conf, port)
    sock = env.path("ctl.sock")
    want = {f"{h}|{a}:{p}": ok for h, (a, p, _, _, ok) in cases.items()}

    def wait_health(want):
        try:
            poll(lambda: checked_health(sock, want) == want, 15, what="the endpoints' health")
        except TestFailure as e:
            raise TestFailure(f"{e}: want {want}, got {checked_health(sock, want)}") from None

    try:
        wait_health(want)
        r = env.get("/", host="hc-mtls.up", timeout=10)
        check(r.status == 200 and b"tls-upstream CN=gw-client" in r.body, f"through the checked cluster: {r}")
        # No outlierDetection: Envoy's 50 % panic threshold sends to the one
        # endpoint all the same, whose handshake fails as its checks' did.
        for host in ("hc-badsan.up", "hc-badca.up"):
            r = env.get("/", host=host, timeout=10)
            check(r.status == 503 and b"upstream connect error" in r.body, f"{host}, a failing cluster: {r}")
        # The checker's contexts follow the settings a reload publishes.
        env.write("isthmus.yaml", docs(appliance(env, extra=checks), *parts).replace(
            badsan, f"{mutual}, subjectAltNames: [tls-up.test.internal]"))
        ans = ctl_cmd(sock, "reload")
        check("published" in ans, f"reload: {ans!r}")
        wait_health({**want, f"hc-badsan.internal|127.0.0.5:{nport}": True})
        r = env.get("/", host="hc-badsan.up", timeout=10)
        check(r.status == 200 and b"tls-upstream CN=gw-client" in r.body, f"after the reload: {r}")
    finally:
        mute.close()


@_test
def tls_upstream_nginx(env):
    """DestinationRule tls to nginx (which requires a client certificate): MUTUAL
    and ISTIO_MUTUAL are served; SIMPLE (no client certificate) is answered with
    an error; a subjectAltNames that the server does not have and an SNI (taken
    from Host) that its certificate does not name are refused as connect failures."""
    pki = Pki(env)
    nport = start_nginx(env, pki, "127.0.0.5")
    port = free_port()
    client = pki.leaf("gw-client", ["URI:spiffe://x/gw"])
    ca = pki.ca()
    mutual = f"mode: MUTUAL, clientCertificate: {client[0]}, privateKey: {client[1]}, caCertificates: {ca}"
    cases = {  # request Host: (cluster host, tls settings)
        "mtls.up": ("up-mtls.internal", f"{mutual}, sni: tls-up.test.internal"),
        "nocert.up": ("up-nocert.internal", f"mode: SIMPLE, caCertificates: {ca}, sni: tls-up.test.internal"),
        "badsan.up": ("up-badsan.internal", f"{mutual}, sni: tls-up.test.internal, "
                                            "subjectAltNames: [spiffe://wrong/name]"),
        "goodsan.up": ("up-goodsan.internal", f"{mutual}, subjectAltNames: [tls-up.test.internal]"),
        "tls-up.test.internal": ("up-host.internal", mutual),
        "wrong-name.up": ("up-host.internal", mutual),
        "mesh.up": ("up-mesh.internal", "mode: ISTIO_MUTUAL"),
    }
    parts = [appliance(env, extra=mesh_identity(pki)), gateway(port)]
    for i, (host, (cluster, tls)) in enumerate(cases.items()):
        parts.append(virtual_service(f"vs{i}", [host], route_to(cluster)))
    for cluster, tls in {c: t for c, t in cases.values()}.items():
        parts.append(service_entry(cluster.split(".")[0], cluster, [{"address": "127.0.0.5", "port": nport}]))
        parts.append(dr_tls(cluster.split(".")[0], cluster, tls))
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), port)

    def get(host):
        return env.get("/", host=host, timeout=15)

    # A meshIdentity without PeerAuthentication: the plaintext port is PERMISSIVE.
    peer = pki.leaf("peer", ["URI:spiffe://cluster.local/ns/default/sa/client"])
    check(tls_get(port, "mtls.up", client_ctx(pki, cert=peer)).status == 200, "mutual TLS on a PERMISSIVE port")
    # Fresh connections first: nothing pooled for up-host.internal yet.
    for host in ("badsan.up", "wrong-name.up"):
        r = get(host)
        check(r.status == 503 and b"tls-upstream" not in r.body, f"{host}: want 503, got {r}")
    r = get("mtls.up")
    check(r.status == 200 and r.body == b"tls-upstream CN=gw-client sni=tls-up.test.internal\n", f"MUTUAL: {r}")
    r = get("tls-up.test.internal")
    check(r.status == 200 and b"sni=tls-up.test.internal" in r.body, f"SNI from Host: {r}")
    r = get("goodsan.up")
    check(r.status == 200 and b"CN=gw-client" in r.body, f"matching subjectAltNames: {r}")
    r = get("mesh.up")
    check(r.status == 200 and b"CN=gw-mesh" in r.body, f"ISTIO_MUTUAL: {r}")
    r = get("nocert.up")
    check(r.status >= 400 and b"tls-upstream" not in r.body, f"SIMPLE to an upstream requiring a certificate: {r}")
    check(get("mtls.up").status == 200, "MUTUAL after the failures")
    # A connection verified for one name must not carry a request whose SNI
    # (its Host) is another: the pool is per SNI, as Envoy's auto SNI keeps it.
    r = get("wrong-name.up")
    check(r.status == 503, f"Host wrong-name.up after a pooled connection for tls-up.test.internal: want 503 "
                           f"(the certificate does not name it), got {r.status} {r.body!r}")


def tls_nginx_pair(env, first, second):
    """nginx serving TLS with certificate first ((crt, key)) on 127.0.0.5 and
    second on 127.0.0.6, each answering "tls-upstream sni=<its SNI>"; their
    ports by address."""
    ports = {a: free_port(a) for a in ("127.0.0.5", "127.0.0.6")}
    spawn_nginx(env, "".join(f"""  server {{
    listen {a}:{ports[a]} ssl;
    ssl_certificate {crt}; ssl_certificate_key {key};
    location / {{ default_type text/plain; return 200 "tls-upstream sni=$ssl_server_name\\n"; }}
  }}
""" for a, (crt, key) in (("127.0.0.5", first), ("127.0.0.6", second))), list(ports.items()))
    return ports


@_test
def tls_upstream_pool_per_settings(env):
    """A pooled upstream connection serves only requests of its own TLS
    settings: two subsets of one endpoint that send it different server names
    (a DestinationRule sni each) get a connection each, in turns on one
    client connection (one worker, one pool), as Envoy's pools are per cluster
    and per transport socket options; reusing the first subset's connection
    for the second sent it verified for the other name."""
    pki = Pki(env)
    crt = pki.leaf("pool.test.internal", ["DNS:a.test.internal", "DNS:b.test.internal"])
    ports = tls_nginx_pair(env, crt, crt)
    port = free_port()
    host = "pool.test.internal"
    routes = "".join(f"  - match: [{{uri: {{prefix: /{n}}}}}]\n    route: [{{destination: {{host: {host}, subset: {n}}}}}]\n"
                     for n in ("a", "b"))
    dr = (dr_tls("pool", host, f"mode: SIMPLE, caCertificates: {pki.ca()}") + "  subsets:\n" +
          "".join(f"  - name: {n}\n    labels: {{}}\n    trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: "
                  f"{pki.ca()}, sni: {n}.test.internal}}}}\n" for n in ("a", "b")))
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, workers=1), gateway(port), virtual_service("vs", ["*"], routes),
        service_entry("pool", host, [{"address": "127.0.0.5", "port": ports["127.0.0.5"]}]), dr)), port)
    with Conn("127.0.0.1", port, timeout=15) as c:
        for n in ("a", "b", "a", "b"):
            r = c.request("GET", f"/{n}", "x")
            check(r.status == 200 and r.body == f"tls-upstream sni={n}.test.internal\n".encode(),
                  f"subset {n}: {r.status} {r.body!r}")


@_test
def tls_upstream_cn_is_no_name(env):
    """The upstream's name is looked for in its certificate's DNS SANs only, as
    Envoy's SAN check: a certificate whose CN is the name but whose SANs do
    not carry it as a DNS name (a URI SAN that reads as it does not count) is
    refused (503, a connect failure); OpenSSL's fallback to the CN took it.
    One that carries it as a DNS SAN is served."""
    pki = Pki(env)
    cn_only = pki.leaf("cn-only.test.internal", ["URI:cn-only.test.internal"])
    san = pki.leaf("san.test.internal", ["DNS:san.test.internal"])
    ports = tls_nginx_pair(env, cn_only, san)
    port = free_port()
    parts = [appliance(env), gateway(port)]
    for i, (host, addr) in enumerate((("cn-only.test.internal", "127.0.0.5"), ("san.test.internal", "127.0.0.6"))):
        parts += [virtual_service(f"vs{i}", [host], route_to(host)),
                  service_entry(f"se{i}", host, [{"address": addr, "port": ports[addr]}]),
                  dr_tls(f"dr{i}", host, f"mode: SIMPLE, caCertificates: {pki.ca()}")]
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), port)
    r = env.get("/", host="cn-only.test.internal", timeout=15)
    check(r.status == 503 and b"tls-upstream" not in r.body, f"a certificate naming the host in its CN only: {r}")
    r = env.get("/", host="san.test.internal", timeout=15)
    check(r.status == 200 and b"sni=san.test.internal" in r.body, f"a certificate naming it in a DNS SAN: {r}")


@_test
def tls_upstream_ip_host(env):
    """A request whose Host is an IP address sends the upstream no server name
    (RFC 6066 has none for an address; Envoy's auto_sni sends none), and the
    automatic check looks for that address among the certificate's IP
    subjectAltNames: it was sent as the SNI and looked for among the DNS
    names, so a certificate carrying the IP SAN was refused (503)."""
    pki = Pki(env)
    with_ip = pki.leaf("ip.test.internal", ["DNS:ip.test.internal", "IP:127.0.0.5"])
    dns_only = pki.leaf("dns.test.internal", ["DNS:dns.test.internal"])
    ports = tls_nginx_pair(env, with_ip, dns_only)
    port = free_port()
    routes = ("  - match: [{uri: {prefix: /five}}]\n    route: [{destination: {host: five.test.internal}}]\n"
              "  - route: [{destination: {host: six.test.internal}}]\n")
    parts = [appliance(env), gateway(port), virtual_service("vs", ["*"], routes)]
    for i, (host, addr) in enumerate((("five.test.internal", "127.0.0.5"), ("six.test.internal", "127.0.0.6"))):
        parts += [service_entry(f"se{i}", host, [{"address": addr, "port": ports[addr]}]),
                  dr_tls(f"dr{i}", host, f"mode: SIMPLE, caCertificates: {pki.ca()}")]
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), port)
    r = env.get("/five", host="127.0.0.5", timeout=15)
    check(r.status == 200 and r.body == b"tls-upstream sni=\n", f"an IP SAN for an IP Host, no SNI: {r}")
    r = env.get("/six", host="127.0.0.5", timeout=15)
    check(r.status == 503 and b"tls-upstream" not in r.body, f"a certificate without the IP SAN: {r}")


@_test
def tls_upstream_wildcard_names(env):
    """An upstream certificate's wildcard DNS SANs cover names as Envoy's
    dnsNameMatch, for the automatic check of the request's host (automatic
    SNI) and for the DestinationRule's subjectAltNames alike: "*.internal"
    covers a.internal (OpenSSL's host check refused it, as it refused a
    wildcard against an exact subjectAltName), a wildcard stands for one
    label only, and a subjectAltName the certificate does not cover is still
    a 503. An explicit sni without subjectAltNames checks no name, as istiod
    sets automatic SAN validation with automatic SNI only (it was checked)."""
    pki = Pki(env)
    short = pki.leaf("short", ["DNS:*.internal"])
    deep = pki.leaf("deep", ["DNS:*.Test.internal"])
    ports = tls_nginx_pair(env, short, deep)
    ca = pki.ca()
    cases = {  # request Host: (upstream, tls, status)
        "a.internal": ("127.0.0.5", "", 200),
        "a.b.internal": ("127.0.0.5", "", 503),
        "api.test.internal": ("127.0.0.6", "", 200),
        "a.api.test.internal": ("127.0.0.6", "", 503),
        "explicit.up": ("127.0.0.6", ", sni: a.api.test.internal", 200),
        "san.up": ("127.0.0.6", ", sni: x.test.internal, subjectAltNames: [api.test.internal]", 200),
        "san-two.up": ("127.0.0.6", ", sni: x.test.internal, subjectAltNames: [a.api.test.internal]", 503),
    }
    port = free_port()
    parts = [appliance(env), gateway(port)]
    for i, (host, (addr, tls, _)) in enumerate(cases.items()):
        cluster = f"up{i}.internal"
        parts += [virtual_service(f"vs{i}", [host], route_to(cluster)),
                  service_entry(f"se{i}", cluster, [{"address": addr, "port": ports[addr]}]),
                  dr_tls(f"dr{i}", cluster, f"mode: SIMPLE, caCertificates: {ca}{tls}")]
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), port)
    for host, (_, _, want) in cases.items():
        r = env.get("/", host=host, timeout=15)
        check(r.status == want and (want != 200 or b"tls-upstream" in r.body), f"{host}: want {want}, got {r}")


@_test
def tls_upstream_service_entry_sans(env):
    """A ServiceEntry's subjectAltNames are what the upstream certificate must
    carry when the DestinationRule's tls names none (Istio's service
    accounts), for MUTUAL and ISTIO_MUTUAL: one the certificate carries is
    served, one it lacks is a 503; the DestinationRule's own subjectAltNames
    win over them. Without an sni, the certificate must still name the
    request's host as well (Istio's automatic SAN validation stays on)."""
    pki = Pki(env)
    nport = start_nginx(env, pki, "127.0.0.5")
    port = free_port()
    client = pki.leaf("gw-client", ["URI:spiffe://x/gw"])
    mutual = (f"mode: MUTUAL, clientCertificate: {client[0]}, privateKey: {client[1]}, "
              f"caCertificates: {pki.ca()}")
    sni = f"{mutual}, sni: tls-up.test.internal"
    good, bad = "[tls-up.test.internal]", "[spiffe://wrong/name]"
    cases = {  # request Host: (tls, ServiceEntry subjectAltNames, status)
        "good.up": (sni, good, 200),
        "bad.up": (sni, bad, 503),
        "dr-wins.up": (f"{sni}, subjectAltNames: {good}", bad, 200),
        "auto-san.up": (mutual, good, 503),
        "mesh-good.up": ("mode: ISTIO_MUTUAL", good, 200),
        "mesh-bad.up": ("mode: ISTIO_MUTUAL", bad, 503),
    }
    parts = [appliance(env, extra=mesh_identity(pki)), gateway(port)]
    for i, (host, (tls, sans, _)) in enumerate(cases.items()):
        cluster = f"up{i}.internal"
        parts += [virtual_service(f"vs{i}", [host], route_to(cluster)),
                  service_entry(f"se{i}", cluster, [{"address": "127.0.0.5", "port": nport}])
                  + f"  subjectAltNames: {sans}\n",
                  dr_tls(f"dr{i}", cluster, tls)]
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), port)
    for host, (_, _, want) in cases.items():
        r = env.get("/", host=host, timeout=15)
        check(r.status == want and (want != 200 or b"tls-upstream" in r.body), f"{host}: want {want}, got {r}")


@_test
def tls_upstream_service_accounts(env):
    """A ServiceEntry endpoint's serviceAccount is one of the names the
    upstream certificate may carry when the DestinationRule names none, as
    Istio makes it: spiffe://<trustDomain>/ns/<the ServiceEntry's
    namespace>/sa/<name>. The sidecar's certificate names
    spiffe://cluster.local/ns/default/sa/reviews: the right account is
    served, another account or namespace is a 503, and so is the right one
    under another spec.trustDomain (by reload), unless cluster.local is among
    its spec.trustDomainAliases."""
    pki = Pki(env)
    port = free_port()
    sport, _ = start_sidecar(env, pki, "127.0.0.6", any_hello=True)
    cases = {  # request Host: (namespace, serviceAccount, status)
        "good.test": ("default", "reviews", 200),
        "other-sa.test": ("default", "ratings", 503),
        "other-ns.test": ("shop", "reviews", 503),
    }

    def conf(app_extra=""):
        parts = [appliance(env, extra=mesh_identity(pki) + app_extra), gateway(port)]
        for i, (host, (ns, sa, _)) in enumerate(cases.items()):
            cluster = f"sa{i}.internal"
            parts += [virtual_service(f"vs{i}", [host], route_to(cluster)),
                      service_entry(f"se{i}", cluster, [{"address": "127.0.0.6", "port": sport,
                                                         "serviceAccount": sa}])
                      .replace(f"metadata: {{name: se{i}}}", f"metadata: {{name: se{i}, namespace: {ns}}}"),
                      dr_tls(f"dr{i}", cluster, "mode: ISTIO_MUTUAL")]
        return env.write("isthmus.yaml", docs(*parts))

    env.start_gateway(conf(), port)
    for host, (_, _, want) in cases.items():
        r = env.get("/", host=host, timeout=15)
        check(r.status == want and (want != 200 or b"sidecar" in r.body), f"{host}: want {want}, got {r}")
    conf("  trustDomain: example.org\n")
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload to trustDomain example.org refused")
    r = env.get("/", host="good.test", timeout=15)
    check(r.status == 503, f"under trustDomain example.org the cluster.local account still passed: {r}")
    # An alias names the same accounts under another trust domain (Istio's trustDomainAliases).
    conf("  trustDomain: example.org\n  trustDomainAliases: [old.example, cluster.local]\n")
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload with trustDomainAliases refused")
    for host, (_, _, want) in cases.items():
        r = env.get("/", host=host, timeout=15)
        check(r.status == want, f"{host} with the alias cluster.local: want {want}, got {r}")


@_test
def tls_upstream_auto_mtls(env):
    """Istio's automatic mutual TLS: a MESH_INTERNAL ServiceEntry whose
    DestinationRule sets no tls speaks ISTIO_MUTUAL (the mesh SNI, the istio
    ALPN values, the service accounts) to its endpoints with a serviceAccount
    or labelled security.istio.io/tlsMode: istio, and plaintext to the
    others, in one cluster. Not for a MESH_EXTERNAL one, an endpoint labelled
    otherwise, a DestinationRule tls (DISABLE too), spec.enableAutoMtls:
    false, or a namespace PeerAuthentication DISABLE (the last two by
    reload). show endpoints says what each endpoint's connections speak."""
    pki = Pki(env)
    port = free_port()
    sport, _ = start_sidecar(env, pki, "127.0.0.6")
    plain = env.upstream(["127.0.0.2:0=plain"], name="plain")["plain"]
    side = {"address": "127.0.0.6", "port": sport}
    internal = "  location: MESH_INTERNAL\n"
    cases = {  # request Host: (endpoints, ServiceEntry extra, DestinationRule tls or None, status)
        "mixed.test": ([dict(side, serviceAccount="reviews"), {"address": "127.0.0.2", "port": plain}],
                       internal, None, 200),
        "label.test": ([dict(side, labels={"security.istio.io/tlsMode": "istio"})], internal, None, 200),
        "external.test": ([dict(side, serviceAccount="reviews")], "", None, 503),
        "label-off.test": ([dict(side, serviceAccount="reviews", labels={"security.istio.io/tlsMode": "disabled"})],
                           internal, None, 503),
        "dr.test": ([dict(side, serviceAccount="reviews")], internal, "mode: DISABLE", 503),
    }
    hosts = {h: f"{h.split('.')[0]}.default.svc.cluster.local" for h in cases}

    def conf(app_extra="", extra_docs=()):
        # label.test's endpoint is checked: the check speaks its TLS too.
        parts = [appliance(env, extra=mesh_identity(pki) + app_extra, health_checks=[hosts["label.test"]]),
                 gateway(port), *extra_docs]
        for i, (host, (eps, se_extra, tls, _)) in enumerate(cases.items()):
            parts += [virtual_service(f"vs{i}", [host], route_to(hosts[host])),
                      service_entry(f"se{i}", hosts[host], eps).replace("  resolution: STATIC\n",
                                                                          "  resolution: STATIC\n" + se_extra)]
            if tls:
                parts.append(dr_tls(f"dr{i}", hosts[host], tls))
        return env.write("isthmus.yaml", docs(*parts))

    def tls_of(host):
        eps = json.loads(ctl_cmd(env.path("ctl.sock"), f"show endpoints outbound|80||{hosts[host]} json"))
        return {e["key"].rsplit(":", 1)[1]: e["tls"] for e in eps}

    env.start_gateway(conf(), port)
    sidecar_key = f"{hosts['label.test']}|127.0.0.6:{sport}"
    poll(lambda: checked_health(env.path("ctl.sock"), [sidecar_key]) == {sidecar_key: True}, 10,
         what="the sidecar endpoint's health check, over mesh TLS, to pass")
    for host, (_, _, _, want) in cases.items():
        r = env.get("/", host=host, timeout=15)
        check(r.status == want, f"{host}: want {want}, got {r}")
    mesh_answer = (f"sidecar sni=outbound_.80_._.{hosts['mixed.test']} alpn=http/1.1 "
                   "peer=spiffe://cluster.local/ns/default/sa/gateway\n")
    bodies = {env.get("/", host="mixed.test", timeout=15).body.decode() for _ in range(12)}
    check(mesh_answer in bodies and any("sidecar" not in b for b in bodies),
          f"mixed.test: want the sidecar over mesh TLS and the plain upstream, got {bodies}")
    check(tls_of("mixed.test") == {str(sport): "ISTIO_MUTUAL", str(plain): "DISABLE"},
          f"show endpoints: {tls_of('mixed.test')}")
    # Off for the whole appliance, then for the namespace.
    pa = ("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
          "metadata: {name: \"off\", namespace: default}\nspec: {mtls: {mode: DISABLE}}\n")
    for extra, extra_docs in (("  enableAutoMtls: false\n", ()), ("", (pa,))):
        conf(extra, extra_docs)
        check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), f"reload with {extra}{extra_docs} refused")
        check(tls_of("mixed.test") == {str(sport): "DISABLE", str(plain): "DISABLE"},
              f"after {extra}{extra_docs}: show endpoints {tls_of('mixed.test')}")
        check(env.get("/", host="label.test", timeout=15).status == 503,
              f"after {extra}{extra_docs}: the sidecar still got mutual TLS")


def start_sidecar(env, pki, addr, snis=(), ca="ca", any_hello=False, name="sidecar"):
    """mesh_sidecar.py (an Istio sidecar's inbound stand-in) on addr, with a
    workload certificate signed by ca, taking clients of the mesh CA "ca";
    snis: the server names it accepts (any when empty). Returns (port, a
    function giving its log records so far)."""
    port = free_port(addr)
    crt, key = pki.leaf(name, ["URI:spiffe://cluster.local/ns/default/sa/reviews"], ca=ca)
    log = env.path(f"{name}.jsonl")
    argv = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "mesh_sidecar.py"),
            "--listen", f"{addr}:{port}", "--cert", crt, "--key", key, "--ca", pki.ca(), "--log", log]
    argv += [a for sni in snis for a in ("--sni", sni)] + (["--any-hello"] if any_hello else [])
    proc = env.spawn(name, argv)

    def up():
        check(proc.alive(), f"{name} exited: {proc.log()}")
        socket.create_connection((addr, port), 1).close()
        return True

    def records():
        try:
            with open(log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    poll(up, 5, what=f"{name} to listen")
    poll(lambda: records(), 5, what=f"{name}'s first log record (the readiness probe)")
    return port, records


REVIEWS = "reviews.default.svc.cluster.local"
ISTIO_HTTP11_ALPN = ["istio-http/1.1", "istio", "http/1.1"]


@_test
def tls_upstream_istio_mutual_sidecar(env):
    """ISTIO_MUTUAL towards a sidecar that, as Envoy's inbound listener, takes
    a connection for mesh mTLS only when the ClientHello offers an istio-http
    ALPN value and the SNI is the cluster's outbound_.PORT_.SUBSET_.HOST name:
    the gateway sends exactly what Istio's gateway sends (ALPN istio-http/1.1,
    istio, http/1.1; that SNI per subset; a DestinationRule sni instead when
    set), presents its mesh identity, and pooled connections keep their SNI."""
    pki = Pki(env)
    port = free_port()
    v1_sni, all_sni = f"outbound_.9080_.v1_.{REVIEWS}", f"outbound_.9080_._.{REVIEWS}"
    sport, records = start_sidecar(env, pki, "127.0.0.6", snis=(v1_sni, all_sni, "ratings.custom.sni"))
    sep = [{"address": "127.0.0.6", "port": sport, "labels": {"version": "v1"}}]
    dr_reviews = dr_tls("reviews", REVIEWS, "mode: ISTIO_MUTUAL") + "  subsets: [{name: v1, labels: {version: v1}}]\n"

    def dest(host, subset=None):
        sub = f", subset: {subset}" if subset else ""
        return f"  - route: [{{destination: {{host: {host}{sub}, port: {{number: 9080}}}}}}]\n"

    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, extra=mesh_identity(pki)), gateway(port),
        virtual_service("v1", ["v1.test"], dest(REVIEWS, "v1")),
        virtual_service("all", ["all.test"], dest(REVIEWS)),
        virtual_service("custom", ["custom.test"], dest("ratings.default.svc.cluster.local")),
        service_entry("reviews", REVIEWS, sep, port=9080), dr_reviews,
        service_entry("ratings", "ratings.default.svc.cluster.local", sep, port=9080),
        dr_tls("ratings", "ratings.default.svc.cluster.local", "mode: ISTIO_MUTUAL, sni: ratings.custom.sni"))), port)
    want = {"v1.test": v1_sni, "all.test": all_sni, "custom.test": "ratings.custom.sni"}
    with Conn("127.0.0.1", port, timeout=15) as c:
        for _ in range(3):  # one client connection, alternating clusters: each keeps its own SNI
            for host, sni in want.items():
                r = c.request("GET", "/", host)
                check(r.status == 200 and r.body.decode() == f"sidecar sni={sni} alpn=http/1.1 "
                                                               "peer=spiffe://cluster.local/ns/default/sa/gateway\n",
                      f"{host}: want the sidecar's mesh answer for SNI {sni}, got {r.status} {r.body!r}; "
                      f"sidecar saw {records()[-3:]}")
    hellos = [rec for rec in records()[1:] if "sni" in rec]
    check(len(hellos) >= 3 and all(h["alpn"] == ISTIO_HTTP11_ALPN and h["mesh"] for h in hellos),
          f"ClientHellos the sidecar saw: {hellos}")
    check({h["sni"] for h in hellos} == set(want.values()), f"SNIs the sidecar saw: {hellos}")
    check(len(hellos) <= 6, f"{len(hellos)} handshakes for 9 requests to 3 clusters: the pool is not used")


@_test
def tls_upstream_istio_mutual_h2_alpn(env):
    """Towards an HTTP/2 port (protocol HTTP2) with ISTIO_MUTUAL, the gateway
    offers Istio's mesh ALPN for HTTP/2, istio-h2, istio, h2, as Istio's
    istio.alpn filter sets it: a sidecar takes a connection for mesh mTLS on
    an istio- value; plain h2 alone made it application TLS."""
    pki = Pki(env)
    port = free_port()
    sni = f"outbound_.9080_._.{REVIEWS}"
    sport, records = start_sidecar(env, pki, "127.0.0.6", snis=(sni,))
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, extra=mesh_identity(pki)), gateway(port),
        virtual_service("h2", ["*"], f"  - route: [{{destination: {{host: {REVIEWS}, port: {{number: 9080}}}}}}]\n"),
        service_entry_protocol("reviews", REVIEWS, [{"address": "127.0.0.6", "port": sport}], "HTTP2", port=9080),
        dr_tls("reviews", REVIEWS, "mode: ISTIO_MUTUAL"))), port)
    env.get("/", host="h2.test", timeout=15)  # the sidecar speaks HTTP/1.1: what the gateway offered is the test
    hello = poll(lambda: next((r for r in records()[1:] if r.get("sni") == sni), None), 10,
                 what="the gateway's ClientHello at the sidecar")
    check(hello["alpn"] == ["istio-h2", "istio", "h2"] and hello["mesh"],
          f"the ClientHello towards an HTTP/2 port: {hello}")


@_test
def tls_upstream_handshake_alert(env):
    """An upstream whose certificate the mesh CA did not sign is refused (503)
    with the alert that says why: the upstream sees "unknown ca", not an EOF.
    The access log's upstream transport failure reason (and the response code
    details) say it as Envoy does: "TLS_error:|CODE:LIBRARY:FUNCTION:REASON:TLS_error_end",
    with OpenSSL's texts, spaces made underscores."""
    pki = Pki(env)
    port = free_port()
    log = env.path("access.log")
    fmt = "%RESPONSE_CODE% %RESPONSE_CODE_DETAILS% %UPSTREAM_TRANSPORT_FAILURE_REASON%"
    alog = f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n"
    sport, records = start_sidecar(env, pki, "127.0.0.6", ca="ca2", any_hello=True)
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, extra=mesh_identity(pki) + alog), gateway(port),
        virtual_service("vs", ["*"], route_to(REVIEWS)),
        service_entry("reviews", REVIEWS, [{"address": "127.0.0.6", "port": sport}]),
        dr_tls("reviews", REVIEWS, "mode: ISTIO_MUTUAL"))), port)
    r = env.get("/", timeout=15)
    check(r.status == 503 and b"sidecar" not in r.body, f"an upstream of a foreign CA: {r}")
    # records()[0] is start_sidecar's readiness probe.
    errors = poll(lambda: [rec["error"] for rec in records()[1:] if "error" in rec] or None, 5,
                  what="the upstream's handshake error")
    check(all(e == "TLSV1_ALERT_UNKNOWN_CA" for e in errors), f"the upstream saw {errors}, want the unknown ca alert")
    line = poll(lambda: file_lines(log), 5, what="the access-log line")[0]
    reason = r"TLS_error:\|\d+:SSL_routines::certificate_verify_failed:TLS_error_end"
    check(re.fullmatch(rf"503 upstream_reset_before_response_started\{{connection_failure,{reason}\}} {reason}", line),
          f"the access-log line of the refused upstream: {line!r}")


@_test
def tls_upstream_close_delimited_end_once(env):
    """An upstream over TLS that answers with a body its close ends and
    close_notify right behind it (openssl s_server -www: HTTP/1.0, no
    length): the end of the body reaches the client once. A delivery queued
    when the client's send completed told the end again after a receive had
    told it, and the worker aborted (BUG: a send while one was in flight)
    on about one request in two; the client had its answer, the requests the
    worker held were lost."""
    pki = Pki(env)
    crt, key = pki.leaf("up.example.com", ["DNS:up.example.com"])
    up = free_port("127.0.0.7")
    spawn_listening(env, "s_server", ["openssl", "s_server", "-accept", f"127.0.0.7:{up}", "-cert", crt,
                                      "-key", key, "-www", "-quiet"], "127.0.0.7", up)
    port = free_port()
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, workers=1), gateway(port),
        virtual_service("vs", ["*"], route_to("up.example.com")),
        service_entry("up", "up.example.com", [{"address": "127.0.0.7", "port": up}]),
        dr_tls("up", "up.example.com", f"mode: SIMPLE, caCertificates: {pki.ca()}"))), port)
    for i in range(20):
        try:
            r = http_get(port, "/", host="up.example.com")
        except (EOFError, OSError) as e:
            raise TestFailure(f"request {i}: {e!r} (the worker died?) {env.gateway.log()[-600:]}")
        check(r.status == 200 and b"</HTML>" in r.body.upper(), f"request {i}: {r}")
    log = env.gateway.log()
    check("BUG" not in log and "killed by signal" not in log,
          f"a worker aborted: {[l for l in log.splitlines() if 'BUG' in l or 'signal' in l][:3]}")


@_test
def tls_upstream_health_check_subsets(env):
    """One check serves an endpoint for every subset, so it speaks the TLS of
    the service port without a subset even when routes name only subsets:
    ISTIO_MUTUAL (the subset's own DISABLE is not used) towards a sidecar that
    takes only the service's own mesh SNI, outbound_.9080_._.HOST, offering
    Istio's HTTP/1.1 mesh ALPN and presenting the mesh identity."""
    pki = Pki(env)
    port = free_port()
    all_sni = f"outbound_.9080_._.{REVIEWS}"
    sport, records = start_sidecar(env, pki, "127.0.0.6", snis=(all_sni,))
    dr = (dr_tls("reviews", REVIEWS, "mode: ISTIO_MUTUAL") +
          "  subsets:\n  - name: v1\n    labels: {version: v1}\n    trafficPolicy: {tls: {mode: DISABLE}}\n")
    checks = (f"  healthChecks:\n  - {{host: {REVIEWS}, path: /healthz, interval: 300ms, timeout: 2s, "
              "healthyThreshold: 1, unhealthyThreshold: 1}\n")
    route = f"  - route: [{{destination: {{host: {REVIEWS}, subset: v1, port: {{number: 9080}}}}}}]\n"
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, extra=mesh_identity(pki) + checks), gateway(port),
        virtual_service("v1", ["v1.test"], route),
        service_entry("reviews", REVIEWS, [{"address": "127.0.0.6", "port": sport, "labels": {"version": "v1"}}],
                      port=9080), dr)), port)
    key = f"{REVIEWS}|127.0.0.6:{sport}"
    try:
        poll(lambda: checked_health(env.path("ctl.sock"), [key]) == {key: True}, 15,
             what="the endpoint to be checked healthy")
    except TestFailure as e:
        raise TestFailure(f"{e}: sidecar saw {records()[-3:]}") from None
    # records()[0] is start_sidecar's readiness probe.
    hellos = [rec for rec in records()[1:] if "sni" in rec]
    check(hellos and all(h["sni"] == all_sni and h["alpn"] == ISTIO_HTTP11_ALPN and h["mesh"] for h in hellos),
          f"ClientHellos of the checks: {hellos}")


# --------------------------------------------------------------------------- PROXY protocol


PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def pp2(src, dst, sport, dport, command=0x21, family=0x11):
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return PP2_SIG + bytes([command, family]) + struct.pack("!H", len(addrs)) + addrs


@_test
def tls_proxy_protocol(env):
    """proxyProtocol listeners: v1 and v2 headers give the client address that
    X-Forwarded-For and the access log show, also before a TLS handshake; a
    missing or malformed header closes the connection."""
    pki = Pki(env)
    http, https = free_port(), free_port()
    log = env.path("access.log")
    crt = pki.leaf("pp", ["DNS:pp.example.com"])
    world(env, [server(http, ["*"], None, protocol="HTTP"), server(https, ["*"], tls_simple(crt))],
          app_extra=f"  proxyProtocol: {{ports: [{http}, {https}]}}\n  accessLog: {{path: {log}, format: text, "
                    "textFormat: \"%REQ(:PATH)% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME%\"}\n")
    poll(lambda: socket.create_connection(("127.0.0.1", https), 1).close() is None, 5, what="the HTTPS port")

    def xff(r):
        check(r.status == 200, f"request after a PROXY header: {r}")
        return header_fields(r.body).get("x-forwarded-for", [""])[-1].split(",")[-1].strip()

    def via(preamble, path):
        with Conn("127.0.0.1", http) as c:
            c.send(preamble)
            return c.request("GET", path, "test.local")

    got = xff(via(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n", "/headers?v1"))
    check(got == "203.0.113.7", f"v1: X-Forwarded-For {got!r}")
    got = xff(via(pp2("198.51.100.9", "127.0.0.1", 4444, 80), "/headers?v2"))
    check(got == "198.51.100.9", f"v2: X-Forwarded-For {got!r}")
    got = xff(via(b"PROXY TCP6 2001:db8::5 ::1 5555 80\r\n", "/headers?v1v6"))
    check(got == "2001:db8::5", f"v1 TCP6: X-Forwarded-For {got!r}")
    r = tls_get(https, "pp.example.com", client_ctx(pki), "/headers?tls",
                preamble=b"PROXY TCP4 192.0.2.55 127.0.0.1 6000 443\r\n")
    check(xff(r) == "192.0.2.55" and header_fields(r.body).get("x-forwarded-proto") == ["https"],
          f"PROXY + TLS: {header_fields(r.body)}")
    r = tls_get(https, "pp.example.com", client_ctx(pki), "/headers?tls2",
                preamble=pp2("192.0.2.66", "127.0.0.1", 1, 443))
    check(xff(r) == "192.0.2.66", "PROXY v2 + TLS")
    for bad in (b"GET / HTTP/1.1\r\nHost: test.local\r\n\r\n",
                b"PROXY TCP4 not-an-address 127.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"PROXY TCP4 203.0.113.7 127.0.0.1 99999 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
                pp2("198.51.100.9", "127.0.0.1", 1, 80, command=0x31) + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                PP2_SIG[:11] + b"X" + b"\x21\x11\x00\x0c" + b"\x00" * 12 + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
        plain_refused(http, bad)
    refused(https, "pp.example.com", client_ctx(pki))
    # The client address and port the PROXY header gave, and the TLS SNI.
    want = {"/headers?v1": "203.0.113.7:5555 -", "/headers?v2": "198.51.100.9:4444 -",
            "/headers?tls": "192.0.2.55:6000 pp.example.com"}

    def logged():
        try:
            with open(log) as f:
                recs = [l.split(" ", 1) for l in f.read().splitlines() if " " in l]
        except FileNotFoundError:
            return None
        seen = {path: rest for path, rest in recs if path in want}
        return seen if len(seen) == len(want) else None

    seen = poll(logged, 5, what="the PROXY requests in the access log")
    for path, line in want.items():
        check(seen[path] == line, f"access log for {path}: {seen[path]!r}, want {line!r}")


# --------------------------------------------------------------------------- rotation


def rotation_world(env, pki, hosts=("*",), workers=2):
    port = free_port()
    crt = pki.leaf("rot", ["DNS:roku.example.com"])
    world(env, [server(port, list(hosts), tls_simple(crt))], workers=workers)
    return port, crt


@_test
def tls_gateway_topology_proxy_protocol(env):
    """Istio's gatewayTopology.proxyProtocol: {} puts every listener behind the
    PROXY protocol, as Istio's gateway listeners: the header's address is the
    client on each port, and a connection without it is closed; a field in it
    (Istio's message has none) is an error."""
    a, b = free_port(), free_port()
    conf = world(env, [server(a, ["*"], None, protocol="HTTP"), server(b, ["*"], None, protocol="HTTP")],
                 app_extra="  gatewayTopology: {proxyProtocol: {}}\n")
    poll(lambda: socket.create_connection(("127.0.0.1", b), 1).close() is None, 5, what="the second port")
    for port, src in ((a, "203.0.113.7"), (b, "198.51.100.9")):
        with Conn("127.0.0.1", port) as c:
            c.send(f"PROXY TCP4 {src} 127.0.0.1 5555 {port}\r\n".encode())
            r = c.request("GET", "/headers", "test.local")
        got = header_fields(r.body).get("x-forwarded-for", [""])[-1] if r.status == 200 else r
        check(got == src, f"port {port}: X-Forwarded-For {got!r}, want {src}")
        with Conn("127.0.0.1", port) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: test.local\r\n\r\n")
            check(c.closed_by_peer(), f"port {port}: a connection without the PROXY header was served")
    bad = world(env, [server(a, ["*"], None, protocol="HTTP")],
                app_extra="  gatewayTopology: {proxyProtocol: {version: 2}}\n", start=False)
    rc, out = env.check_config(bad)
    check(rc != 0 and "gatewayTopology.proxyProtocol.version" in out, f"a field in proxyProtocol: rc {rc}: {out}")
    check(bad == conf, "the file moved")


@_test
def tls_cert_rotation(env):
    """Files renamed into place are served within seconds, without a restart; a
    broken new file is refused with a log line and the old certificate serves on;
    a good file after it is taken again."""
    pki = Pki(env)
    port, (crt, key) = rotation_world(env, pki)
    ctx = client_ctx(pki)
    # Both workers forked (the port listens before they are; slow under ASan).
    workers = poll(lambda: env.workers() if len(env.workers()) == 2 else None, 10, what="the 2 workers")
    _, _, first = served(port, "roku.example.com", ctx)
    second = pki.rotate(crt, key, "rot", ["DNS:roku.example.com"])
    check(second != first, "the new certificate has the old serial")
    poll(lambda: served(port, "roku.example.com", ctx)[2] == second, 5, what="the rotated certificate to be served")
    refusals = env.log_count("certificate reload refused")
    pki.rotate(crt, key, "rot", ["DNS:roku.example.com"], garbage=True)
    poll(lambda: env.log_count("certificate reload refused") > refusals, 5,
         what="'certificate reload refused' in the master's log")
    for _ in range(5):
        check(served(port, "roku.example.com", ctx)[2] == second, "a broken certificate file changed what is served")
    third = pki.rotate(crt, key, "rot", ["DNS:roku.example.com"])
    poll(lambda: served(port, "roku.example.com", ctx)[2] == third, 5, what="a good certificate after a broken one")
    check(env.gateway.alive() and len(env.workers()) == len(workers),
          f"workers after the rotations: {workers} → {env.workers()}")


@_test
def tls_cert_rotation_under_load(env):
    """Three rotations while wrk keeps 20 HTTPS clients busy, each request on a
    new connection (a handshake each): every request succeeds and each new
    certificate is served."""
    if not have("wrk"):
        raise Skip("wrk is not installed")
    pki = Pki(env)
    port, (crt, key) = rotation_world(env, pki)  # wrk sends SNI 127.0.0.1: the "*" server
    ctx = client_ctx(pki)
    # wrk runs until the third rotation is served (SIGINT: its summary), 60 s at most.
    wrk = subprocess.Popen(["wrk", "-t2", "-c20", "-d60s", "--timeout", "3s", f"https://127.0.0.1:{port}/",
                            "-H", "Host: roku.example.com", "-H", "Connection: close"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for i in range(3):
            serial = pki.rotate(crt, key, "rot", ["DNS:roku.example.com"])
            poll(lambda: served(port, "roku.example.com", ctx)[2] == serial, 15, what=f"rotation {i + 1} served")
            check(wrk.poll() is None, f"wrk ended before rotation {i + 1} was served")
        wrk.send_signal(signal.SIGINT)
        out, _ = wrk.communicate(timeout=20)
    finally:
        wrk_reap(wrk)
    check_wrk_clean(out, 30, "during three certificate rotations")  # traffic through each; the check is "no error"
    check(env.log_count("certificates reloaded") >= 3, "the master logged fewer than 3 certificate reloads")


# --------------------------------------------------------------------------- configuration errors


@_test
def tls_config_errors(env):
    """isthmus -c names the file, line, column and field of each TLS mistake."""
    pki = Pki(env)
    port = free_port()
    a = pki.leaf("a", ["DNS:a.example.com"])
    b = pki.leaf("b", ["DNS:b.example.com"])
    missing = env.path("nowhere.crt")
    # (name, server, field path, message words, the text at which the error points)
    cases = (
        ("no-tls", server(port, ["*"], None), "spec.servers[0]: ", "an HTTPS server needs tls", "port: {"),
        ("wrong-key", server(port, ["*"], tls_simple((a[0], b[1]))), "spec.servers[0].tls.privateKey",
         "the key does not belong to the certificate", b[1]),
        ("missing", server(port, ["*"], tls_simple((missing, a[1]))), "spec.servers[0].tls.serverCertificate",
         f"{missing}: No such file", missing),
        ("mutual-no-ca", server(port, ["*"], tls_simple(a, "MUTUAL")), "spec.servers[0].tls: ",
         "caCertificates is required", "{mode"),
    )
    good = env.write("good.yaml", docs(appliance(env), gateway_of(server(port, ["*"], tls_simple(a)))))
    rc, out = env.check_config(good)
    check(rc == 0, f"the valid TLS configuration is refused: {out}")
    for name, srv, field, words, anchor in cases:
        text = docs(appliance(env), gateway_of(srv))
        path = env.write(f"{name}.yaml", text)
        line_no, col = next((i + 1, l.index(anchor) + 1) for i, l in enumerate(text.split("\n")) if anchor in l)
        rc, out = env.check_config(path)
        line = next((l for l in out.splitlines() if words in l), "")
        check(rc != 0 and line.startswith(f"{path}:{line_no}:{col}: error: ") and field in line,
              f"{name}: want '{path}:{line_no}:{col}: error: ... {field} ... {words}', rc {rc}:\n{out}")
    # A certificate that has expired, or is not valid yet, is served (as Envoy
    # serves it), with a warning naming its date.
    for name, start, end, words in (("expired", "20200101000000Z", "20200201000000Z",
                                     "the certificate expired on 2020-02-01 00:00:00 UTC"),
                                    ("early", "20400101000000Z", "20400201000000Z",
                                     "the certificate is not valid before 2040-01-01 00:00:00 UTC")):
        pair = pki.leaf_dated(name, ["DNS:a.example.com"], start, end)
        path = env.write(f"{name}.yaml", docs(appliance(env), gateway_of(server(port, ["*"], tls_simple(pair)))))
        rc, out = env.check_config(path)
        check(rc == 0 and re.search(re.escape(path) + r":\d+:\d+: warning: .*serverCertificate.*" + re.escape(words), out),
              f"a certificate {name}: rc {rc}:\n{out}")
    # A caCertificates that is no certificate: its own error, not a second one
    # saying caCertificates is missing.
    text = docs(appliance(env), gateway_of(server(port, ["*"], tls_simple(a, "MUTUAL") + f", caCertificates: {a[1]}")))
    rc, out = env.check_config(env.write("ca-key.yaml", text))
    check(rc != 0 and "spec.servers[0].tls.caCertificates" in out and "is required" not in out,
          f"a key given as caCertificates: rc {rc}:\n{out}")
    path = env.write("strict.yaml", docs(appliance(env), gateway(port), peer_auth("p", "STRICT")))
    rc, out = env.check_config(path)
    check(rc != 0 and re.search(re.escape(path) + r":\d+:\d+", out) and "meshIdentity" in out,
          f"STRICT without meshIdentity: rc {rc}:\n{out}")
