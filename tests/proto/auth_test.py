#!/usr/bin/env python3
"""Capability tokens over real sockets (src/auth, src/router.c).

weft runs with an HS256 secret file and a JWKS file of one Ed25519 key
(made and used for signing by node's crypto: no Python package needed).
Checks: every way a token is refused with 401 (missing, not Bearer,
malformed, bad signature, expired past the leeway, not yet valid, alg none,
no sub or exp, bad caps, EdDSA with an unknown kid or another key) and
accepted (HS256, EdDSA, within the leeway, ?token= on a read); 403 naming
the missing capability for every kind of stream and session route and for
a path outside the pattern; admin grants all; the caller's identity is the
token's subject, whatever Weft-Client says; the token never reaches the
log (at --log-level debug); CORS preflights and /healthz need none;
`weft token` mints tokens that verify and refuses bad input; start-up
refuses a missing or short secret and a bad JWKS; without keys weft warns
once that it is open.

Usage: auth_test.py path/to/weft   Ends with "auth_test: N passed, N failed".
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sessionlib import Http  # noqa: E402
from weftproc import Checks, Weft  # noqa: E402

check = Checks("auth_test")
SECRET = b"s" * 24 + os.urandom(24).hex().encode()
OTHER = b"o" * 48
LEEWAY = 5


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hs256(claims, secret=SECRET, header=None):
    h = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, ("%s.%s" % (h, p)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (h, p, b64(sig))


NODE_ED = r"""
const crypto = require("crypto");
const [cmd, arg] = process.argv.slice(1);
if (cmd === "keys") {
  const out = [];
  for (let i = 0; i < 2; i++) {
    const { publicKey, privateKey } = crypto.generateKeyPairSync("ed25519");
    out.push({ jwk: publicKey.export({ format: "jwk" }), pem: privateKey.export({ format: "pem", type: "pkcs8" }) });
  }
  console.log(JSON.stringify(out));
} else {
  const { pem, header, claims } = JSON.parse(arg);
  const b = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const input = b(header) + "." + b(claims);
  const sig = crypto.sign(null, Buffer.from(input), crypto.createPrivateKey(pem)).toString("base64url");
  console.log(input + "." + sig);
}
"""


def node(*args):
    return subprocess.run(["node", "-e", NODE_ED, "--"] + list(args), check=True, capture_output=True,
                          text=True).stdout.strip()


def now():
    return int(time.time())


def claims(caps, sub="alice", exp=None, **extra):
    c = {"sub": sub, "exp": now() + 600 if exp is None else exp, "caps": caps}
    c.update(extra)
    return c


ALL_SESSION = ["read", "write", "create", "delete", "presence", "objects", "cancel"]


def main():
    binary = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="weft-auth-")
    secret_file = os.path.join(tmp, "secret")
    with open(secret_file, "wb") as f:
        f.write(SECRET + b"\n")
    keys = json.loads(node("keys"))
    jwks_file = os.path.join(tmp, "jwks.json")
    with open(jwks_file, "w") as f:
        json.dump({"keys": [dict(keys[0]["jwk"], kid="k1", use="sig"), {"kty": "RSA", "n": "x", "e": "AQAB"}]}, f)

    # --- start-up ---
    open_weft = Weft(binary).start()
    open_weft.stop()
    log = open_weft.log_tail()
    check(log.count("warning: no --auth-secret-file or --auth-jwks-file") == 1,
          "without keys weft warns once that it is open: %r" % log[-300:])
    short = os.path.join(tmp, "short")
    with open(short, "w") as f:
        f.write("too short")
    bad_jwks = os.path.join(tmp, "bad.json")
    with open(bad_jwks, "w") as f:
        f.write('{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "!!"}]}')
    for args, want in [(["--auth-secret-file", os.path.join(tmp, "none")], "cannot read"),
                       (["--auth-secret-file", short], "use at least 32"),
                       (["--auth-jwks-file", bad_jwks], "x must be a base64url Ed25519 public key")]:
        r = subprocess.run([binary, "serve", "--port", "1", "--data-dir", os.path.join(tmp, "d")] + args,
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 2 and want in r.stderr, "start-up with %s refused: %d %r" % (args, r.returncode, r.stderr))

    w = Weft(binary, args=["--auth-secret-file", secret_file, "--auth-jwks-file", jwks_file,
                           "--auth-leeway", "%ds" % LEEWAY, "--log-level", "debug",
                           "--long-poll-timeout", "1s"]).start()
    h = Http(w.port)
    used = []

    def req(method, path, token=None, body=None, headers=None, query_token=False):
        hd = dict(headers or {})
        if token and not query_token:
            hd["Authorization"] = "Bearer " + token
        if token:
            used.append(token)
        if query_token:
            path += ("&" if "?" in path else "?") + "token=" + token
        st, body_, r = h.json(method, path, body, hd)
        return st, body_, r

    def refused(status, why, method, path, token=None, body=None, headers=None):
        st, b, r = req(method, path, token, body, headers)
        msg = (b or {}).get("error", "") if isinstance(b, dict) else ""
        check(st == status and why in msg, "%s %s: want %d %r, got %d %r" % (method, path, status, why, st, b))
        if status == 401:
            check("Bearer" in (r.getheader("WWW-Authenticate") or ""), "401 carries WWW-Authenticate: Bearer")

    full = hs256(claims({"/v1/session/trip-*": ALL_SESSION, "/v1/stream/pub/**": ["read", "write", "create", "delete"]}))

    # --- 401 ---
    refused(401, "missing token", "PUT", "/v1/session/trip-1")
    st, b, r = h.json("PUT", "/v1/session/trip-1", None, {"Authorization": "Basic YTpi"})
    check(st == 401, "a Basic authorization is 401: %d" % st)
    bad = [
        ("abc", "malformed token"),
        ("a.b", "malformed token"),
        ("a.b.c.d", "malformed token"),
        ("!!.!!.!!", "malformed token"),
        (hs256(claims({}), secret=OTHER), "bad signature"),
        (full[:-3] + ("AAA" if not full.endswith("AAA") else "BBB"), "bad signature"),
        (hs256(claims({}, exp=now() - LEEWAY - 30)), "token expired"),
        (hs256(claims({}, nbf=now() + LEEWAY + 60)), "not yet valid"),
        (hs256(claims({}), header={"alg": "none"}), "unsupported alg"),
        (hs256({"exp": now() + 60}), "sub"),
        (hs256({"sub": "alice"}), "exp is required"),
        (hs256(claims([])), "caps must be an object"),
        (hs256(claims({"/v1/**": ["fly"]})), "unknown capability"),
        (hs256(claims({}, nbf=1e300)), "nbf must be an integer"),
        (hs256(claims({}, exp=1e300)), "exp is required (an integer)"),
        (node("sign", json.dumps({"pem": keys[0]["pem"], "header": {"alg": "EdDSA", "kid": "k2"},
                                 "claims": claims({"/v1/**": ["admin"]})})), "bad signature"),
        (node("sign", json.dumps({"pem": keys[1]["pem"], "header": {"alg": "EdDSA"},
                                 "claims": claims({"/v1/**": ["admin"]})})), "bad signature"),
    ]
    for tok, why in bad:
        refused(401, why, "PUT", "/v1/session/trip-1", tok)

    # --- accepted ---
    st, b, _ = req("PUT", "/v1/session/trip-1", full)
    check(st == 201, "PUT with a full HS256 token: %d %r" % (st, b))
    st, b, _ = req("GET", "/v1/session/trip-1", hs256(claims({"/v1/session/trip-1": ["read"]}, exp=now() - 2)))
    check(st == 200, "a token expired within the leeway is accepted: %d" % st)
    ed = node("sign", json.dumps({"pem": keys[0]["pem"], "header": {"alg": "EdDSA", "kid": "k1"},
                                  "claims": claims({"/v1/session/**": ["read"]}, sub="edgar")}))
    st, b, _ = req("GET", "/v1/session/trip-1", ed)
    check(st == 200, "an EdDSA token from the JWKS key: %d %r" % (st, b))
    ed_nokid = node("sign", json.dumps({"pem": keys[0]["pem"], "header": {"alg": "EdDSA"},
                                        "claims": claims({"/v1/session/**": ["read"]})}))
    st, b, _ = req("GET", "/v1/session/trip-1", ed_nokid)
    check(st == 200, "an EdDSA token without kid, checked against the keys: %d" % st)

    # --- identity is the token's subject ---
    st, b, _ = req("POST", "/v1/session/trip-1/messages", full,
                   {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}, {"Weft-Client": "mallory"})
    check(st == 201, "message with a token: %d %r" % (st, b))
    st, b, _ = req("GET", "/v1/session/trip-1/log?offset=-1", full)
    ev = [e for e in (b or []) if e.get("type") == "message"]
    check(ev and ev[0]["headers"].get("client") == "alice",
          "the message's author is the token's sub, not Weft-Client: %r" % (ev[:1],))
    st, b, _ = req("POST", "/v1/session/trip-1/presence", full, {"action": "enter", "data": {}})
    check(st == 200 and (b or {}).get("client") == "alice", "presence as the token's sub: %d %r" % (st, b))

    # --- 403, by route ---
    read_only = hs256(claims({"/v1/session/trip-1": ["read"], "/v1/stream/pub/**": ["read"]}))
    for method, path, body, cap in [
        ("PUT", "/v1/session/trip-1", None, "create"),
        ("DELETE", "/v1/session/trip-1", None, "delete"),
        ("POST", "/v1/session/trip-1/messages", {"role": "user", "parts": []}, "write"),
        ("POST", "/v1/session/trip-1/runs", {"id": "r1"}, "write"),
        ("POST", "/v1/session/trip-1/runs/r1/chunks", {"type": "text-delta"}, "write"),
        ("POST", "/v1/session/trip-1/runs/r1/cancel", None, "cancel"),
        ("POST", "/v1/session/trip-1/objects", {"ops": [{"object": "b", "op": "increment"}]}, "objects"),
        ("POST", "/v1/session/trip-1/presence", {"action": "leave"}, "presence"),
        ("PUT", "/v1/stream/pub/a", None, "create"),
        ("POST", "/v1/stream/pub/a", b"x", "write"),
        ("DELETE", "/v1/stream/pub/a", None, "delete"),
    ]:
        refused(403, "lacks the '%s' capability on %s" % (cap, "/v1/session/trip-1" if "session" in path else path),
                method, path, read_only, body)
    for method, path in [("GET", "/v1/session/trip-2"), ("GET", "/v1/session/trip-2/log?offset=-1"),
                         ("GET", "/v1/stream/priv/a?offset=-1"), ("GET", "/v1/session/trip-1x")]:
        refused(403, "lacks the 'read' capability", method, path, read_only)
    st, _, _ = req("GET", "/v1/session/trip-1/objects", read_only)
    check(st == 200, "read covers the session's sub-routes: %d" % st)
    admin = hs256(claims({"/v1/**": ["admin"]}, sub="ops"))
    for method, path, body in [("PUT", "/v1/stream/any/where", None), ("POST", "/v1/stream/any/where", b"x"),
                               ("DELETE", "/v1/session/trip-1", None)]:
        st, b, _ = req(method, path, admin, body, {"Content-Type": "application/octet-stream"})
        check(st in (200, 201, 204), "admin may %s %s: %d %r" % (method, path, st, b))

    # --- no way around a check: fork sources, percent-encoding, long paths ---
    req("PUT", "/v1/stream/private/s", admin, b"secret", {"Content-Type": "text/plain"})
    forker = hs256(claims({"/v1/stream/me/**": ["create", "read"]}))
    refused(403, "lacks the 'read' capability on /v1/stream/private/s", "PUT", "/v1/stream/me/f", forker, None,
            {"Stream-Forked-From": "/v1/stream/private/s"})
    refused(403, "lacks the 'read' capability on /v1/stream/private/s", "PUT", "/v1/stream/me/g", forker, None,
            {"Stream-Forked-From": "private/%73"})
    refused(403, "lacks the 'read' capability on /v1/session/trip-3", "PUT", "/v1/stream/me/h", forker, None,
            {"Stream-Forked-From": "/v1/session/trip-3"})
    rw = hs256(claims({"/v1/session/trip-*": ["read", "write"], "/v1/stream/chat/*": ["create"]}))
    refused(403, "lacks the 'presence' capability", "POST", "/v1/session/trip-3/%70resence", rw, {"action": "leave"})
    refused(403, "lacks the 'objects' capability", "POST", "/v1/session/trip-3/%6Fbjects",
            rw, {"ops": [{"object": "b", "op": "increment"}]})
    refused(403, "lacks the 'cancel' capability", "POST", "/v1/session/trip-3%2Fruns%2Fr%2Fcancel", rw)
    refused(403, "lacks the 'create' capability on /v1/stream/chat/a/b", "PUT", "/v1/stream/chat/a%2Fb", rw)
    refused(403, "lacks the 'create' capability", "PUT", "/v1/stream/chat/%s/deep" % ("a" * 600), rw)
    refused(400, "percent-encoding", "PUT", "/v1/stream/chat/a%00b", rw)
    st, _, _ = req("PUT", "/v1/stream/x", hs256(claims({"/v1/stream/*/**": ["create"]})))
    check(st == 201, "a pattern ending in /** with a wildcard covers the path without it: %d" % st)

    # --- ?token= on a live read; never logged ---
    req("PUT", "/v1/session/trip-3", full)
    st, b, r = req("GET", "/v1/session/trip-3/log?offset=-1&live=long-poll", full, query_token=True)
    check(st in (200, 204), "a live read with ?token=: %d" % st)
    refused(401, "bad signature", "GET", "/v1/session/trip-3?token=" + hs256(claims({}), secret=OTHER))

    # --- open routes ---
    st, _, r = h.json("OPTIONS", "/v1/session/trip-1", None, {"Origin": "http://x", "Access-Control-Request-Method": "POST"})
    check(st == 204, "a CORS preflight needs no token: %d" % st)
    st, _, _ = h.json("GET", "/healthz")
    check(st == 200, "/healthz needs no token: %d" % st)

    # --- weft token ---
    r = subprocess.run([binary, "token", "--secret-file", secret_file, "--sub", "tool", "--ttl", "2m",
                        "--caps", '{"/v1/session/trip-3": ["read"]}'], capture_output=True, text=True)
    minted = r.stdout.strip()
    st, _, _ = req("GET", "/v1/session/trip-3", minted)
    check(r.returncode == 0 and st == 200, "weft token mints a token weft accepts: %d %d" % (r.returncode, st))
    payload = json.loads(base64.urlsafe_b64decode(minted.split(".")[1] + "=="))
    check(payload.get("sub") == "tool" and abs(payload.get("exp", 0) - now() - 120) <= 5,
          "minted claims: %r" % payload)
    for args, want in [(["--caps", "[]"], "caps must be a JSON object"), (["--caps", '{"/a": ["fly"]}'], "unknown capability"),
                       (["--caps", "{}", "--secret-file", short], "use at least 32"), (["--caps", "{}", "--ttl", "x"], "usage"),
                       (["--caps", "{}", "--ttl", "0s"], "usage"), (["--caps", "{}", "--secret", "x"], "usage")]:
        base = ["--secret-file", secret_file, "--sub", "x"]
        r = subprocess.run([binary, "token"] + base + args, capture_output=True, text=True)
        check(r.returncode == 2 and want in r.stderr, "weft token %s refused: %d %r" % (args, r.returncode, r.stderr))

    w.stop()
    log = open(w.log, errors="replace").read()
    leaked = [t for t in used if t[-20:] in log]
    check(not leaked, "no token (header or ?token=) reaches the log: %d found" % len(leaked))
    check("GET /v1/session/trip-3/log" in log or "trip-3" in log, "the debug log does log the requests")
    check.finish(w)


if __name__ == "__main__":
    main()
