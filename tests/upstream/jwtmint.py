#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Keys and JSON Web Tokens for the JWT tests (tests/integration/test_jwt.py).
The cryptography is the `cryptography` package's (Debian: python3-cryptography);
this tool only encodes (JWK members, JWS compact serialization, RFC 7515/7518).

Run it with Debian's python (/usr/bin/python3).

usage: jwtmint.py keys DIR NAME:TYPE...
         TYPE: rsa (2048 bits), ec256, ec384 (P-256, P-384), ed25519, hmac
         (32 random bytes). Writes DIR/NAME.key (PKCS#8 PEM; hmac: the raw
         secret) and prints {NAME: public JWK} as JSON, without kid or alg
         (the tests add them).
       jwtmint.py sign DIR < JOBS
         JOBS: a JSON list of {"key": NAME, "alg": ALG, "header": {...},
         "payload": {...} or "payload_raw": "text"}; ALG one of RS256,
         PS256, ES256, ES384, EdDSA, HS256 ("alg" and "typ": "JWT" are put in
         the header unless it has them). Prints the JSON list of the tokens.
"""

import base64
import json
import os
import sys

from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64u(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return b64u(n.to_bytes(size, "big"))


def make_key(kind):
    """(private key or HMAC secret, public JWK)."""
    if kind == "rsa":
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = k.public_key().public_numbers()
        return k, {"kty": "RSA", "n": int_b64u(pub.n), "e": int_b64u(pub.e)}
    if kind in ("ec256", "ec384"):
        curve, crv, size = (ec.SECP256R1(), "P-256", 32) if kind == "ec256" else (ec.SECP384R1(), "P-384", 48)
        k = ec.generate_private_key(curve)
        pub = k.public_key().public_numbers()
        return k, {"kty": "EC", "crv": crv, "x": int_b64u(pub.x, size), "y": int_b64u(pub.y, size)}
    if kind == "ed25519":
        k = ed25519.Ed25519PrivateKey.generate()
        raw = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return k, {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
    if kind == "hmac":
        k = os.urandom(32)
        return k, {"kty": "oct", "k": b64u(k)}
    raise SystemExit(f"unknown key type {kind}")


def keys(d, specs):
    out = {}
    for spec in specs:
        name, _, kind = spec.partition(":")
        k, jwk = make_key(kind)
        if isinstance(k, bytes):
            data = k
        else:
            data = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
        with open(os.path.join(d, name + ".key"), "wb") as f:
            f.write(data)
        out[name] = jwk
    print(json.dumps(out))


def load(d, name, alg):
    with open(os.path.join(d, name + ".key"), "rb") as f:
        data = f.read()
    return data if alg.startswith("HS") else serialization.load_pem_private_key(data, password=None)


def signature(key, alg, data):
    if alg == "RS256":
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        return key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    if alg in ("ES256", "ES384"):
        h, size = (hashes.SHA256(), 32) if alg == "ES256" else (hashes.SHA384(), 48)
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(h)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg == "EdDSA":
        return key.sign(data)
    if alg == "HS256":
        m = hmac.HMAC(key, hashes.SHA256())
        m.update(data)
        return m.finalize()
    raise SystemExit(f"unknown alg {alg}")


def sign(d, jobs):
    out = []
    for j in jobs:
        alg = j["alg"]
        header = dict(j.get("header") or {})
        header.setdefault("alg", alg)
        header.setdefault("typ", "JWT")
        payload = j["payload_raw"].encode() if "payload_raw" in j else json.dumps(j["payload"]).encode()
        signing_input = (b64u(json.dumps(header).encode()) + "." + b64u(payload)).encode()
        out.append(signing_input.decode() + "." + b64u(signature(load(d, j["key"], alg), alg, signing_input)))
    print(json.dumps(out))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "keys":
        keys(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 3 and sys.argv[1] == "sign":
        sign(sys.argv[2], json.load(sys.stdin))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
