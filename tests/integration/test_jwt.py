# SPDX-License-Identifier: Apache-2.0
"""Integration tests of Istio's RequestAuthentication (security.istio.io/v1),
as istiod hands it to Envoy's jwt_authn filter at a gateway: a request without
a token goes on, a bad token is a 401 (or a 403 for its audience) with Envoy's
text, WWW-Authenticate and response code details, and no upstream sees it; the
signature algorithms and key selection by kid; the token locations; the
payload and claim fields the upstream gets (and the route chosen again with
them); AuthorizationPolicy's requestPrincipals and request.auth.* on the
verified token; several issuers; gRPC and HTTP/2; CORS preflights; errors,
reloads and documents that do not apply.

Keys and tokens come from tests/upstream/jwtmint.py, run under Debian's python
(harness.DEBIAN_PYTHON) with python3-cryptography. Registered into run.py's
list by register(test)."""

import base64
import json
import os
import re
import signal
import subprocess
import time

from harness import (DEBIAN_PYTHON, Conn, Registry, Skip, TestFailure, appliance, check, curl, debian_python_has,
                     ctl_cmd, docs, free_port, metric, poll, virtual_service)
from test_authz import (ROUTE_ALL, SVC, check_denied, gateway_ports, get, log_line, policy, reload, upstream_count,
                        world)
from test_h2 import TOOLS, check_grpc_local_error, h2_client, hdr, need_tools

_test = Registry()
register = _test.register

ISS = "https://issuer.example.com"
ISS2 = "https://other-issuer.example.org"

# Envoy's jwt_verify_lib status texts (status.cc), as they reach the client.
EXPIRED = "Jwt is expired"
NOT_YET = "Jwt not yet valid"
UNKNOWN_ISSUER = "Jwt issuer is not configured"
VERIFY_FAILS = "Jwt verification fails"
BAD_FORM = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
ALG_NOT_IMPL = "Jwt header [alg] is not supported"
KID_ALG = "Jwks doesn't have key to match kid or alg from Jwt"
AUDIENCE = "Audiences in Jwt are not allowed"


# --------------------------------------------------------------------------- keys and tokens


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Keys:
    """Private keys made by jwtmint.py in the test's directory; their public
    JWKs; tokens signed with them."""

    def __init__(self, env, **kinds):
        """kinds: name=rsa|ec256|ec384|ed25519|hmac."""
        if not debian_python_has("cryptography"):
            raise Skip(f"{DEBIAN_PYTHON} lacks cryptography (Debian package python3-cryptography)")
        self.dir = env.path("keys")
        os.makedirs(self.dir, exist_ok=True)
        self.pub = self._tool(["keys", self.dir] + [f"{n}:{k}" for n, k in kinds.items()])

    def _tool(self, args, stdin=None):
        argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "jwtmint.py")] + args
        try:
            p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"jwtmint.py {args[0]} still running after 60 s")
        check(p.returncode == 0, f"jwtmint.py {args[0]} exited {p.returncode}: {p.stderr.decode()[-1500:]}")
        return json.loads(p.stdout)

    def jwk(self, name, kid=None, alg=None):
        k = dict(self.pub[name])
        if kid is not None:
            k["kid"] = kid
        if alg is not None:
            k["alg"] = alg
        return k

    def sign(self, jobs):
        """jobs: [(key name, alg, payload, header or None)]; the tokens."""
        return self._tool(["sign", self.dir], json.dumps(
            [{"key": k, "alg": a, "payload": p, "header": h or {}} for k, a, p, h in jobs]).encode())

    def token(self, key, alg, payload, header=None):
        return self.sign([(key, alg, payload, header)])[0]


def jwks(*keys):
    return json.dumps({"keys": list(keys)})


def claims(sub="alice", iss=ISS, **more):
    now = int(time.time())
    c = {"iss": iss, "sub": sub, "iat": now, "exp": now + 3600}
    c.update(more)
    return {k: v for k, v in c.items() if v is not None}


def request_authn(name, rules, ns="default", extra=""):
    """A RequestAuthentication of jwtRules rules (a list of dicts, written as
    YAML flow, which JSON is)."""
    return (f"apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
            f"metadata: {{name: {name}, namespace: {ns}}}\nspec:\n{extra}  jwtRules: {json.dumps(rules)}\n")


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def seen(r):
    """What the upstream received, from its /headers answer (the request head
    as it came): (request line, [(lowercased name, value)])."""
    check(r.status == 200 and r.header("x-upstream") == "a", f"want the upstream's 200 to /headers, got {r}")
    lines = r.body.decode("latin-1").split("\r\n")
    fields = []
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            fields.append((k.strip().lower(), v.strip()))
    return lines[0], fields


def field(fields, name):
    return [v for k, v in fields if k == name]


def admin(env):
    """The Appliance extra for an admin listener and a text access log; (extra, admin port, log path)."""
    port, log = free_port(), env.path("access.log")
    return f"  admin: {{address: 127.0.0.1:{port}}}\n  accessLog: {{path: {log}, format: text}}\n", port, log


def body_text(body):
    """A local reply's text: isthmus ends its bodies with a newline (its
    "fault filter abort\n" too), Envoy does not; the rest must be Envoy's."""
    body = body.decode() if isinstance(body, bytes) else body
    return body[:-1] if body.endswith("\n") else body


def check_refused(r, status, text, realm, what):
    """r is Envoy's jwt_authn answer: status, text as the body, the realm in WWW-Authenticate."""
    want = f'Bearer realm="{realm}", error="invalid_token"'
    check(r.status == status and body_text(r.body) == text and r.header("x-upstream") is None
          and (r.header("content-type") or "").startswith("text/plain")
          and r.header_all("www-authenticate") == [want],
          f"{what}: want {status} {text!r} text/plain with www-authenticate {want!r}, got {r}")


def details(text):
    return "jwt_authn_access_denied{" + text.replace(" ", "_") + "}"


# --------------------------------------------------------------------------- tests


@_test
def jwt_no_token_valid_token_forwarding(env):
    """A RequestAuthentication alone does not require a token: a request
    without one is served. A valid ES256 token (Authorization: Bearer) is
    served and the upstream does not get the Authorization field (Envoy
    removes a verified token's field by default) while it gets the rest; with
    forwardOriginalToken: true it gets it as sent. A bad token is refused, so
    the RequestAuthentication is in force. A reload that replaces the key
    refuses the old key's tokens and takes the new one's."""
    keys = Keys(env, e="ec256", e2="ec256")
    rule = {"issuer": ISS, "jwks": jwks(keys.jwk("e", kid="k1"))}
    (gw,), up = world(env, request_authn("jwt", [rule]), routes=ROUTE_ALL)
    good, bad_sig = keys.sign([("e", "ES256", claims(), {"kid": "k1"}), ("e", "ES256", claims(sub="x"), None)])
    bad_sig = bad_sig.rsplit(".", 1)[0] + "." + good.rsplit(".", 1)[1]  # another payload's signature

    line, fields = seen(get(gw, "/headers", headers={"X-Other": "kept"}))
    check(field(fields, "x-other") == ["kept"], f"no token: the upstream got {fields}")
    line, fields = seen(get(gw, "/headers", headers=[("Authorization", f"Bearer {good}"), ("X-Other", "kept")]))
    check(field(fields, "authorization") == [] and field(fields, "x-other") == ["kept"],
          f"a verified token's Authorization reached the upstream (or x-other did not): {fields}")
    r = get(gw, "/headers", headers=bearer(bad_sig))
    check_refused(r, 401, VERIFY_FAILS, "http://test.local/headers", "a token signed for another payload")

    reload(env, request_authn("jwt", [dict(rule, forwardOriginalToken=True)]))
    line, fields = seen(get(gw, "/headers", headers=bearer(good)))
    check(field(fields, "authorization") == [f"Bearer {good}"],
          f"forwardOriginalToken: the upstream should get the token's field as sent: {fields}")
    check(get(gw, "/headers", headers=bearer(bad_sig)).status == 401, "a bad token after the reload")
    # A reload that rotates the key: the workers verify with the new set.
    reload(env, request_authn("jwt", [dict(rule, jwks=jwks(keys.jwk("e2", kid="k1")))]))
    check_refused(get(gw, "/headers", headers=bearer(good)), 401, VERIFY_FAILS, "http://test.local/headers",
                  "the old key's token after the key was replaced")
    r = get(gw, "/headers", headers=bearer(keys.token("e2", "ES256", claims(), {"kid": "k1"})))
    check(r.status == 200, f"the new key's token: {r}")


@_test
def jwt_invalid_tokens(env):
    """Each kind of bad token is answered as Envoy's jwt_authn answers it:
    401 with the status text as a text/plain body and WWW-Authenticate:
    Bearer realm="http://<host><path and query>", error="invalid_token"
    (expired beyond the 60 s clock skew, not yet valid beyond it, unknown
    issuer, bad signature, not three parts, an unsupported alg, a kid no key
    has, and parse errors: no alg, a kid or exp or aud of the wrong type, bad
    base64url); 403 for an audience the provider does not list, or none. A
    token expired by 30 s, or valid in 30 s, passes (the skew); audiences
    compare without https:// and a trailing /. No upstream sees a refused
    request; its access-log line has no response flag, the details
    jwt_authn_access_denied{<text, spaces as _>} and the route;
    isthmus_jwt_denied_total counts them. The realm's path is normalised and
    cut at 256 bytes, as Envoy's."""
    keys = Keys(env, e="ec256", other="ec256")
    extra, aport, log = admin(env)
    rule = {"issuer": ISS, "audiences": ["api.example.com", "https://second.example.com/"],
            "jwks": jwks(keys.jwk("e", kid="k1"))}
    (gw,), up = world(env, request_authn("jwt", [rule]), app_extra=extra)
    now = int(time.time())
    k1 = {"kid": "k1"}

    def c(**kw):  # the provider lists audiences: a token without one of them is 403
        return claims(**dict({"aud": "api.example.com"}, **kw))

    jobs = {
        "expired": ("e", "ES256", c(exp=now - 120), k1),
        "expired30": ("e", "ES256", c(exp=now - 30), k1),
        "nbf": ("e", "ES256", c(nbf=now + 120), k1),
        "nbf30": ("e", "ES256", c(nbf=now + 30), k1),
        "issuer": ("e", "ES256", c(iss="https://evil.example.com"), k1),
        "signature": ("other", "ES256", c(), k1),
        "kid": ("e", "ES256", c(), {"kid": "k2"}),
        "audience": ("e", "ES256", c(aud="web.example.com"), k1),
        "no_aud": ("e", "ES256", c(aud=None), k1),
        "aud_list": ("e", "ES256", c(aud=["x.example.com", "api.example.com"]), k1),
        "aud_norm": ("e", "ES256", c(aud="second.example.com"), k1),
        "good": ("e", "ES256", c(), k1),
    }
    tok = dict(zip(jobs, keys.sign(list(jobs.values()))))
    head, payload, sig = tok["good"].split(".")
    tok["garbage"] = "not-a-jwt"
    tok["two_parts"] = f"{head}.{payload}"
    tok["alg_none"] = f"{b64u(json.dumps({'alg': 'none', 'typ': 'JWT'}))}.{payload}.{sig}"
    tok["alg_hs1"] = f"{b64u(json.dumps({'alg': 'HS1', 'kid': 'k1'}))}.{payload}.{sig}"
    # Parse errors, each before the signature is looked at (base64url characters
    # only: Envoy's extraction stops at any other).
    pl = json.loads(b64u_decode(payload))
    tok["no_alg"] = f"{b64u(json.dumps({'kid': 'k1'}))}.{payload}.{sig}"
    tok["kid_num"] = f"{b64u(json.dumps({'alg': 'ES256', 'kid': 7}))}.{payload}.{sig}"
    tok["exp_str"] = f"{head}.{b64u(json.dumps(dict(pl, exp='soon')))}.{sig}"
    tok["aud_num"] = f"{head}.{b64u(json.dumps(dict(pl, aud=[7])))}.{sig}"
    tok["head_b64"] = f"A.{payload}.{sig}"
    tok["sig_b64"] = f"{head}.{payload}.A"

    for name in ("expired30", "nbf30", "aud_list", "aud_norm", "good"):
        r = get(gw, f"/ok/{name}", headers=bearer(tok[name]))
        check(r.status == 200 and r.header("x-upstream") == "a", f"token {name} should pass: {r}")

    refused = [("expired", 401, EXPIRED), ("nbf", 401, NOT_YET), ("issuer", 401, UNKNOWN_ISSUER),
               ("signature", 401, VERIFY_FAILS), ("garbage", 401, BAD_FORM), ("two_parts", 401, BAD_FORM),
               ("alg_none", 401, ALG_NOT_IMPL), ("alg_hs1", 401, ALG_NOT_IMPL), ("kid", 401, KID_ALG),
               ("no_alg", 401, "Jwt header [alg] field is required and must be a string"),
               ("kid_num", 401, "Jwt header [kid] field is not a string"),
               ("exp_str", 401, "Jwt payload [exp] field is not an integer"),
               ("aud_num", 401, "Jwt payload [aud] field is not a string or string list"),
               ("head_b64", 401, "Jwt header is an invalid Base64url encoded"),
               ("sig_b64", 401, "Jwt signature is an invalid Base64url encoded"),
               ("audience", 403, AUDIENCE), ("no_aud", 403, AUDIENCE)]
    before, denied0 = upstream_count(up), metric(aport, "isthmus_jwt_denied_total")
    for name, status, text in refused:
        path = f"/p/{name}?q=1"  # also the access-log line's key below
        check_refused(get(gw, path, headers=bearer(tok[name])), status, text, f"http://test.local{path}",
                      f"token {name}")
    check(upstream_count(up) == before, "the upstream saw a refused request")
    for name, status, text in refused:
        line = log_line(log, f" /p/{name}?q=1 HTTP/1.1\" ")
        check(f"\" {status} - {details(text)} " in line and line.endswith(" default/vs#0"),
              f"token {name}: want the line to have {status}, no flag, {details(text)} and the route "
              f"(Envoy finds it before its filters): {line}")
    try:
        poll(lambda: metric(aport, "isthmus_jwt_denied_total") - denied0 == len(refused), 5,
             what=f"isthmus_jwt_denied_total to grow by {len(refused)}")
    except TestFailure as e:
        raise TestFailure(f"{e}: it grew by {metric(aport, 'isthmus_jwt_denied_total') - denied0}")
    # The realm is the URL as the filter sees it: the path normalised, cut at 256 bytes.
    long = "/n/../p/" + "a" * 300 + "?q=1"
    check_refused(get(gw, long, headers=bearer(tok["expired"])), 401, EXPIRED,
                  "http://test.local" + ("/p/" + "a" * 300 + "?q=1")[:256], "a long path")


@_test
def jwt_algorithms_and_kid(env):
    """One key set with an RSA key twice (kid r for RS256, kid rp with alg
    PS256), P-256 (alg ES256), P-384, Ed25519, an HMAC secret and a P-256 key
    without kid: a token of each algorithm verifies against the key its kid
    names; a token without kid, or with a kid no key has, is verified by the
    key without kid. A token whose kid names another key than its signer's is
    refused ("Jwt verification fails"), as is an RS256 token for the key that
    says alg PS256 only, and an HS256 token with another secret."""
    keys = Keys(env, r="rsa", e="ec256", e3="ec384", o="ed25519", h="hmac", n="ec256", h2="hmac")
    set_ = jwks(keys.jwk("r", kid="r"), keys.jwk("r", kid="rp", alg="PS256"), keys.jwk("e", kid="e", alg="ES256"),
                keys.jwk("e3", kid="e3"), keys.jwk("o", kid="o"), keys.jwk("h", kid="h", alg="HS256"),
                keys.jwk("n"))
    (gw,), _ = world(env, request_authn("jwt", [{"issuer": ISS, "jwks": set_}]))
    good = [("r", "RS256", "r"), ("r", "PS256", "rp"), ("r", "PS256", "r"), ("e", "ES256", "e"),
            ("e3", "ES384", "e3"), ("o", "EdDSA", "o"), ("h", "HS256", "h"), ("n", "ES256", None),
            ("n", "ES256", "unknown-kid")]
    bad = [("e", "ES256", "e3"), ("r", "RS256", "rp"), ("h2", "HS256", "h"), ("o", "EdDSA", "e")]
    toks = keys.sign([(k, a, claims(sub=f"{k}-{a}"), {"kid": kid} if kid else None) for k, a, kid in good + bad])
    for (k, a, kid), t in zip(good, toks):
        r = get(gw, "/", headers=bearer(t))
        check(r.status == 200 and r.header("x-upstream") == "a", f"{a} by key {k}, kid {kid}: want 200, got {r}")
    for (k, a, kid), t in zip(bad, toks[len(good):]):
        r = get(gw, "/", headers=bearer(t))
        check(r.status == 401 and body_text(r.body) == VERIFY_FAILS,
              f"{a} by key {k} with kid {kid}: want 401 {VERIFY_FAILS!r}, got {r}")


@_test
def jwt_locations(env):
    """fromHeaders (a custom field and prefix), fromParams and fromCookies:
    a token at each is checked (a bad one is refused) and a good one is
    served; a verified token's field is removed, its query parameter taken out
    of the query the upstream gets (the other parameters kept), a cookie kept;
    with locations given, Authorization and access_token are not read. Then,
    without locations, Envoy's defaults: Authorization "Bearer " and the
    access_token query parameter."""
    keys = Keys(env, e="ec256")
    key = jwks(keys.jwk("e", kid="k1"))
    rule = {"issuer": ISS, "jwks": key, "fromHeaders": [{"name": "X-Jwt", "prefix": "Token "}],
            "fromParams": ["tok"], "fromCookies": ["session"]}
    (gw,), _ = world(env, request_authn("jwt", [rule]))
    good = keys.token("e", "ES256", claims(), {"kid": "k1"})
    bad = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")

    line, fields = seen(get(gw, "/headers", headers={"X-Jwt": f"Token {good}", "X-Other": "1"}))
    check(field(fields, "x-jwt") == [] and field(fields, "x-other") == ["1"], f"x-jwt: the upstream got {fields}")
    check(get(gw, "/headers", headers={"X-Jwt": f"Token {bad}"}).status == 401, "a bad token in x-jwt")
    check(get(gw, "/headers", headers={"X-Jwt": f"Bearer {bad}"}).status == 200,
          "a field without the prefix holds no token")
    line, fields = seen(get(gw, f"/headers?a=1&tok={good}&b=2"))
    check(line == "GET /headers?a=1&b=2 HTTP/1.1", f"fromParams: the upstream's request line is {line!r}")
    line, fields = seen(get(gw, f"/headers?tok={good}"))
    check(line == "GET /headers HTTP/1.1", f"fromParams, the only parameter: the upstream's request line is {line!r}")
    r = get(gw, f"/headers?tok={bad}")
    check(r.status == 401 and body_text(r.body) == VERIFY_FAILS, f"a bad token in ?tok: {r}")
    line, fields = seen(get(gw, "/headers", headers={"Cookie": f"a=b; session={good}; c=d"}))
    check(field(fields, "cookie") == [f"a=b; session={good}; c=d"], f"fromCookies: the cookie stays: {fields}")
    check(get(gw, "/headers", headers={"Cookie": f"a=b; session={bad}"}).status == 401, "a bad token in a cookie")
    # The first cookie of the name is the token, as Envoy's extractor takes
    # it: a second Cookie field's (an HTTP/2 client's crumbs) is not read.
    r = get(gw, "/headers", headers=[("Cookie", f"session={good}"), ("Cookie", f"session={bad}")])
    check(r.status == 200, f"a good token in the first Cookie field, a bad one in the second: {r}")
    for what, kw in (("Authorization", {"headers": bearer(bad)}), ("access_token", {"path": f"/?access_token={bad}"})):
        r = get(gw, **kw)
        check(r.status == 200, f"with locations given, {what} is not read: {r}")
    # A good token at one location does not carry a bad one at another: the
    # bad one would reach the upstream, which might take it for the good one.
    for what, kw in (("?tok", {"path": f"/headers?tok={bad}"}), ("a cookie", {"cookie": f"session={bad}"})):
        hdrs = {"X-Jwt": f"Token {good}"}
        if "cookie" in kw:
            hdrs["Cookie"] = kw["cookie"]
        r = get(gw, kw.get("path", "/headers"), headers=hdrs)
        check(r.status == 401 and body_text(r.body) == VERIFY_FAILS, f"a good x-jwt and a bad token in {what}: {r}")

    reload(env, request_authn("jwt", [{"issuer": ISS, "jwks": key}]))
    line, fields = seen(get(gw, f"/headers?access_token={good}&b=2"))
    check(line == "GET /headers?b=2 HTTP/1.1", f"access_token: the upstream's request line is {line!r}")
    check(get(gw, f"/headers?access_token={bad}").status == 401, "a bad token in access_token")
    check(get(gw, "/headers", headers=bearer(bad)).status == 401, "a bad token in Authorization")
    check(get(gw, "/headers", headers={"X-Jwt": f"Token {bad}"}).status == 200, "x-jwt is no location any more")
    # A parameter's name is read decoded, as Envoy reads the query
    # (parseAndDecodeQueryString): acc%65ss_token is access_token. It was not
    # seen, so a bad token there went to the upstream beside a good one in
    # Authorization (which was removed), where the upstream's decoding finds it.
    for name in ("acc%65ss_token", "%61ccess_token", "access%5Ftoken"):
        r = get(gw, f"/headers?{name}={bad}", headers=bearer(good))
        check(r.status == 401 and body_text(r.body) == VERIFY_FAILS, f"a good Authorization and a bad ?{name}: {r}")
        line, fields = seen(get(gw, f"/headers?a=1&{name}={good}&b=2"))
        check(line == "GET /headers?a=1&b=2 HTTP/1.1", f"?{name}: the upstream's request line is {line!r}")


@_test
def jwt_output_headers(env):
    """outputPayloadToHeader gives the upstream the payload as sent (base64url);
    outputClaimToHeaders a string, a number, a nested claim (a.b), a boolean
    and a list (the base64 of its JSON). Those fields sent by the client are
    removed, with or without a token (and not added for claims the token
    lacks). With the claim fields added the route is chosen again: a route
    matching x-sub: alice is taken for alice's token, even though the client
    sent x-sub: alice for bob's token too (bob's is not taken)."""
    keys = Keys(env, e="ec256")
    rule = {"issuer": ISS, "jwks": jwks(keys.jwk("e")), "outputPayloadToHeader": "x-jwt-payload",
            "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}, {"header": "x-num", "claim": "n"},
                                     {"header": "x-nested", "claim": "a.b"}, {"header": "x-admin", "claim": "admin"},
                                     {"header": "x-groups", "claim": "groups"}]}
    routes = (f"  - match: [{{headers: {{x-sub: {{exact: alice}}}}}}]\n"
              f"    headers: {{request: {{set: {{x-route: alice}}}}}}\n"
              f"    route: [{{destination: {{host: {SVC}}}}}]\n" + ROUTE_ALL)
    (gw,), _ = world(env, request_authn("jwt", [rule]), routes=routes)
    alice, bob = keys.sign([("e", "ES256", claims(n=42, a={"b": "deep"}, admin=True, groups=["dev", "ops"]), None),
                            ("e", "ES256", claims(sub="bob", admin=False), None)])
    spoof = {"X-Sub": "alice", "X-Jwt-Payload": "spoofed", "X-Num": "7", "X-Nested": "x", "X-Admin": "true"}

    line, fields = seen(get(gw, "/headers", headers=dict(spoof, **bearer(alice))))
    want = {"x-jwt-payload": [alice.split(".")[1]], "x-sub": ["alice"], "x-num": ["42"], "x-nested": ["deep"],
            "x-admin": ["true"], "x-route": ["alice"]}
    got = {k: field(fields, k) for k in want}
    check(got == want, f"alice's token: want the upstream to get {want}, got {got}")
    check(json.loads(b64u_decode(got["x-jwt-payload"][0]))["sub"] == "alice", "the payload field decodes")
    groups = field(fields, "x-groups")
    check(len(groups) == 1 and json.loads(base64.b64decode(groups[0])) == ["dev", "ops"],
          f"a list claim is the base64 of its JSON: {groups}")

    # (Which route a client's own x-sub picks without a token is not asserted:
    # Envoy finds the route before jwt_authn removes the field and finds it
    # again only when a claim field is added.)
    line, fields = seen(get(gw, "/headers", headers=spoof))
    got = {k: field(fields, k) for k in want if k != "x-route"}
    check(all(v == [] for v in got.values()), f"no token: the client's own fields reached the upstream: {got}")

    line, fields = seen(get(gw, "/headers", headers=dict(spoof, **bearer(bob))))
    got = {k: field(fields, k) for k in want}
    want = {"x-jwt-payload": [bob.split(".")[1]], "x-sub": ["bob"], "x-num": [], "x-nested": [],
            "x-admin": ["false"], "x-route": []}
    check(got == want, f"bob's token (no n, no a.b): want {want}, got {got}")

    # A claim holding CR or LF (signed, but the issuer's text) is not output:
    # written as it is, it ended the field and smuggled fields or a request.
    for sub_ in ("alice\r\nx-injected: yes", "alice\nx-injected: yes", "alice\rx"):
        tok = keys.token("e", "ES256", claims(sub=sub_, n=1))
        line, fields = seen(get(gw, "/headers", headers=bearer(tok)))
        check(field(fields, "x-sub") == [] and field(fields, "x-injected") == [] and field(fields, "x-num") == ["1"],
              f"a claim with a line break {sub_!r}: the upstream got {fields}")


PRINCIPAL = f"{ISS}/alice"


@_test
def jwt_authz_request_principals_and_claims(env):
    """AuthorizationPolicy on the verified token: requestPrincipals ["*"]
    (no token: RBAC's 403, logged rbac_access_denied_matched_policy[none]),
    an exact "<iss>/<sub>", notRequestPrincipals, request.auth.principal,
    request.auth.claims[groups] (a list claim), request.auth.claims[a][b]
    (nested), request.auth.claims[scope] (a space-separated string: each
    word, not the whole), a claim of spaceDelimitedClaims likewise (another
    string claim is not split), request.auth.audiences and
    request.auth.presenter.
    Each path is checked with a token that holds, one that does not and none;
    "*" needs a subject (a verified token without sub is denied)."""
    keys = Keys(env, e="ec256")
    extra, _, log = admin(env)

    def rule(path, cond):
        return f"  - to: [{{operation: {{paths: [{path}]}}}}]\n    {cond}\n"

    allow = policy("jwt", "  rules:\n" + "".join((
        rule("/any", 'from: [{source: {requestPrincipals: ["*"]}}]'),
        rule("/alice", f'from: [{{source: {{requestPrincipals: ["{PRINCIPAL}"]}}}}]'),
        rule("/prefix", f'from: [{{source: {{requestPrincipals: ["{ISS}/al*"]}}}}]'),
        rule("/notbob", f'from: [{{source: {{notRequestPrincipals: ["{ISS}/bob"]}}}}]'),
        rule("/principal", f'when: [{{key: request.auth.principal, values: ["{PRINCIPAL}"]}}]'),
        rule("/groups", 'when: [{key: "request.auth.claims[groups]", values: [admins]}]'),
        rule("/nested", 'when: [{key: "request.auth.claims[a][b]", values: [c]}]'),
        rule("/scope", 'when: [{key: "request.auth.claims[scope]", values: [write]}]'),
        rule("/scope-whole", 'when: [{key: "request.auth.claims[scope]", values: ["read write"]}]'),
        rule("/roles", 'when: [{key: "request.auth.claims[roles]", values: [editor]}]'),
        rule("/team", 'when: [{key: "request.auth.claims[team]", values: [red]}]'),
        rule("/aud", 'when: [{key: request.auth.audiences, values: [api.example.com]}]'),
        rule("/azp", 'when: [{key: request.auth.presenter, values: [frontend]}]'))))
    ra = request_authn("jwt", [{"issuer": ISS, "jwks": jwks(keys.jwk("e")), "spaceDelimitedClaims": ["roles"]}])
    (gw,), _ = world(env, ra, allow, app_extra=extra)
    alice, bob, nosub = keys.sign([
        ("e", "ES256", claims(groups=["dev", "admins"], a={"b": "c"}, scope="read write", roles="viewer editor",
                              team="red", aud=["x.example.com", "api.example.com"], azp="frontend"), None),
        ("e", "ES256", claims(sub="bob", groups=["dev"], a={"b": "d", "c": "c"}, scope="read writer",
                              roles="editors", team="red blue", aud="other.example.com", azp="backend", c="c"),
         None),
        ("e", "ES256", claims(sub=None), None)])
    cases = {"/any": (200, 200, 403), "/alice": (200, 403, 403), "/prefix": (200, 403, 403),
             "/notbob": (200, 403, 200), "/principal": (200, 403, 403), "/groups": (200, 403, 403),
             "/nested": (200, 403, 403), "/scope": (200, 403, 403), "/scope-whole": (403, 403, 403),
             "/roles": (200, 403, 403), "/team": (200, 403, 403), "/aud": (200, 403, 403),
             "/azp": (200, 403, 403)}
    for path, want in cases.items():
        for who, headers, status in (("alice", bearer(alice), want[0]), ("bob", bearer(bob), want[1]),
                                     ("no token", None, want[2])):
            r = get(gw, path, headers=headers)
            if status == 403:
                check_denied(r, f"{path} with {who}")
            else:
                check(r.status == 200 and r.header("x-upstream") == "a", f"{path} with {who}: want 200, got {r}")
    log_line(log, " /any HTTP/1.1\" 403 - rbac_access_denied_matched_policy[none] ")
    check_denied(get(gw, "/any", headers=bearer(nosub)), "requestPrincipals [\"*\"] with a verified token without sub")


@_test
def jwt_two_issuers(env):
    """Two jwtRules of different issuers and keys, both at the default
    location: a token of either is served (and its claims are what the
    policies read); a token of a third issuer is 401 "Jwt issuer is not
    configured"; a token of the first issuer signed with the second's key is
    401 "Jwt verification fails"; one whose iss is the first's followed by a
    NUL and more is 401 "Jwt issuer is not configured"."""
    keys = Keys(env, a="ec256", b="rsa")
    ra = request_authn("jwt", [{"issuer": ISS2, "jwks": jwks(keys.jwk("b"))},
                               {"issuer": ISS, "jwks": jwks(keys.jwk("a"))}])
    allow = policy("jwt", f'  rules: [{{from: [{{source: {{requestPrincipals: ["{ISS}/*", "{ISS2}/bob"]}}}}]}}]\n')
    (gw,), _ = world(env, ra, allow)
    one, two, three, wrong, two_carol, nul = keys.sign([
        ("a", "ES256", claims(), None), ("b", "RS256", claims(iss=ISS2, sub="bob"), None),
        ("a", "ES256", claims(iss="https://third.example.net"), None), ("b", "RS256", claims(), None),
        ("b", "RS256", claims(iss=ISS2, sub="carol"), None), ("a", "ES256", claims(iss=ISS + "\x00junk"), None)])
    for what, t in (("the first issuer's", one), ("the second issuer's", two)):
        r = get(gw, "/", headers=bearer(t))
        check(r.status == 200 and r.header("x-upstream") == "a", f"{what} token: want 200, got {r}")
    check_denied(get(gw, "/", headers=bearer(two_carol)), "the second issuer's carol (the policy reads her claims)")
    check_denied(get(gw, "/"), "no token")
    # An issuer is every byte of iss: one with a NUL after the first's issuer
    # is no issuer of ours (it was taken for the first's, compared as a C
    # string, while the policies read its whole principal).
    for what, t, text in (("a third issuer's", three, UNKNOWN_ISSUER), ("the first's, the second's key", wrong,
                                                                       VERIFY_FAILS),
                          ("an issuer with a NUL", nul, UNKNOWN_ISSUER)):
        check_refused(get(gw, "/x", headers=bearer(t)), 401, text, "http://test.local/x", f"{what} token")


@_test
def jwt_grpc_and_h2(env):
    """Over h2c: a valid token is served, a bad one is 401 with Envoy's text
    and WWW-Authenticate (realm from :authority); a gRPC call with a bad token
    is HTTP 200, trailers-only grpc-status 16 (UNAUTHENTICATED), one whose
    audience is refused grpc-status 7 (over HTTP/1.1 too, 16); curl with HTTP/2
    prior knowledge too."""
    need_tools("h2")
    keys = Keys(env, e="ec256")
    rule = {"issuer": ISS, "audiences": ["api.example.com"], "jwks": jwks(keys.jwk("e"))}
    (gw,), _ = world(env, request_authn("jwt", [rule]))
    good, aud = keys.sign([("e", "ES256", claims(aud="api.example.com"), None),
                           ("e", "ES256", claims(aud="web.example.com"), None)])
    bad = good.rsplit(".", 1)[0] + ".AAAA"
    auth = lambda t: [["authorization", f"Bearer {t}"]]  # noqa: E731
    rep = h2_client(gw, [{"path": "/ok", "headers": auth(good)}, {"path": "/bad?x=1", "headers": auth(bad)},
                         {"path": "/isthmus.test.Echo/Unary", "grpc": "x", "headers": auth(bad)},
                         {"path": "/isthmus.test.Echo/Unary", "grpc": "x", "headers": auth(aud)}],
                    authority="test.local")
    ok, refused, grpc_bad, grpc_aud = rep["streams"]
    check(ok["status"] == 200 and hdr(ok, "x-upstream") == "a", f"h2c with a valid token: {ok}")
    want = 'Bearer realm="http://test.local/bad?x=1", error="invalid_token"'
    check(refused["status"] == 401 and body_text(refused["body"]) == VERIFY_FAILS
          and hdr(refused, "www-authenticate") == want,
          f"h2c with a bad token: want 401 {VERIFY_FAILS!r} and {want!r}: {refused}")
    check_grpc_local_error(grpc_bad, 16, "a gRPC call with a bad token")
    check(hdr(grpc_bad, "grpc-message") == VERIFY_FAILS, f"grpc-message: {grpc_bad['headers']}")
    check_grpc_local_error(grpc_aud, 7, "a gRPC call with an audience not allowed")
    with Conn("127.0.0.1", gw) as conn:
        r = conn.request("POST", "/isthmus.test.Echo/Unary", "test.local",
                         [("Content-Type", "application/grpc"), ("Authorization", f"Bearer {bad}")], b"")
    check(r.status == 200 and r.header("grpc-status") == "16", f"a gRPC request over HTTP/1.1 with a bad token: {r}")
    for t, want in ((good, "2 200"), (bad, "2 401")):
        rc, out, err = curl(["--http2-prior-knowledge", "-H", f"Authorization: Bearer {t}", "-w",
                             "\n%{http_version} %{http_code}", f"http://127.0.0.1:{gw}/c"], timeout=20)
        check(rc == 0 and out.rpartition("\n")[2] == want, f"curl h2c: want {want}: rc {rc} {out!r} {err}")


@_test
def jwt_cors_preflight(env):
    """A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method)
    is not checked: with a bad token it is answered by the route's corsPolicy
    (200, Access-Control-Allow-Origin); the same OPTIONS without
    Access-Control-Request-Method, or a GET from the origin, is refused."""
    keys = Keys(env, e="ec256")
    routes = ("  - corsPolicy: {allowOrigins: [{exact: \"https://app.example.com\"}], allowMethods: [GET, POST]}\n"
              f"    route: [{{destination: {{host: {SVC}}}}}]\n")
    (gw,), up = world(env, request_authn("jwt", [{"issuer": ISS, "jwks": jwks(keys.jwk("e"))}]), routes=routes)
    bad = keys.token("e", "ES256", claims())[:-4] + "AAAA"
    origin = {"Origin": "https://app.example.com"}
    r = get(gw, "/x", method="OPTIONS", headers=dict(origin, **{"Access-Control-Request-Method": "POST"},
                                                     **bearer(bad)))
    check(r.status == 200 and r.header("access-control-allow-origin") == "https://app.example.com"
          and r.header("x-upstream") is None, f"a preflight with a bad token: want CORS's 200, got {r}")
    for method, hdrs in (("OPTIONS", origin), ("GET", origin)):
        r = get(gw, "/x", method=method, headers=dict(hdrs, **bearer(bad)))
        check(r.status == 401 and body_text(r.body) == VERIFY_FAILS,
              f"{method} (not a preflight) with a bad token: {r}")


@_test
def jwt_config_errors_and_scope(env):
    """isthmus -c refuses a jwksUri that is not http(s), a jwks that is not
    a key set, each at the file's line and column of the field's value, and a
    rule with neither issuer nor jwksUri; a reload with such a document is
    refused and the old RequestAuthentication serves on; a RequestAuthentication of another namespace, or of the root
    namespace whose selector does not select the appliance, loads with a
    warning (its spec checked, not applied: a bad token is served), while one of the root
    namespace that selects it applies."""
    keys = Keys(env, e="ec256")
    key = jwks(keys.jwk("e"))
    head = docs(appliance(env), gateway_ports([free_port()]), virtual_service("vs", ["*"], ROUTE_ALL))
    cases = [(f"  - issuer: {ISS}\n    jwks: '{{\"keys\": [{{\"kty\": \"EC\"'\n", "jwks", "jwks", "jwks"),
             (f"  - issuer: {ISS}\n    jwks: '{{\"nokeys\": []}}'\n", "jwks", "jwks", "jwks"),
             (f"  - issuer: {ISS}\n    jwksUri: ftp://issuer.example.com/keys\n", "jwksUri",
              "jwksUri", "URI scheme is not supported"),
             (f"  - issuer: {ISS}\n    jwksUri: https://issuer.example.com/keys\n    jwks: '{key}'\n", "jwks",
              None, "only one of jwks or jwksUri"),
             ("  - jwks: '" + key + "'\n", "jwtRules[0]", None, "issuer or jwksUri")]
    for rules, path, at, want in cases:
        text = docs(head, "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
                    "metadata: {name: bad, namespace: default}\nspec:\n  jwtRules:\n" + rules)
        rc, out = env.check_config(env.write("bad.yaml", text))
        m = re.search(r"bad\.yaml:(\d+):(\d+): error: RequestAuthentication default/bad: spec\.(\S+)", out)
        check(rc != 0 and m and m.group(3).startswith(path if "[" in path else f"jwtRules[0].{path}")
              and want in out, f"{rules.strip()!r}: want an error at {path} saying {want!r}: rc {rc}, {out}")
        if at is not None:
            lines = text.split("\n")
            i = next(i for i, l in enumerate(lines) if l.lstrip(" -").startswith(at + ":"))
            col = lines[i].index(at) + len(at) + 3  # its value's
            check((int(m.group(1)), int(m.group(2))) == (i + 1, col),
                  f"{rules.strip()!r}: want the error at {i + 1}:{col}: {out}")

    good = request_authn("jwt", [{"issuer": ISS, "jwks": key}])
    (gw,), _ = world(env, good, app_extra="  labels: {istio: ingressgateway}\n")
    bad = keys.token("e", "ES256", claims())[:-4] + "AAAA"
    check(get(gw, "/", headers=bearer(bad)).status == 401, "a bad token at start")
    reload(env, request_authn("jwt", [{"issuer": ISS, "jwksUri": "ftp://issuer.example.com/keys"}]), ok=False)
    check(get(gw, "/", headers=bearer(bad)).status == 401, "a bad token after the refused reload")
    elsewhere = request_authn("shop", [{"issuer": ISS, "jwks": key}], ns="shop")
    other_sel = request_authn("sel", [{"issuer": ISS, "jwks": key}], ns="istio-system",
                              extra="  selector: {matchLabels: {app: other}}\n")
    reload(env, elsewhere, other_sel)
    rc, out = env.check_config(env.path("isthmus.yaml"))
    check(rc == 0 and "RequestAuthentication shop/shop: spec" in out and "warning" in out
          and "RequestAuthentication istio-system/sel: spec.selector" in out,
          f"isthmus -c warns of the two that do not apply: rc {rc}, {out}")
    r = get(gw, "/", headers=bearer(bad))
    check(r.status == 200 and r.header("x-upstream") == "a", f"no RequestAuthentication applies: {r}")
    reload(env, elsewhere, request_authn("root", [{"issuer": ISS, "jwks": key}], ns="istio-system",
                                         extra="  selector: {matchLabels: {istio: ingressgateway}}\n"))
    check(get(gw, "/", headers=bearer(bad)).status == 401, "the root namespace's, selecting the appliance, applies")


@_test
def jwt_token_extraction_as_envoy(env):
    """Where Envoy's extractor finds the token: after the prefix (matched
    case-sensitively), from the first base64url character or dot up to the
    next character that is neither (extractJWT), so "Bearer <token> trailing"
    and "Bearer <token>,x" carry <token>; a cookie value in double quotes is
    unquoted (Http::Utility::parseCookieValue, RFC 6265). A field without the
    prefix ("bearer ...") holds no token and reaches the upstream; a forged
    token so extracted is refused for its signature, beside a good one too."""
    keys = Keys(env, e="ec256")
    rule = {"issuer": ISS, "jwks": jwks(keys.jwk("e")),
            "fromHeaders": [{"name": "Authorization", "prefix": "Bearer "}], "fromCookies": ["session"]}
    (gw,), _ = world(env, request_authn("jwt", [rule]))
    good = keys.token("e", "ES256", claims())
    line, fields = seen(get(gw, "/headers", headers={"Authorization": f"bearer {good}"}))
    check(field(fields, "authorization") == [f"bearer {good}"], f"bearer (lower case) is no prefix: {fields}")
    bad = []
    for what, hdrs in (("spaces after the prefix", {"Authorization": f"Bearer    {good}"}),
                       ("a space and more after the token", {"Authorization": f"Bearer {good} trailing"}),
                       ("a comma and more after the token", {"Authorization": f"Bearer {good},x"}),
                       ("a quoted cookie value", {"Cookie": f'a=1; session="{good}"'})):
        r = get(gw, "/", headers=hdrs)
        if not (r.status == 200 and r.header("x-upstream") == "a"):
            bad.append(f"{what}: {r.status} {body_text(r.body)!r}")
    check(not bad, "want 200 (the token extracted as Envoy extracts it): " + "; ".join(bad))
    forged = good.rsplit(".", 1)[0] + ".AAAA"
    for what, hdrs in (("a bad token, then a space and more", {"Authorization": f"Bearer {forged} trailing"}),
                       ("a bad token in a quoted cookie", {"Cookie": f'session="{forged}"'}),
                       ):
        r = get(gw, "/", headers=hdrs)
        check(r.status == 401 and body_text(r.body) == VERIFY_FAILS, f"{what}: want 401 {VERIFY_FAILS!r}, got {r}")
    # A good and a bad token in two Authorization fields are refused, in
    # either order: every token found must verify, allow_missing's too (Envoy's
    # allow_missing goes on past the bad one to the good one and passes the
    # request; isthmus does not, see verifier() in worker/authn.c).
    for order in ((good, forged), (forged, good)):
        r = get(gw, "/headers", headers=[("Authorization", f"Bearer {t}") for t in order])
        check(r.status == 401 and body_text(r.body) == VERIFY_FAILS, f"good and bad tokens: want 401, got {r}")
    # Every token is verified: two good ones pass; past the 16 a check reads,
    # the request is refused rather than let one through unchecked.
    r = get(gw, "/", headers=[("Authorization", f"Bearer {good}")] * 2)
    check(r.status == 200 and r.header("x-upstream") == "a", f"two good tokens: want 200, got {r}")
    r = get(gw, "/", headers=[("Authorization", f"Bearer {good}")] * 17)
    check(r.status == 401 and body_text(r.body) == "Found multiple Jwt tokens",
          f"17 tokens: want 401 'Found multiple Jwt tokens', got {r}")


@_test
def jwt_claim_routes(env):
    """VirtualService header matches named "@request.auth.claims.<a>.<b>" or
    "@request.auth.claims[<a>][<b>]" match the verified token's claims, as
    istiod turns them into metadata matchers on the jwt_authn payload (the
    route found again once the token is verified): a string claim, one string
    of a list, a nested claim, a scope split into words; in withoutHeaders
    the match is inverted (no token: it holds). Without a token, or with one
    whose claims do not match, the next route takes the request. A client
    cannot send such a field itself. isthmus -c refuses an empty claim name
    and a claim match without a value, at their position."""
    keys = Keys(env, e="ec256")
    rule = {"issuer": ISS, "jwks": jwks(keys.jwk("e"))}

    def route(name, match):
        return (f"  - match: [{match}]\n    headers: {{request: {{set: {{x-route: {name}}}}}}}\n"
                f"    route: [{{destination: {{host: {SVC}}}}}]\n")

    routes = (route("groups", '{headers: {"@request.auth.claims.groups": {exact: admin}}}') +
              route("tier", '{headers: {"@request.auth.claims[org][tier]": {prefix: gold}}}') +
              route("scope", '{headers: {"@Request.Auth.Claims[scope]": {exact: write}}}') +
              route("not-bob", '{headers: {x-case: {exact: nobob}}, '
                    'withoutHeaders: {"@request.auth.claims.sub": {exact: bob}}}') + ROUTE_ALL)
    (gw,), _ = world(env, request_authn("jwt", [rule]), routes=routes)

    def routed(token, extra=None):
        hdrs = dict(bearer(token)) if token else {}
        hdrs.update(extra or {})
        _, fields = seen(get(gw, "/headers", headers=hdrs))
        return field(fields, "x-route")

    t = {name: keys.token("e", "ES256", c) for name, c in (
        ("admin-list", claims(groups=["users", "admin"])),
        ("admin-str", claims(groups="admin")),
        ("users", claims(groups=["users"], org={"tier": "silver"})),
        ("gold", claims(org={"tier": "gold-1"})),
        ("flat-tier", claims(**{"org.tier": "gold"})),
        ("scope", claims(scope="read write")),
        ("scope-whole", claims(scope="readwrite")),
        ("bob", claims(sub="bob")))}
    cases = [("no token", None, None, []),
             ("groups list holding admin", t["admin-list"], None, ["groups"]),
             ("groups string admin", t["admin-str"], None, ["groups"]),
             ("groups without admin, silver tier", t["users"], None, []),
             ("nested org.tier gold-1", t["gold"], None, ["tier"]),
             ("a top-level claim named org.tier is not nested", t["flat-tier"], None, []),
             ("scope 'read write' holds the word write", t["scope"], None, ["scope"]),
             ("scope 'readwrite'", t["scope-whole"], None, []),
             ("withoutHeaders sub bob, no token", None, {"x-case": "nobob"}, ["not-bob"]),
             ("withoutHeaders sub bob, alice's token", t["admin-str"], {"x-case": "nobob"}, ["groups"]),
             ("withoutHeaders sub bob, bob's token", t["bob"], {"x-case": "nobob"}, [])]
    bad = [f"{what}: want x-route {want}, got {got}" for what, tok, extra, want in cases
           if (got := routed(tok, extra)) != want]
    check(not bad, "claim routes: " + "; ".join(bad))
    # A client's own field of that name is no claim (nor a valid field name).
    with Conn("127.0.0.1", gw) as c:
        r = c.request("GET", "/headers", "test.local", {"@request.auth.claims.groups": "admin"})
    check(r.status == 400 or "x-route: groups" not in r.body.decode("latin-1").lower(),
          f"a client-sent @request.auth.claims field must not choose the route: {r}")

    head = docs(appliance(env), gateway_ports([free_port()]))
    for key, match, want in (('"@request.auth.claims.a..b"', "{exact: x}", "must not be empty"),
                             ('"@request.auth.claims[a]"', "{}", "needs exact, prefix or regex")):
        text = docs(head, virtual_service("vs", ["*"], route("x", f"{{headers: {{{key}: {match}}}}}")))
        rc, out = env.check_config(env.write("bad.yaml", text))
        lines = text.split("\n")
        i = next(i for i, l in enumerate(lines) if key in l)
        col = lines[i].index(key if want.startswith("must") else match) + 1
        check(rc != 0 and want in out and f"bad.yaml:{i + 1}:{col}: error" in out,
              f"{key}: {match}: want an error at {i + 1}:{col} saying {want!r}: rc {rc}, {out}")


class KeyServer:
    """A JWKS server on 127.0.0.5 (a thread of the test; TLS when cert is
    given): /keys (any query) serves self.body (status self.status) after
    self.delay seconds, /redirect answers
    302 to /keys, /.well-known/openid-configuration (below any path, an empty
    segment refused) names /keys as jwks_uri.
    self.hits counts the requests for /keys."""

    def __init__(self, env, cert=None):
        import http.server
        import ssl
        import threading
        ks = self
        self.body, self.status, self.hits, self.delay = b"{}", 200, 0, 0
        self.paths = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] == "/keys":
                    ks.hits += 1
                    ks.paths.append(self.path)
                    time.sleep(ks.delay)
                    status, body, extra = ks.status, ks.body, {}
                elif self.path == "/redirect":
                    status, body, extra = 302, b"", {"Location": "/keys"}
                elif self.path.endswith("/.well-known/openid-configuration") and "//" not in self.path:
                    status, body, extra = 200, json.dumps({"jwks_uri": ks.url("/keys")}).encode(), {}
                else:
                    status, body, extra = 404, b"", {}
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.5", 0), Handler)
        self.tls = cert is not None
        if cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*cert)
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        env.cleanups.append(self.srv.shutdown)

    def url(self, path=""):
        return f"{'https' if self.tls else 'http'}://127.0.0.5:{self.srv.server_port}{path}"


@_test
def upgrade_keeps_key_sets(env):
    """A binary upgrade hands the fetched key sets over, as a reload keeps
    them: with the issuer's key server failing at the upgrade, tokens verify
    on (the new master fetched again, failed, and refused every token, 401,
    until a refresh a minute later)."""
    from test_control import _own_binary, _upgrade_done
    exe = _own_binary(env)
    keys = Keys(env, a="ec256")
    plain = KeyServer(env)
    plain.body = jwks(keys.jwk("a")).encode()
    (gw,), _ = world(env, request_authn("jwt", [{"issuer": ISS, "jwksUri": plain.url("/keys")}]))
    token = keys.token("a", "ES256", claims())
    r = get(gw, "/", headers=bearer(token))
    check(r.status == 200, f"before the upgrade: {r}")
    plain.status = 500
    _upgrade_done(env, exe)
    r = get(gw, "/", headers=bearer(token))
    check(r.status == 200, f"after the upgrade, the key server failing: {r}")
    check("0 DNS answers and 1 JWT key sets kept" in env.gateway.log(), "the handover is not logged")


@_test
def upgrade_keeps_control_sockets(env):
    """A binary upgrade hands over the control socket and the admin listener
    too: a command or a probe sent while the new binary loads its file (here
    2 s, fetching a key set the old master did not have) waits in their
    backlogs and is answered once the new master serves (both were closed
    at the exec and refused until then). A pidFile or controlSocket that the
    file names anew goes with the next upgrade: the old ones are removed, as
    a stop removes them (they were left behind)."""
    import urllib.request
    from test_control import _own_binary, _replace_and_upgrade, _upgrade_done
    exe = _own_binary(env)
    keys = Keys(env, a="ec256")
    ks = KeyServer(env)
    ks.body = jwks(keys.jwk("a")).encode()
    aport, pid_file, ctl = free_port(), env.path("run/a.pid"), env.path("ctl.sock")
    rule = {"issuer": ISS, "jwksUri": ks.url("/keys")}
    (gw,), _ = world(env, request_authn("jwt", [rule]),
                     app_extra=f"  admin:\n    address: 127.0.0.1:{aport}\n  pidFile: {pid_file}\n")
    token = keys.token("a", "ES256", claims())
    check(get(gw, "/", headers=bearer(token)).status == 200, "before the upgrade")
    env.conf(request_authn("jwt", [rule, {"issuer": "https://other.example", "jwksUri": ks.url("/keys?2")}]))
    ks.delay = 2
    executing = env.gateway.log().count("upgrade: executing")
    _replace_and_upgrade(env, exe)
    poll(lambda: env.gateway.log().count("upgrade: executing") > executing, 30,
         what="the old master to execute the new binary")
    t0 = time.monotonic()
    info = json.loads(ctl_cmd(ctl, "show info json", timeout=30))
    took = time.monotonic() - t0
    ready = urllib.request.urlopen(f"http://127.0.0.1:{aport}/healthz/ready", timeout=30).status
    check(info.get("ready") is True and ready == 200,
          f"a command and a probe sent during the load: want answers, got {info}, {ready}")
    check(took > 1, f"the command was answered in {took:.1f} s: it did not wait for the load")
    ks.delay = 0
    poll(lambda: "upgrade: done" in env.gateway.log(), 30, what="the upgrade to end")
    check(get(gw, "/", headers=bearer(token)).status == 200, "after the upgrade")
    # Both paths named anew: the next upgrade removes the old ones.
    text = open(env.path("isthmus.yaml")).read()
    new_ctl, new_pid = env.path("ctl2.sock"), env.path("run/b.pid")
    with open(env.path("isthmus.yaml"), "w") as f:
        f.write(text.replace(f"pidFile: {pid_file}", f"pidFile: {new_pid}")
                .replace(f"controlSocket: {ctl}", f"controlSocket: {new_ctl}"))
    _upgrade_done(env, exe)
    log = env.gateway.log()
    check(not os.path.exists(ctl) and not os.path.exists(pid_file),
          f"the old control socket and pid file are left: {os.path.exists(ctl)}, {os.path.exists(pid_file)}")
    check(open(new_pid).read().strip() == str(env.gateway.pid) and json.loads(ctl_cmd(new_ctl, "show info json")).get("ready") is True,
          "the new pid file and control socket")
    check("the old control socket" in log and "the old pid file" in log, "the removals are not logged")
    # SIGUSR2 while a reload runs (it fetches a new key set, 2 s): the upgrade
    # waits for it, then goes (it was dropped: "no upgrade now").
    with open(env.path("isthmus.yaml"), "a") as f:
        f.write("---\n" + request_authn("jwt3", [{"issuer": "https://third.example",
                                                   "jwksUri": ks.url("/keys?3")}]))
    ks.delay = 2
    done = env.gateway.log().count("upgrade: done")
    os.kill(env.gateway.pid, signal.SIGHUP)
    poll(lambda: ks.hits >= 1 and "keys?3" in "".join(ks.paths), 10, what="the reload to fetch the new key set")
    _replace_and_upgrade(env, exe)
    poll(lambda: env.gateway.log().count("upgrade: done") > done, 30, what="the upgrade after the reload")
    log = env.gateway.log()
    check("the upgrade waits for the reload under way" in log and "no upgrade now" not in log,
          "SIGUSR2 during a reload: not deferred")


@_test
def jwt_jwks_uri(env):
    """Key sets named by jwksUri, or by the issuer's OpenID discovery, are
    fetched by the master as istiod fetches them (redirects followed; https
    verified against the trusted roots, here SSL_CERT_FILE's test CA) and
    verify tokens; fetched again every PILOT_JWT_PUB_KEY_REFRESH_INTERVAL
    (1 s here), so a rotated key takes over without a reload; a key set
    that cannot be fetched (status 500) loads with a warning and refuses its
    tokens ("Jwt verification fails", istiod's fail-closed key set) until a
    refresh gets it. isthmus -c fetches nothing and says so."""
    from test_tls import Pki
    keys = Keys(env, a="ec256", b="ec256", c="rsa")
    plain = KeyServer(env)
    pki = Pki(env)
    tls = KeyServer(env, cert=pki.leaf("keys", ["IP:127.0.0.5"]))
    plain.body = jwks(keys.jwk("a")).encode()
    tls.body = jwks(keys.jwk("c")).encode()
    rules = [{"issuer": ISS, "jwksUri": plain.url("/redirect")},
             {"issuer": tls.url(), "jwksUri": tls.url("/keys")},
             {"issuer": plain.url()}]
    text = docs(appliance(env), gateway_ports([free_port()]), virtual_service("vs", ["*"], ROUTE_ALL),
                request_authn("jwt", rules))
    rc, out = env.check_config(env.write("check.yaml", text))
    check(rc == 0 and "the key set is fetched when isthmus runs" in out and plain.hits == 0,
          f"isthmus -c: valid, fetching nothing, with a warning: rc {rc}, hits {plain.hits}, {out}")
    os.environ["PILOT_JWT_PUB_KEY_REFRESH_INTERVAL"] = "1s"
    os.environ["SSL_CERT_FILE"] = pki.ca()
    try:
        (gw,), _ = world(env, request_authn("jwt", rules))
    finally:
        del os.environ["PILOT_JWT_PUB_KEY_REFRESH_INTERVAL"], os.environ["SSL_CERT_FILE"]
    a1 = keys.token("a", "ES256", claims())
    for what, token in (("jwksUri through a redirect", a1),
                        ("https, the test CA trusted", keys.token("c", "RS256", claims(iss=tls.url()))),
                        ("the issuer's OpenID discovery", keys.token("a", "ES256", claims(iss=plain.url())))):
        r = get(gw, "/", headers=bearer(token))
        check(r.status == 200 and r.header("x-upstream") == "a", f"{what}: want 200, got {r}")
    # The key rotates: the refresh picks the new one up, the old one's tokens fail.
    plain.body = jwks(keys.jwk("b")).encode()
    b1 = keys.token("b", "ES256", claims())
    poll(lambda: get(gw, "/", headers=bearer(b1)).status == 200, 30, what="the rotated key to verify tokens")
    # Refused; with several providers Envoy reports the status of its last
    # requirement, the first provider by issuer (not this token's): theirs.
    r = get(gw, "/", headers=bearer(a1))
    check(r.status == 401 and body_text(r.body) == UNKNOWN_ISSUER, f"the retired key's token: want 401, got {r}")
    # A key set that cannot be had: at a reload, and until a refresh gets it.
    plain.status = 500
    reload(env, request_authn("jwt", [{"issuer": ISS2, "jwksUri": plain.url("/keys")}]))
    b2 = keys.token("b", "ES256", claims(iss=ISS2))
    r = get(gw, "/", headers=bearer(b2))
    check(r.status == 401 and body_text(r.body) == VERIFY_FAILS, f"no key set: want 401 {VERIFY_FAILS!r}, got {r}")
    check("the key set cannot be fetched" in open(env.path("isthmus.log")).read(),
          "the reload's warning that the key set cannot be fetched")
    plain.status = 200
    poll(lambda: get(gw, "/", headers=bearer(b2)).status == 200, 30, what="the key set fetched by a refresh")


@_test
def jwt_discovery_issuer_with_trailing_slash(env):
    """An issuer written with a trailing slash is found by OpenID discovery as
    istiod finds it (resolveJwksURIUsingOpenID trims the slash before
    /.well-known/openid-configuration): its tokens verify."""
    keys = Keys(env, a="ec256")
    ks = KeyServer(env)
    ks.body = jwks(keys.jwk("a")).encode()
    iss = ks.url("/tenant/")  # discovery at /tenant/.well-known/openid-configuration
    (gw,), _ = world(env, request_authn("jwt", [{"issuer": iss}]))
    r = get(gw, "/", headers=bearer(keys.token("a", "ES256", claims(iss=iss))))
    check(r.status == 200 and ks.hits >= 1, f"issuer {iss!r} by discovery: want 200, got {r} ({ks.hits} key fetches)")


@_test
def jwt_jwks_dropped_with_provider(env):
    """A key set that the served file no longer names is dropped: after a
    reload removes its RequestAuthentication rule it is not fetched again
    (a failing one no longer warns every minute), while the key sets still
    named go on being refreshed; named again, it is fetched again at once."""
    keys = Keys(env, a="ec256")
    kept, gone = KeyServer(env), KeyServer(env)
    kept.body = jwks(keys.jwk("a")).encode()
    gone.status = 500
    both = [{"issuer": ISS, "jwksUri": kept.url("/keys")}, {"issuer": ISS2, "jwksUri": gone.url("/keys")}]
    os.environ["PILOT_JWT_PUB_KEY_REFRESH_INTERVAL"] = "1s"
    try:
        (gw,), _ = world(env, request_authn("jwt", both))
    finally:
        del os.environ["PILOT_JWT_PUB_KEY_REFRESH_INTERVAL"]
    poll(lambda: gone.hits >= 2 and kept.hits >= 2, 30, what="both key sets fetched again by refreshes")
    # A refused reload drops nothing: the running file still names both key sets.
    reload(env, "apiVersion: networking.istio.io/v1\nkind: Nonsense\nmetadata: {name: x}\n", ok=False)
    start = kept.hits, gone.hits
    poll(lambda: kept.hits >= start[0] + 2 and gone.hits >= start[1] + 2, 30,
         what="both key sets refreshed after a refused reload")
    reload(env, request_authn("jwt", both[:1]))
    hits = gone.hits
    start = kept.hits
    poll(lambda: kept.hits >= start + 3, 30, what="the named key set refreshed three more times")
    check(gone.hits == hits, f"the dropped key set was fetched {gone.hits - hits} times after the reload")
    check("dropped: no RequestAuthentication names it" in open(env.path("isthmus.log")).read(),
          "the log says the key set was dropped")
    token = keys.token("a", "ES256", claims())
    r = get(gw, "/", headers=bearer(token))
    check(r.status == 200, f"the kept key set verifies: want 200, got {r}")
    gone.status = 200
    gone.body = jwks(keys.jwk("a")).encode()
    reload(env, request_authn("jwt", both))
    check(gone.hits > hits, "named again, the key set is fetched by the reload")
    r = get(gw, "/", headers=bearer(keys.token("a", "ES256", claims(iss=ISS2))))
    check(r.status == 200, f"its tokens verify again: want 200, got {r}")
