"""`postern stats`: figures from the trace store after a small mixed
workload — messages accepted per listener, refusals per rule and listener,
authentication failures per account and address, the busiest accounts and
addresses, TLS versions and ciphers, delivery results and delays — as JSON
and as text, over time windows."""

import base64
import json
import re
import tempfile
import time

import pytest

from conftest import USERS, Postern, Sink, make_dir, wait_for


def stats(p, *args):
    return p.postern("stats", "-c", p.conf, *args)


def stats_json(p, *args):
    r = stats(p, "--json", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def counts(lst):
    return {e["key"]: e["count"] for e in lst}


def byte_counts(lst):
    return {e["key"]: e["bytes"] for e in lst}


def make_msg(sender, subject, mid, lines=1):
    body = "".join(f"line {i} of a message from {sender}\r\n" for i in range(lines))
    return (f"From: <{sender}>\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n\r\n"
            f"{body}").encode()


def queued_qid(reply):
    code, text = reply
    assert code == 250, reply
    return re.search(r"queued as (\S+)", text.decode()).group(1)


def send(c, sender, rcpts, msg):
    assert c.mail(sender)[0] == 250
    for r in rcpts:
        assert c.rcpt(r)[0] == 250
    return queued_qid(c.data(msg))


class Workload:
    pass


@pytest.fixture(scope="module")
def wl(workdir, pki, sasldb):
    """alice sends two messages (one with her client certificate), bob one
    over submission; one recipient bounces, one is deferred; a relay is
    denied on the MX listener, bob mistypes his password once, and someone
    tries MAIL without AUTH on submission."""
    sink = Sink(workdir, extra=["--fail-rcpt", "bounce@example.net:550",
                                "later@example.net:450"]).start()
    base = make_dir(tempfile.mkdtemp(prefix="p-stats-", dir=workdir))
    p = Postern(base, pki, sasldb, downstream=f"smtp://127.0.0.1:{sink.port}",
                listen_extra={"smtps": 'client_cert = "optional"'}).start()
    w = Workload()
    w.p, w.sink = p, sink
    w.t0 = int(time.time())
    try:
        m1 = make_msg("alice@mx.test", "one", "<stats-1@client.test>", 3)
        m2 = make_msg("alice@mx.test", "two", "<stats-2@client.test>", 40)
        m3 = make_msg("bob@mx.test", "three", "<stats-3@client.test>", 10)
        w.sizes = {"m1": len(m1), "m2": len(m2), "m3": len(m3)}
        with p.smtps(cert="client") as c:
            c.login("alice", USERS["alice"])
            w.q1 = send(c, "alice@mx.test", ["ok1@example.net"], m1)
        with p.smtps() as c:
            c.login("alice", USERS["alice"])
            w.q2 = send(c, "alice@mx.test", ["ok2@example.net", "bounce@example.net"], m2)
        with p.submission() as c:
            c.login("bob", USERS["bob"])
            w.q3 = send(c, "bob@mx.test", ["ok3@example.net", "later@example.net"], m3)

        # Relay denied on the MX listener.
        c = p.raw("mx")
        c.reply()
        c.cmd("EHLO peer.test")
        assert c.cmd("STARTTLS")[0] == 220
        c.starttls()
        c.cmd("EHLO peer.test")
        assert c.cmd("MAIL FROM:<peer@example.net>")[0] == 250
        assert c.cmd("RCPT TO:<someone@elsewhere.example>")[0] == 550
        c.close()
        # MAIL without AUTH on submission.
        c = p.raw("submission")
        c.reply()
        c.cmd("EHLO client.test")
        assert c.cmd("STARTTLS")[0] == 220
        c.starttls()
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<bob@mx.test>")[0] == 530
        c.close()
        # bob's wrong password.
        c = p.raw("smtps")
        c.reply()
        c.cmd("EHLO client.test")
        code, lines = c.cmd("AUTH PLAIN " + base64.b64encode(b"\0bob\0wrong").decode())
        assert code == 535, lines
        c.close()
        w.t1 = int(time.time())

        def settled():
            st = stats_json(p)
            return st if (st["delivered"] >= 3 and st["bounced"] >= 1 and st["deferred"] >= 1
                          and st["rejects"] >= 3) else None
        w.st = wait_for(settled, 20, interval=0.2, what="the workload in the statistics")
        yield w
    finally:
        rc = p.stop()
        sink.stop()
        log = p.logtext()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in log, f"{marker} in {p.log_path}"
        assert rc == 0, f"posternd exited with status {rc}"


def test_totals(wl):
    st = wl.st
    s = wl.sizes
    assert st["messages"] == 3, st
    assert st["bytes"] == s["m1"] + s["m2"] + s["m3"], st
    assert st["recipients"] == 5, st
    assert st["rejects"] == 3, st
    assert (st["delivered"], st["bounced"], st["deferred"], st["queued"]) == (3, 1, 1, 0), st
    assert st["since"] is None and st["until"] is None


def test_accepted_by_listener(wl):
    st, s = wl.st, wl.sizes
    assert counts(st["accepted_by_listener"]) == {"smtps": 2, "submission": 1}, st
    assert byte_counts(st["accepted_by_listener"]) == {"smtps": s["m1"] + s["m2"],
                                                       "submission": s["m3"]}, st


def test_rejected_by_rule_and_listener(wl):
    st = wl.st
    assert counts(st["rejected_by_rule"]) == {"relay_denied": 1, "auth_required": 1,
                                              "auth_failed": 1}, st
    assert counts(st["rejected_by_listener"]) == {"mx": 1, "submission": 1, "smtps": 1}, st


def test_auth_failures(wl):
    st = wl.st
    assert counts(st["auth_failures_by_account"]) == {"bob": 1}, st
    assert counts(st["auth_failures_by_ip"]) == {"127.0.0.1": 1}, st


def test_top_accounts_and_ips(wl):
    st, s = wl.st, wl.sizes
    assert [(e["key"], e["count"]) for e in st["top_accounts"]] == [("alice", 2), ("bob", 1)], st
    assert byte_counts(st["top_accounts"]) == {"alice": s["m1"] + s["m2"], "bob": s["m3"]}
    assert [e["key"] for e in st["top_accounts_by_bytes"]] == ["alice", "bob"], st
    assert [(e["key"], e["count"]) for e in st["top_ips"]] == [("127.0.0.1", 3)], st
    assert st["top_ips_by_bytes"][0]["bytes"] == st["bytes"]
    st1 = stats_json(wl.p, "--top", "1")
    assert [e["key"] for e in st1["top_accounts"]] == ["alice"], st1
    # --top limits the per-account and per-address lists, not the others.
    assert len(st1["rejected_by_rule"]) == 3, st1


def test_tls_seen(wl):
    st = wl.st
    assert counts(st["tls_versions"]) == {"TLSv1.3": 3}, st
    assert sum(counts(st["tls_ciphers"]).values()) == 3, st
    assert all(k and k.startswith("TLS_") for k in counts(st["tls_ciphers"])), st


def test_delivery_delays(wl):
    st = wl.st
    assert st["delay_median"] is not None and st["delay_p99"] is not None, st
    assert 0 <= st["delay_median"] <= 10, st
    assert st["delay_median"] <= st["delay_p99"] <= 10, st


def test_trace_shows_bounced_and_deferred_recipients(wl):
    r = wl.p.postern("trace", "-c", wl.p.conf, "--json", "--qid", wl.q2)
    assert r.returncode == 0, r.stdout + r.stderr
    rc = {x["rcpt"]: x for x in json.loads(r.stdout)[0]["rcpts"]}
    assert rc["ok2@example.net"]["status"] == "delivered"
    assert rc["bounce@example.net"]["status"] == "bounced", rc
    assert rc["bounce@example.net"]["reply"].startswith("550"), rc
    r = wl.p.postern("trace", "-c", wl.p.conf, "--json", "--qid", wl.q3)
    rc = {x["rcpt"]: x for x in json.loads(r.stdout)[0]["rcpts"]}
    assert rc["ok3@example.net"]["status"] == "delivered"
    assert rc["later@example.net"]["status"] == "deferred", rc
    assert rc["later@example.net"]["reply"].startswith("450"), rc


def test_readable_output(wl):
    st = wl.st
    r = stats(wl.p)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert re.search(rf"accepted\s+3 messages, {st['bytes']} bytes, 5 recipients", out), out
    assert re.search(r"refused\s+3 attempts", out), out
    assert re.search(r"delivery\s+3 delivered, 1 deferred, 1 bounced, 0 waiting", out), out
    assert re.search(rf"median {st['delay_median']} s", out), out
    for title, key, n in [("accepted by listener", "smtps", 2),
                          ("accepted by listener", "submission", 1),
                          ("refused by rule", "relay_denied", 1),
                          ("refused by rule", "auth_failed", 1),
                          ("authentication failures by account", "bob", 1),
                          ("authentication failures by address", "127.0.0.1", 1),
                          ("top accounts by messages", "alice", 2),
                          ("top client addresses by messages", "127.0.0.1", 3),
                          ("TLS versions", "TLSv1.3", 3)]:
        section = out.split("\n" + title + "\n", 1)
        assert len(section) == 2, (title, out)
        body = section[1].split("\n\n", 1)[0]
        assert re.search(rf"^\s+{n}\s+(\d+ bytes\s+)?{re.escape(key)}$", body, re.M), (title, body)
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_windows(wl):
    now = int(time.time())
    st = stats_json(wl.p, "--since", f"@{now + 3600}")
    assert st["messages"] == 0 and st["rejects"] == 0 and st["recipients"] == 0, st
    assert st["delivered"] == 0 and st["delay_median"] is None, st
    assert st["accepted_by_listener"] == [] and st["rejected_by_rule"] == [], st
    assert st["since"] is not None
    r = stats(wl.p, "--since", f"@{now + 3600}")
    assert r.returncode == 0 and re.search(r"accepted\s+0 messages", r.stdout), r.stdout
    st = stats_json(wl.p, "--until", f"@{wl.t0 - 1}")
    assert st["messages"] == 0 and st["rejects"] == 0, st
    st = stats_json(wl.p, "--since", f"@{wl.t0 - 1}", "--until", f"@{wl.t1 + 2}")
    assert st["messages"] == 3 and st["rejects"] == 3 and st["delivered"] == 3, st
    st = stats_json(wl.p, "--since", "1h")
    assert st["messages"] == 3, st


def test_usage_errors(wl):
    for args in (["--since", "yesterday"], ["--until", "2024-02-30"], ["--top", "0"],
                 ["--bogus"], ["extra"]):
        r = stats(wl.p, *args)
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
    r = wl.p.postern("stats", "--help")
    assert r.returncode == 0 and "--since" in r.stdout


def test_empty_store(make_postern):
    p = make_postern()
    st = stats_json(p)
    assert st["messages"] == 0 and st["rejects"] == 0 and st["delay_median"] is None, st
    r = stats(p)
    assert r.returncode == 0 and re.search(r"accepted\s+0 messages", r.stdout), r.stdout
