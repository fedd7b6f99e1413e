#!/usr/bin/env python3
"""Shapes over real sockets (src/shape, docs/shapes.md): the routes,
parameters, headers and errors of Electric's API as Weft serves them,
against a real Postgres. Run through tests/pg/pgtmp.py.

Checks: /v1/shape answers 503 naming the flag without --database-url;
/v1/health; OPTIONS; the initial sync's headers (handle, offset, schema
with pk_index, up-to-date, ETag, Cache-Control) and body (keys, values as
text or null, snapshot-end, up-to-date); params[n] both as sent by
URLSearchParams and by hand; columns (the primary key always comes
along); a catch-up read, `offset=now`, a live long-poll that times out
with up-to-date and one woken by a change; two requests for one shape
share it, another where is another shape; 400 in Electric's shape for
every bad parameter; 409 must-refetch for a handle that is not the
shape's; DELETE; 405; log=changes_only (no rows at first, changes
after, rows moving in whole); subsets by GET and POST (where with params,
order_by, limit, offset, metadata, errors, a stale handle); capability tokens (read on /v1/shape/<table>); weft
exits 0 on SIGTERM (under ASan: no leak).

Usage: shape_test.py path/to/weft   Ends with "shape_test: N passed, N failed".
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sessionlib import Http  # noqa: E402
from weftproc import Checks, Weft  # noqa: E402

check = Checks("shape_test")
DB = os.environ.get("WEFT_TEST_DATABASE_URL")


def sql(q):
    return subprocess.run(["psql", DB, "-qAtc", q], check=True, capture_output=True, text=True).stdout


def get(h, params, headers=None, method="GET"):
    st, r, raw = h.request(method, "/v1/shape?" + urllib.parse.urlencode(params), None, headers or {})
    body = json.loads(raw) if raw and raw[:1] in (b"[", b"{") else None
    return st, r, body


def wait_health(h):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if h.request("GET", "/v1/health")[0] == 200:
            return True
        time.sleep(0.1)
    return False


def off_without_database(binary):
    w = Weft(binary).start()
    h = Http(w.port)
    st, r, body = get(h, {"table": "t", "offset": "-1"})
    check(st == 503 and "--database-url" in body["message"], "shapes off: 503 naming --database-url: %s %s" % (st, body))
    w.stop()


def read_until(h, q, handle, offset, want):
    """Catch-up and live reads of a shape from offset until `want` change
    messages came; returns them and the offset after them."""
    got = []
    deadline = time.monotonic() + 15
    while len(got) < want and time.monotonic() < deadline:
        st, r, body = get(h, dict(q, offset=offset, handle=handle, live="true"))
        if st != 200:
            break
        offset = r.getheader("electric-offset")
        got += [m for m in body if "key" in m]
    return got, offset


def subset(h, q, handle, **sub):
    params = dict(q, handle=handle, offset="now")
    for k, v in sub.items():
        params["subset__" + k] = v
    return get(h, params)


def row_keys(h):
    """Row keys as Electric makes them: '/' doubled in values, NULL as /_,
    every column in table order without a primary key."""
    sql("CREATE TABLE paths (p text PRIMARY KEY)")
    sql("INSERT INTO paths VALUES ('a/b'), ('_')")
    sql("CREATE TABLE nopk (b text, a int)")
    sql("INSERT INTO nopk VALUES ('x', NULL)")
    st, r, body = get(h, {"table": "paths", "offset": "-1"})
    check(sorted(m["key"] for m in body if "key" in m) == ['"public"."paths"/"_"', '"public"."paths"/"a//b"'],
          "row keys: '/' in a key value doubled: %s" % body)
    st, r, body = get(h, {"table": "nopk", "offset": "-1"})
    check([m["key"] for m in body if "key" in m] == ['"public"."nopk"/"x"/_'],
          "row keys without a primary key: every column in table order, NULL as /_: %s" % body)


def changes_only_and_subsets(h):
    sql("CREATE TABLE docs (id int PRIMARY KEY, owner text, title text, n int)")
    sql("INSERT INTO docs VALUES (1, 'a', 't1', 10), (2, 'a', 't2', 20), (3, 'b', 't3', 30)")
    q = {"table": "docs", "where": "owner = 'a'", "log": "changes_only"}
    st, r, body = get(h, dict(q, offset="-1"))
    hc, oc = r.getheader("electric-handle"), r.getheader("electric-offset")
    check(st == 200 and not [m for m in body if "key" in m] and body[-1]["headers"]["control"] == "up-to-date",
          "changes_only: the initial sync has no rows, then up-to-date: %s %s" % (st, body))
    st, r, body = get(h, {"table": "docs", "where": "owner = 'a'", "offset": "-1"})
    check(r.getheader("electric-handle") != hc and len([m for m in body if "key" in m]) == 2,
          "log=full of the same table and where is another shape, with its rows: %s" % body)
    sql("BEGIN; UPDATE docs SET title = 'x' WHERE id = 1; INSERT INTO docs VALUES (4, 'a', 't4', 40); COMMIT")
    sql("UPDATE docs SET owner = 'b' WHERE id = 2")
    sql("UPDATE docs SET owner = 'a' WHERE id = 3")
    got, oc = read_until(h, q, hc, oc, 4)
    ops = [(m["headers"]["operation"], m["key"], m["value"]) for m in got]
    check(ops == [("update", '"public"."docs"/"1"', {"id": "1", "title": "x"}),
                  ("insert", '"public"."docs"/"4"', {"id": "4", "owner": "a", "title": "t4", "n": "40"}),
                  ("delete", '"public"."docs"/"2"', {"id": "2"}),
                  ("insert", '"public"."docs"/"3"', {"id": "3", "owner": "a", "title": "t3", "n": "30"})],
          "changes_only: an update of a row it never sent, an insert, a row moving out (delete) and one moving in "
          "(insert, whole): %s" % ops)
    st, r, body = get(h, dict(q, offset="now"))
    check(st == 200 and r.getheader("electric-handle") == hc and r.getheader("electric-offset") == oc
          and body == [{"headers": {"control": "up-to-date"}}],
          "offset=now without a handle: the shape's end, up-to-date: %s %s %s" % (st, r.getheader("electric-offset"), body))

    # subsets: rows 1 (n 10), 3 (30) and 4 (40) are in the shape now
    st, r, body = subset(h, q, hc, where="n > $1", params='{"1": "15"}', order_by="n DESC", limit="2")
    meta = (body or {}).get("metadata", {})
    check(st == 200 and r.getheader("electric-snapshot") == "true" and r.getheader("electric-handle") == hc
          and r.getheader("electric-schema") and r.getheader("electric-offset") == oc
          and r.getheader("Cache-Control") == "no-cache",
          "subset: 200 with electric-snapshot, the handle, the schema and the log's offset: %s %s" % (st, r.getheaders()))
    check([m["key"] for m in body.get("data", [])] == ['"public"."docs"/"4"', '"public"."docs"/"3"'],
          "subset: where with params, order_by and limit, inside the shape's where: %s" % body)
    check(all(isinstance(meta.get(k), str) and meta[k].isdigit() for k in ("xmin", "xmax", "database_lsn"))
          and isinstance(meta.get("xip_list"), list) and isinstance(meta.get("snapshot_mark"), int)
          and all(m["headers"] == {"operation": "insert", "relation": ["public", "docs"],
                                   "snapshot_mark": meta["snapshot_mark"]} for m in body["data"]),
          "subset: metadata (xmin, xmax, xip_list, snapshot_mark, database_lsn as decimal text) and marked rows: %s" % body)
    st, r, raw = h.request("POST", "/v1/shape?" + urllib.parse.urlencode(dict(q, handle=hc, offset=oc)),
                           json.dumps({"where": "n > $1", "params": {"1": 15}, "order_by": "\"n\" DESC NULLS LAST",
                                       "limit": 1, "offset": 1}).encode(), {"Content-Type": "application/json"})
    body = json.loads(raw) if st == 200 else raw
    check(st == 200 and [m["key"] for m in body["data"]] == ['"public"."docs"/"3"'],
          "POST subset: a JSON body, numeric params, limit and offset: %s %s" % (st, body))
    st, r, body = subset(h, q, hc, where="true --", order_by="id", limit="5")
    check(st == 200 and [m["key"] for m in body["data"]] == ['"public"."docs"/"%d"' % i for i in (1, 3, 4)],
          "subset: a comment in where cannot reach the rest of the query, rows outside the shape never come: %s" % body)
    st, r, body = subset(h, {"table": "docs", "where": "owner = 'a'"}, None, order_by="id", limit="1")
    check(st == 200 and [m["key"] for m in body["data"]] == ['"public"."docs"/"1"'],
          "subset of a log=full shape, without a handle: %s %s" % (st, body))
    for sub, why in [({"limit": "0", "order_by": "id"}, "limit"), ({"limit": "2"}, "order_by"),
                     ({"offset": "-1", "order_by": "id"}, "offset"), ({"order_by": "nope"}, "column"),
                     ({"order_by": "id; DROP TABLE docs"}, "order_by"), ({"order_by": "lower(title)"}, "column"),
                     ({"where": "nope = 1"}, "nope"), ({"where": "n > $1"}, "$1"),
                     ({"where": "n > $1", "params": '{"2": "1"}'}, "params"), ({"params": "[1"}, "params")]:
        st, r, body = subset(h, q, hc, **sub)
        msg = json.dumps(body)
        check(st == 400 and "subset" in (body or {}).get("errors", {}) and why in msg,
              "subset %s: 400 naming %s: %s %s" % (sub, why, st, body))
    # refused by Postgres itself, the same on every retry: 400, never 503 (a client retries 503 for ever)
    for sub in [{"where": "n > 1", "params": '{"1": "5"}'}, {"where": "n = $1", "params": '{"1": "99999999999"}'},
                {"where": "n / 0 = 1"}, {"where": "x.n > 1"}]:
        st, r, body = subset(h, q, hc, **sub)
        check(st == 400 and "subset" in (body or {}).get("errors", {}), "subset %s: 400: %s %s" % (sub, st, body))
    st, _, raw = h.request("GET", "/v1/shape?" + urllib.parse.urlencode(dict(q, handle=hc, offset="now"))
                           + "&subset__where=title%20%3D%20%27%FF%27")
    check(st == 400 and b"UTF-8" in raw, "subset where that is not UTF-8: 400: %s %s" % (st, raw[:120]))
    sql("UPDATE docs SET n = 41 WHERE id = 4")
    st, r, body = get(h, dict(q, handle=hc, offset=oc, subset__where="id = 1"))
    check(st == 200 and r.getheader("electric-offset") == oc,
          "subset with the client's handle and offset: it goes on from its own offset, missing nothing: %s %s"
          % (st, r.getheader("electric-offset")))
    got, oc = read_until(h, q, hc, oc, 1)
    check([(m["key"], m["value"].get("n")) for m in got] == [('"public"."docs"/"4"', "41")],
          "the change made before that subset still reaches the client: %s" % got)
    sql("CREATE VIEW docs_view AS SELECT * FROM docs")
    st, r, body = get(h, {"table": "docs_view", "offset": "-1"})
    check(st == 400 and "table" in (body or {}).get("errors", {}), "a view is not a table: 400: %s %s" % (st, body))
    st, r, body = get(h, {"table": "docs", "offset": "-1", "log": "changes_only", "where": "x.n > 1"})
    check(st == 400 and "where" in (body or {}).get("errors", {}),
          "changes_only: a where clause Postgres refuses is refused when the shape is made: %s %s" % (st, body))
    st, _, raw = h.request("POST", "/v1/shape?" + urllib.parse.urlencode(dict(q, handle=hc, offset=oc)), b"[1",
                           {"Content-Type": "application/json"})
    check(st == 400 and b"JSON" in raw, "POST subset: a body that is not a JSON object: 400: %s %s" % (st, raw))
    st, r, body = get(h, dict(q, handle="0-0", offset=oc, subset__order_by="id", subset__limit="1"))
    check(st == 409 and r.getheader("electric-handle") == hc, "subset with a stale handle: 409 naming the shape: %s" % st)
    check(sql("SELECT count(*) FROM docs").strip() == "4", "the table is untouched")


def postgres_away(binary):
    """Postgres unreachable: requests get 503 at once and weft waits out its
    backoff quietly (a request's wake once made the wait return at once, for
    ever: a core spent and gigabytes of log)."""
    import socket
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]  # nothing listens there
    w = Weft(binary, args=["--database-url", "postgresql://nobody@127.0.0.1:%d/x" % port]).start()
    h = Http(w.port)
    st, r, body = get(h, {"table": "t", "offset": "-1"})
    check(st == 503 and "reachable" in json.dumps(body), "Postgres away: 503: %s %s" % (st, body))
    with open("/proc/%d/stat" % w.proc.pid) as f:
        f0 = f.read().rsplit(")", 1)[1].split()
    time.sleep(2)
    with open("/proc/%d/stat" % w.proc.pid) as f:
        f1 = f.read().rsplit(")", 1)[1].split()
    cpu = (int(f1[11]) + int(f1[12]) - int(f0[11]) - int(f0[12])) / os.sysconf("SC_CLK_TCK")
    check(cpu < 0.5, "Postgres away: weft idles while it waits to reconnect (%.2f s of CPU in 2 s)" % cpu)
    st, r, body = get(h, {"table": "t", "offset": "-1"})
    check(st == 503, "Postgres away: still 503, answered at once: %s" % st)
    check(w.stop() == 0, "Postgres away: weft exits 0 on SIGTERM")


def main():
    binary = sys.argv[1]
    if not DB:
        sys.exit("run through tests/pg/pgtmp.py (WEFT_TEST_DATABASE_URL)")
    off_without_database(binary)
    postgres_away(binary)
    sql("CREATE TABLE items (id int PRIMARY KEY, title text, n int, note varchar(20))")
    sql("INSERT INTO items VALUES (1, 'a', 1, NULL), (2, 'b', 2, 'x'), (3, 'c', 3, 'y')")
    w = Weft(binary, args=["--database-url", DB, "--long-poll-timeout", "1s", "--log-level", "info"]).start()
    h = Http(w.port)
    check(wait_health(h), "health turns active")
    st, _, raw = h.request("GET", "/v1/health")
    check(json.loads(raw) == {"status": "active"}, "health body: %s" % raw)
    st, r, _ = h.request("OPTIONS", "/v1/shape?table=items")
    check(st == 204 and "GET" in (r.getheader("Access-Control-Allow-Methods") or ""), "OPTIONS: %s" % st)

    # the initial sync
    q = {"table": "items", "offset": "-1", "where": "n >= $1", "params[1]": "2"}
    st, r, body = get(h, q)
    check(st == 200, "initial sync: %s %s" % (st, body))
    handle, offset = r.getheader("electric-handle"), r.getheader("electric-offset")
    schema = json.loads(r.getheader("electric-schema") or "{}")
    check(handle and offset, "handle and offset headers")
    check(schema.get("id") == {"type": "int4", "pk_index": 0} and schema.get("note") == {"type": "varchar"},
          "electric-schema: %s" % schema)
    check(r.getheader("electric-up-to-date") is not None, "electric-up-to-date on a caught-up answer")
    check((r.getheader("ETag") or "").startswith('"%s:' % handle), "ETag names the handle: %s" % r.getheader("ETag"))
    check("public" in (r.getheader("Cache-Control") or ""), "Cache-Control: %s" % r.getheader("Cache-Control"))
    rows = [m for m in body if "key" in m]
    check([m["key"] for m in rows] == ['"public"."items"/"2"', '"public"."items"/"3"'], "keys: %s" % [m["key"] for m in rows])
    check(rows[0]["value"] == {"id": "2", "title": "b", "n": "2", "note": "x"}, "values as text: %s" % rows[0]["value"])
    check(rows[0]["headers"] == {"operation": "insert", "relation": ["public", "items"]}, "snapshot headers")
    check(body[-2]["headers"]["control"] == "snapshot-end" and "xmin" in body[-2]["headers"], "snapshot-end: %s" % body[-2])
    check(body[-1] == {"headers": {"control": "up-to-date"}}, "ends up-to-date")
    # the same shape: the same handle; the percent-encoded params[1] (as URLSearchParams sends it) too
    st, r2, _ = get(h, q)
    check(r2.getheader("electric-handle") == handle, "the same request: the same shape")
    st, r2, _ = h.request("GET", "/v1/shape?table=items&offset=-1&where=n%20%3E%3D%20%241&params%5B1%5D=2")
    check(st == 200 and r2.getheader("electric-handle") == handle, "params%5B1%5D is params[1]")
    st, r3, _ = get(h, dict(q, **{"params[1]": "3"}))
    check(st == 200 and r3.getheader("electric-handle") != handle, "other params: another shape")
    # columns: the primary key comes along
    st, r4, body4 = get(h, {"table": "items", "offset": "-1", "columns": "title"})
    check(st == 200 and [m for m in body4 if "key" in m][0]["value"] == {"id": "1", "title": "a"}, "columns: %s" % body4[:1])
    check(set(json.loads(r4.getheader("electric-schema"))) == {"id", "title"}, "schema of the columns")

    # catch-up and live
    st, r, body = get(h, dict(q, offset=offset, handle=handle))
    check(st == 200 and body == [{"headers": {"control": "up-to-date"}}], "catch-up at the end: up-to-date only: %s" % body)
    t0 = time.monotonic()
    st, r, body = get(h, dict(q, offset=offset, handle=handle, live="true"))
    took = time.monotonic() - t0
    check(st == 200 and body == [{"headers": {"control": "up-to-date"}}] and 0.8 <= took < 3,
          "a live read with nothing new: up-to-date after the long-poll timeout (%.2f s)" % took)
    check(r.getheader("electric-cursor"), "electric-cursor on live answers")
    threading.Timer(0.3, lambda: sql("UPDATE items SET n = 10, note = NULL WHERE id = 1; DELETE FROM items WHERE id = 3")).start()
    t0 = time.monotonic()
    st, r, body = get(h, dict(q, offset=offset, handle=handle, live="true"))
    took = time.monotonic() - t0
    ops = [(m["headers"]["operation"], m["key"]) for m in body if "key" in m]
    check(ops == [("insert", '"public"."items"/"1"'), ("delete", '"public"."items"/"3"')] and took < 0.9,
          "a live read woken by a transaction: %s in %.2f s" % (ops, took))
    ch = [m for m in body if "key" in m]
    check(ch and ch[0]["value"]["note"] is None and ch[0]["headers"]["txids"] and ch[0]["headers"]["lsn"] and
          ch[-1]["headers"].get("last") is True, "change headers: txids, lsn, last; NULL as null: %s" % ch[:1])
    check(r.getheader("electric-offset") != offset, "the offset moves on")
    st, r, body = get(h, dict(q, offset="now", handle=handle))
    check(st == 200 and body == [{"headers": {"control": "up-to-date"}}], "offset=now: %s" % body)

    # replica: default updates carry the key and what changed; full ones whole rows and old values
    seen = {}
    for mode in ("default", "full"):
        qm = {"table": "items", "offset": "-1", "replica": mode}
        st, r, _ = get(h, qm)
        seen[mode] = (qm, r.getheader("electric-handle"), r.getheader("electric-offset"))
    sql("UPDATE items SET title = 'b2' WHERE id = 2")
    for mode, (qm, hm, om) in seen.items():
        st, r, body = get(h, dict(qm, offset=om, handle=hm, live="true"))
        upd = [m for m in body if m.get("headers", {}).get("operation") == "update"]
        want = {"id": "2", "title": "b2"} if mode == "default" else {"id": "2", "title": "b2", "n": "2", "note": "x"}
        check(upd and upd[0]["value"] == want, "replica=%s: update value %s" % (mode, upd[:1]))
        if mode == "full":
            check(upd and upd[0].get("old_value") == {"title": "b"}, "replica=full: old_value: %s" % upd[:1])

    # transactions in progress when a snapshot is taken (its xip list) come through when they commit
    sql("CREATE TABLE busy (id int PRIMARY KEY, v text)")
    get(h, {"table": "busy", "offset": "-1"})  # published (and REPLICA IDENTITY FULL) before writers hold locks on it
    open_txns = []
    for k in (1, 2):
        ps = subprocess.Popen(["psql", DB, "-q"], stdin=subprocess.PIPE, text=True)
        ps.stdin.write("BEGIN; INSERT INTO busy VALUES (%d, 'in flight');\n" % k)
        ps.stdin.flush()
        open_txns.append(ps)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sql("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'").strip() != "2":
        time.sleep(0.05)
    sql("INSERT INTO busy VALUES (100, 'other')")  # committed after them: the snapshot's xmax passes them, so they are listed in flight
    st, r, body = get(h, {"table": "busy", "offset": "-1", "where": "v = 'in flight'"})
    bh, bo = r.getheader("electric-handle"), r.getheader("electric-offset")
    xip = [m for m in body if m.get("headers", {}).get("control") == "snapshot-end"][0]["headers"]["xip_list"]
    check(len(xip) == 2, "both open transactions are in the snapshot's xip list: %s" % xip)
    for ps in open_txns:
        ps.stdin.write("COMMIT;\n")
        ps.stdin.close()
        ps.wait()
    got = set()
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        st, r, body = get(h, {"table": "busy", "offset": bo, "handle": bh, "live": "true", "where": "v = 'in flight'"})
        bo = r.getheader("electric-offset")
        got |= {m["key"] for m in body if "key" in m}
    check(len(got) == 2, "both in-flight inserts reach the shape after they commit: %s" % got)

    # errors
    for params, what in [({"offset": "-1"}, "table"), ({"table": "nope", "offset": "-1"}, "table"),
                         ({"table": "items", "offset": "-1", "where": "id = ANY(ARRAY[1])"}, "where"),
                         ({"table": "items", "offset": "-1", "where": "n = $1"}, "where"),
                         ({"table": "items", "offset": "-1", "where": "nope = 1"}, "where"),
                         ({"table": "items", "offset": "-1", "columns": "nope"}, "columns"),
                         (dict(q, offset="garbage", handle=handle), "offset"),
                         ({"table": "items", "offset": offset}, "handle"),
                         ({"table": "items", "offset": "-1", "replica": "half"}, "replica"),
                         ({"table": "items", "offset": "-1", "log": "half"}, "log"),
                         ({"table": "items", "offset": "-1", "columns": "a" * 1500}, "columns"),
                         ({"table": "items", "offset": "-1", "where": "true OFFSET 1"}, "where"),
                         ({"table": "items", "offset": "-1", "where": "pg_temp.lower(title) = 'a'"}, "where")]:
        st, r, body = get(h, params)
        check(st == 400 and body.get("message") == "Invalid request" and what in body.get("errors", {}),
              "400 for %s: %s %s" % (params, st, body))
    st, _, raw = h.request("GET", "/v1/shape?table=items&offset=-1&where=title%20%3D%20%27%FF%27")
    check(st == 400 and b"UTF-8" in raw, "a where clause that is not UTF-8: 400: %s %s" % (st, raw[:100]))
    st, r, body = get(h, {"table": "items", "where": "n > 100", "offset": offset, "handle": handle})
    check(st == 409 and body == [{"headers": {"control": "must-refetch"}}] and r.getheader("electric-handle"),
          "a handle of another shape: 409 must-refetch with the new handle: %s %s" % (st, body))
    st, _, body = get(h, {"table": "busy", "handle": handle}, method="DELETE")
    check(st == 404, "DELETE naming another table: 404: %s" % st)
    st, _, body = get(h, {"table": "items", "handle": handle}, method="DELETE")
    check(st == 202, "DELETE: %s" % st)
    st, r, body = get(h, dict(q, offset=offset, handle=handle))
    check(st == 409, "a deleted shape's handle: 409: %s" % st)
    st, r, _ = get(h, q)
    check(st == 200 and r.getheader("electric-handle") != handle, "after DELETE: a new shape")
    st, _, body = get(h, {"table": "items"}, method="PUT")
    check(st == 405, "PUT: 405: %s" % st)
    changes_only_and_subsets(h)
    row_keys(h)
    rc = w.stop()
    check(rc == 0, "weft exits 0 on SIGTERM: %s" % rc)

    # capability tokens
    secret = os.urandom(32).hex().encode()
    w2 = Weft(binary, args=["--database-url", DB, "--shape-slot", "weft_slot_auth", "--auth-secret-file", "/dev/null"])
    path = os.path.join(w2.tmp, "secret")
    open(path, "wb").write(secret)
    w2.args[-1] = path
    w2.start()
    h2 = Http(w2.port)
    check(wait_health(h2), "tokens: /v1/health needs none")

    def tok(caps):
        b = lambda v: base64.urlsafe_b64encode(v).rstrip(b"=").decode()  # noqa: E731
        head = b(json.dumps({"alg": "HS256"}).encode()) + "." + b(json.dumps({"sub": "s", "exp": int(time.time()) + 600, "caps": caps}).encode())
        return head + "." + b(hmac.new(secret, head.encode(), hashlib.sha256).digest())
    st, _, _ = get(h2, {"table": "items", "offset": "-1"})
    check(st == 401, "tokens: none: 401")
    st, _, body = get(h2, {"table": "items", "offset": "-1"}, {"Authorization": "Bearer " + tok({"/v1/shape/other": ["read"]})})
    check(st == 403, "tokens: another table: 403: %s" % st)
    st, _, _ = get(h2, {"table": "items", "offset": "-1"}, {"Authorization": "Bearer " + tok({"/v1/shape/items": ["read"]})})
    check(st == 200, "tokens: read on /v1/shape/items: %s" % st)
    w2.stop()
    sql("SELECT pg_drop_replication_slot('weft_slot_auth')")
    check.finish(w)


if __name__ == "__main__":
    main()
