"""Traceability end to end: every accepted message has a record in the
trace store and a signed X-Postern-Trace header; `postern trace` finds the
record by every lookup key, tells an authentic header from a forged, altered,
missing or foreign one (also inside an ARF report), survives key rotation;
refusals are recorded; a trace store that cannot be written makes Postern
tempfail rather than accept untraced mail; old records can be pruned."""

import base64
import calendar
import hashlib
import hmac
import json
import os
import re
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from email import message_from_bytes
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from conftest import (HOSTNAME, POSTERN, USERS, Postern, RawClient, Sink, make_dir,
                      untraced, wait_for)

EXIT_FOUND, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_NOT_AUTHENTIC, EXIT_DB = 0, 1, 2, 3, 4


# ---- helpers ------------------------------------------------------------------

def trace(p, *args):
    """`postern trace -c <conf> ARGS`."""
    return p.postern("trace", "-c", p.conf, *args)


def trace_json(p, *args):
    r = trace(p, "--json", *args)
    data = json.loads(r.stdout) if r.stdout.strip() else None
    return r, data


def stats_json(p, *args):
    r = p.postern("stats", "-c", p.conf, "--json", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def counts(lst):
    return {e["key"]: e["count"] for e in lst}


def make_msg(sender, subject, msgid, to="someone@example.net"):
    return (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: {msgid}\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n"
            f"Hello from {sender}.\r\nSecond line.\r\n").encode()


def queued_qid(reply):
    code, text = reply
    assert code == 250, reply
    if isinstance(text, bytes):
        text = text.decode()
    elif isinstance(text, list):
        text = "\n".join(text)
    m = re.search(r"queued as ([0-9A-Za-z]+)", text)
    assert m, reply
    return m.group(1)


def strip_sink_line(m):
    """The message as relayed: the sink's file minus its X-Sink-Envelope line."""
    assert m.startswith(b"X-Sink-Envelope:"), m[:80]
    return m.split(b"\r\n", 1)[1]


def find_at_sink(sink, msgid, timeout=15):
    def look():
        for m in sink.messages():
            if f"Message-ID: {msgid}".encode() in m:
                return m
        return None
    return strip_sink_line(wait_for(look, timeout, what=f"{msgid} at the sink"))


TRACE_RE = re.compile(rb"^X-Postern-Trace:(.*?)\r\n(?![ \t])", re.M | re.S | re.I)


def trace_header(msg):
    """(the whole header field with its CRLF, {tag: value})."""
    m = TRACE_RE.search(msg)
    assert m, msg
    tags = {}
    for part in re.sub(rb"\s+", b"", m.group(1)).split(b";"):
        if part:
            k, v = part.split(b"=", 1)
            tags[k.decode()] = v.decode()
    return m.group(0), tags


def received_header(msg):
    """Our Received header (the first one), unfolded."""
    m = re.search(rb"^Received:(.*?)\r\n(?![ \t])", msg, re.M | re.S)
    assert m, msg
    return re.sub(rb"\r\n[ \t]+", b" ", m.group(0)).decode()


def read_keys(path):
    keys = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                kid, secret = line.split(None, 1)
                keys[kid] = bytes.fromhex(secret)
    return keys


def norm_msgid(value, version=2):
    """Message-ID normalised as trace/header.c says. v=2: whitespace
    dropped, then the last '<' before the first '>' up to that '>' (all of
    it without a '<'); v=1: unfolded, whitespace runs as one SP, trimmed."""
    if version == 1:
        return re.sub(r"[ \t]+", " ", value.replace("\r", "").replace("\n", "")).strip()
    v = re.sub(r"[ \t\r\n]", "", value)
    m = re.search(r"<[^<>]*>", v)
    if m:
        return m.group(0)
    return v[v.rindex("<"):] if "<" in v else v


def make_trace_header(key, kid, gate, trace_id, t, message_id, version=2):
    """X-Postern-Trace as documented in trace/header.c."""
    data = (f"v{version}\n{gate}\n{trace_id}\n{t}\n{kid}\n"
            f"{norm_msgid(message_id, version)}").encode()
    mac = base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode()
    return (f"X-Postern-Trace: v={version}; g={gate}; id={trace_id}; t={t};\r\n"
            f"\tk={kid}; m={mac}\r\n").encode()


def replace_trace_header(msg, new_header):
    whole, _ = trace_header(msg)
    return msg.replace(whole, new_header, 1)


def write_file(base, name, data):
    path = os.path.join(base, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def wait_delivered(p, qid, timeout=15):
    def done():
        r, data = trace_json(p, "--qid", qid)
        if r.returncode == 0 and data and all(x["status"] == "delivered" for x in data[0]["rcpts"]):
            return data[0]
        return None
    return wait_for(done, timeout, interval=0.1, what=f"{qid} delivered in the trace store")


class SNIClient(RawClient):
    """RawClient over implicit TLS that sends SNI (RawClient cannot)."""

    def __init__(self, postern, server_hostname, timeout=10):
        self.p = postern
        sock = socket.create_connection(("127.0.0.1", postern.ports["smtps"]), timeout=timeout)
        self.sock = postern.tls_context().wrap_socket(sock, server_hostname=server_hostname)
        self.buf = b""


def raw_send(c, sender, rcpts, msg):
    """Sends one message on an authenticated RawClient; returns the qid."""
    code, lines = c.cmd(f"MAIL FROM:<{sender}>")
    assert code == 250, lines
    for r in rcpts:
        code, lines = c.cmd(f"RCPT TO:<{r}>")
        assert code == 250, lines
    code, lines = c.cmd("DATA")
    assert code == 354, lines
    c.send(msg + b".\r\n")
    return queued_qid(c.reply())


def checked_stop(p):
    rc = p.stop()
    log = p.logtext()
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in log, f"{marker} in {p.log_path}"
    assert rc == 0, f"posternd exited with status {rc}"


# ---- the shared workload: alice (with a client certificate), bob, carol -------

class Workload:
    pass


@pytest.fixture(scope="module")
def wl(workdir, pki, sasldb):
    """One gate, three messages from three accounts, all delivered."""
    sink = Sink(workdir).start()
    base = make_dir(tempfile.mkdtemp(prefix="p-trace-", dir=workdir))
    p = Postern(base, pki, sasldb, downstream=f"smtp://127.0.0.1:{sink.port}",
                listen_extra={"smtps": 'client_cert = "optional"'}).start()
    w = Workload()
    w.p, w.sink, w.pki, w.base = p, sink, pki, base
    tag = uuid.uuid4().hex[:12]
    w.t0 = int(time.time())
    w.msgs = {}
    try:
        # alice: implicit TLS with the client certificate, AUTH PLAIN (smtplib's choice)
        mid = f"<alice-{tag}@client.test>"
        rcpts = ["a1@example.net", "shared@example.net"]
        msg = make_msg("alice@mx.test", "from alice", mid)
        c = p.smtps(cert="client")
        c.ehlo("host-a.test")
        c.login("alice", USERS["alice"])
        port = c.sock.getsockname()[1]
        cipher = c.sock.cipher()[0]
        c.mail("alice@mx.test")
        for r in rcpts:
            assert c.rcpt(r)[0] == 250
        qid = queued_qid(c.data(msg))
        c.quit()
        w.msgs["alice"] = dict(qid=qid, mid=mid, rcpts=rcpts, msg=msg, port=port, cipher=cipher,
                               sender="alice@mx.test", listener="smtps", helo="host-a.test",
                               mech="PLAIN")

        # bob: submission with STARTTLS, no certificate, AUTH LOGIN
        mid = f"<bob-{tag}@client.test>"
        rcpts = ["b1@example.net"]
        msg = make_msg("bob@mx.test", "from bob", mid)
        c = p.submission()
        c.user, c.password = "bob", USERS["bob"]
        code, resp = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
        assert code == 235, resp
        port = c.sock.getsockname()[1]
        cipher = c.sock.cipher()[0]
        c.mail("bob@mx.test")
        for r in rcpts:
            assert c.rcpt(r)[0] == 250
        qid = queued_qid(c.data(msg))
        c.quit()
        w.msgs["bob"] = dict(qid=qid, mid=mid, rcpts=rcpts, msg=msg, port=port, cipher=cipher,
                             sender="bob@mx.test", listener="submission", helo="client.test",
                             mech="LOGIN")

        # carol@example.org: implicit TLS with SNI, no certificate, AUTH PLAIN by hand
        mid = f"<carol-{tag}@client.test>"
        rcpts = ["c1@example.com", "shared@example.net", "c2@example.com"]
        msg = make_msg("carol@example.org", "from carol", mid)
        c = SNIClient(p, HOSTNAME)
        assert c.reply()[0] == 220
        assert c.cmd("EHLO host-c.test")[0] == 250
        tok = base64.b64encode(b"\0carol@example.org\0" + USERS["carol@example.org"].encode())
        code, lines = c.cmd("AUTH PLAIN " + tok.decode())
        assert code == 235, lines
        port = c.sock.getsockname()[1]
        cipher = c.sock.cipher()[0]
        qid = raw_send(c, "carol@example.org", rcpts, msg)
        c.cmd("QUIT")
        c.close()
        w.msgs["carol@example.org"] = dict(qid=qid, mid=mid, rcpts=rcpts, msg=msg, port=port,
                                           cipher=cipher, sender="carol@example.org",
                                           listener="smtps", helo="host-c.test", mech="PLAIN",
                                           sni=HOSTNAME)
        w.t1 = int(time.time())
        for acct, info in w.msgs.items():
            info["delivered"] = find_at_sink(sink, info["mid"])
            info["record"] = wait_delivered(p, info["qid"])
        yield w
    finally:
        try:
            checked_stop(p)
        finally:
            sink.stop()


def record_for(data, qid):
    recs = [r for r in data if r["qid"] == qid]
    assert len(recs) == 1, data
    return recs[0]


def qids(data):
    return sorted(r["qid"] for r in data or [])


# ---- the record and every lookup key -----------------------------------------

@pytest.mark.parametrize("acct", ["alice", "bob", "carol@example.org"])
def test_record_fields(wl, acct, pki):
    info = wl.msgs[acct]
    r, data = trace_json(wl.p, "--qid", info["qid"])
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert len(data) == 1
    rec = data[0]
    assert rec["qid"] == info["qid"]
    assert re.fullmatch(r"[a-z2-7]{26}", rec["trace_id"]), rec
    assert rec["account"] == acct
    assert rec["listener"] == info["listener"]
    assert rec["client_ip"] == "127.0.0.1"
    assert rec["client_port"] == info["port"]
    assert rec["helo"] == info["helo"]
    assert rec["tls_version"] == "TLSv1.3"
    assert rec["tls_cipher"] == info["cipher"]
    assert rec["tls_sni"] == info.get("sni")
    assert rec["sasl_mech"] == info["mech"]
    assert rec["mail_from"] == info["sender"]
    assert sorted(x["rcpt"] for x in rec["rcpts"]) == sorted(info["rcpts"])
    assert rec["message_id"] == info["mid"]
    assert rec["size"] == len(info["msg"])
    # The record's time lies within the workload's.
    rt = calendar.timegm(time.strptime(rec["time"], "%Y-%m-%dT%H:%M:%SZ"))
    assert wl.t0 <= rt <= wl.t1 + 1, (rec["time"], wl.t0, wl.t1)
    if acct == "alice":
        assert rec["cert_fp"] == pki.fingerprint("client")
        assert "alice client" in rec["cert_subject"], rec
        assert "Postern Test CA" in rec["cert_issuer"], rec
    else:
        assert rec["cert_fp"] is None and rec["cert_subject"] is None
        assert rec["cert_issuer"] is None
    for x in rec["rcpts"]:
        assert x["status"] == "delivered", rec
        assert x["reply"] and x["reply"].startswith("250"), rec
        assert x["relay"] == f"smtp://127.0.0.1:{wl.sink.port}", rec
        assert x["time"], rec


@pytest.mark.parametrize("acct", ["alice", "bob", "carol@example.org"])
def test_body_sha256_is_the_message_as_relayed(wl, acct):
    info = wl.msgs[acct]
    rec = info["record"]
    assert rec["body_sha256"] == hashlib.sha256(info["delivered"]).hexdigest()


@pytest.mark.parametrize("acct", ["alice", "bob", "carol@example.org"])
def test_find_by_trace_id_from_delivered_header(wl, acct):
    info = wl.msgs[acct]
    _, tags = trace_header(info["delivered"])
    assert tags["g"] == HOSTNAME and tags["v"] == "2" and tags["k"] == "k1"
    r, data = trace_json(wl.p, "--trace-id", tags["id"])
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert qids(data) == [info["qid"]]
    assert data[0]["trace_id"] == tags["id"]
    # The header's time is the record's.
    assert data[0]["time"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(tags["t"])))


@pytest.mark.parametrize("acct", ["alice", "bob", "carol@example.org"])
def test_find_by_message_id(wl, acct):
    info = wl.msgs[acct]
    for form in (info["mid"], info["mid"].strip("<>")):
        r, data = trace_json(wl.p, "--message-id", form)
        assert r.returncode == EXIT_FOUND, (form, r.stdout, r.stderr)
        assert qids(data) == [info["qid"]]


@pytest.mark.parametrize("acct", ["alice", "bob", "carol@example.org"])
def test_find_by_account(wl, acct):
    info = wl.msgs[acct]
    r, data = trace_json(wl.p, "--account", acct)
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert qids(data) == [info["qid"]]
    # No case, as the help says.
    r, data = trace_json(wl.p, "--account", acct.upper())
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert qids(data) == [info["qid"]]


@pytest.mark.parametrize("acct", ["alice", "bob", "carol@example.org"])
def test_find_by_sender(wl, acct):
    info = wl.msgs[acct]
    r, data = trace_json(wl.p, "--sender", info["sender"])
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert qids(data) == [info["qid"]]
    r, data = trace_json(wl.p, "--sender", info["sender"].upper())
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert qids(data) == [info["qid"]]


def test_find_by_rcpt(wl):
    m = wl.msgs
    for rcpt, who in [("a1@example.net", ["alice"]), ("b1@example.net", ["bob"]),
                      ("c2@example.com", ["carol@example.org"]),
                      ("shared@example.net", ["alice", "carol@example.org"]),
                      ("SHARED@Example.NET", ["alice", "carol@example.org"])]:
        r, data = trace_json(wl.p, "--rcpt", rcpt)
        assert r.returncode == EXIT_FOUND, (rcpt, r.stdout, r.stderr)
        assert qids(data) == sorted(m[a]["qid"] for a in who), rcpt
    r, data = trace_json(wl.p, "--rcpt", "nobody@example.net")
    assert r.returncode == EXIT_NOT_FOUND and data == [], r.stdout + r.stderr


def test_find_by_ip_and_cidr(wl):
    everyone = sorted(i["qid"] for i in wl.msgs.values())
    for ip in ("127.0.0.1", "127.0.0.0/8", "127.0.0.1/32", "0.0.0.0/0", "::ffff:127.0.0.1"):
        r, data = trace_json(wl.p, "--ip", ip)
        assert r.returncode == EXIT_FOUND, (ip, r.stdout, r.stderr)
        assert qids(data) == everyone, ip
    for ip in ("10.0.0.0/8", "127.0.0.2", "128.0.0.0/1", "2001:db8::/32"):
        r, data = trace_json(wl.p, "--ip", ip)
        assert r.returncode == EXIT_NOT_FOUND, (ip, r.stdout, r.stderr)
        assert data == [], ip


def test_find_by_cert_fingerprint(wl, pki):
    fp = pki.fingerprint("client")
    colons = ":".join(fp[i:i + 2] for i in range(0, 64, 2)).upper()
    for form in (fp, colons):
        r, data = trace_json(wl.p, "--cert", form)
        assert r.returncode == EXIT_FOUND, (form, r.stdout, r.stderr)
        assert qids(data) == [wl.msgs["alice"]["qid"]]
    r, data = trace_json(wl.p, "--cert", pki.fingerprint("rogue"))
    assert r.returncode == EXIT_NOT_FOUND and data == [], r.stdout + r.stderr


def test_find_by_time_range(wl):
    everyone = sorted(i["qid"] for i in wl.msgs.values())
    since, until = f"@{wl.t0 - 1}", f"@{wl.t1 + 2}"
    r, data = trace_json(wl.p, "--since", since, "--until", until)
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert qids(data) == everyone
    r, data = trace_json(wl.p, "--since", since)
    assert r.returncode == EXIT_FOUND and qids(data) == everyone
    # An ISO time (UTC) and a time ago work as well.
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wl.t0 - 1))
    r, data = trace_json(wl.p, "--since", iso)
    assert r.returncode == EXIT_FOUND and qids(data) == everyone, r.stdout + r.stderr
    r, data = trace_json(wl.p, "--since", "1h")
    assert r.returncode == EXIT_FOUND and qids(data) == everyone, r.stdout + r.stderr
    # Windows that hold none of them.
    r, data = trace_json(wl.p, "--until", f"@{wl.t0 - 1}")
    assert r.returncode == EXIT_NOT_FOUND and data == [], r.stdout + r.stderr
    r, data = trace_json(wl.p, "--since", f"@{wl.t1 + 3600}")
    assert r.returncode == EXIT_NOT_FOUND and data == [], r.stdout + r.stderr


def test_find_by_combination(wl):
    m = wl.msgs
    r, data = trace_json(wl.p, "--account", "alice", "--rcpt", "shared@example.net")
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert qids(data) == [m["alice"]["qid"]]
    r, data = trace_json(wl.p, "--account", "carol@example.org", "--rcpt", "shared@example.net",
                         "--ip", "127.0.0.0/8", "--since", f"@{wl.t0 - 1}")
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert qids(data) == [m["carol@example.org"]["qid"]]
    # All must match: bob never wrote to shared@.
    r, data = trace_json(wl.p, "--account", "bob", "--rcpt", "shared@example.net")
    assert r.returncode == EXIT_NOT_FOUND and data == [], r.stdout + r.stderr
    r, data = trace_json(wl.p, "--account", "alice", "--cert", wl.pki.fingerprint("client"),
                         "--sender", "alice@mx.test", "--message-id", m["alice"]["mid"])
    assert r.returncode == EXIT_FOUND and qids(data) == [m["alice"]["qid"]]
    r, data = trace_json(wl.p, "--account", "bob", "--cert", wl.pki.fingerprint("client"))
    assert r.returncode == EXIT_NOT_FOUND and data == []


def test_readable_output(wl):
    info = wl.msgs["alice"]
    r = trace(wl.p, "--qid", info["qid"])
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    out = r.stdout
    assert info["qid"] in out
    assert re.search(r"account\s+alice\b", out), out
    assert "127.0.0.1" in out and "TLSv1.3" in out
    assert wl.pki.fingerprint("client") in out
    assert info["mid"] in out
    assert "delivered" in out
    assert "1 record" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_not_found_and_invalid_input(wl):
    r = trace(wl.p, "--qid", "AAAAAAAAAAAAAAAA")
    assert r.returncode == EXIT_NOT_FOUND, r.stdout + r.stderr
    assert "no matching record" in r.stdout
    r, data = trace_json(wl.p, "--account", "mallory")
    assert r.returncode == EXIT_NOT_FOUND and data == []
    for args in (["--bogus-option"], [], ["--ip", "not-an-address"], ["--ip", "127.0.0.1/33"],
                 ["--cert", "zz"], ["--since", "yesterday"], ["--until", "2024-13-01"],
                 ["--qid", "X", "unexpected"], ["--limit", "0"], ["--older-than", "1d"]):
        r = trace(wl.p, *args)
        assert r.returncode == EXIT_USAGE, (args, r.returncode, r.stdout, r.stderr)
    r = wl.p.postern("trace", "--help")
    assert r.returncode == 0 and "--message" in r.stdout


def test_limit_lists_newest_first(wl):
    r, data = trace_json(wl.p, "--limit", "2")
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert len(data) == 2
    r, data = trace_json(wl.p, "--limit", "10")
    assert r.returncode == EXIT_FOUND and len(data) == 3
    times = [d["time"] for d in data]
    assert times == sorted(times, reverse=True)


# ---- the Received header and the account -------------------------------------

def test_received_does_not_name_account_by_default(wl):
    for acct, info in wl.msgs.items():
        rcv = received_header(info["delivered"])
        assert f"id {info['qid']}" in rcv, rcv
        assert "authenticated as" not in rcv, rcv
        local = acct.split("@")[0]
        assert local not in rcv, rcv
    assert wl.pki.fingerprint("client") in received_header(wl.msgs["alice"]["delivered"])


def test_received_names_account_with_show_account(make_postern, sink):
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}", trace="show_account = true")
    with p.smtps() as c:
        c.login("carol@example.org", USERS["carol@example.org"])
        c.sendmail("carol@example.org", ["x@example.net"],
                   make_msg("carol@example.org", "shown", "<shown@client.test>"))
    m = strip_sink_line(sink.wait_messages(1)[0])
    rcv = received_header(m)
    assert "authenticated as carol@example.org" in rcv, rcv
    r, data = trace_json(p, "--account", "carol@example.org")
    assert r.returncode == EXIT_FOUND and data[0]["message_id"] == "<shown@client.test>"


# ---- postern trace --message ---------------------------------------------------

def check_message(wl, name, data, *extra):
    path = write_file(wl.base, name, data)
    return trace(wl.p, "--message", path, *extra)


def test_message_authentic_names_sender(wl):
    info = wl.msgs["alice"]
    r = check_message(wl, "alice.eml", info["delivered"])
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert "authentic" in r.stdout
    assert info["qid"] in r.stdout
    assert re.search(r"account\s+alice\b", r.stdout), r.stdout
    r = check_message(wl, "alice.eml", info["delivered"], "--json")
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "valid"
    assert out["message_id"] == info["mid"]
    assert out["record"]["qid"] == info["qid"]
    assert out["record"]["account"] == "alice"
    assert out["record"]["cert_fp"] == wl.pki.fingerprint("client")


@pytest.mark.parametrize("acct", ["bob", "carol@example.org"])
def test_message_authentic_other_accounts(wl, acct):
    info = wl.msgs[acct]
    r = check_message(wl, "other.eml", info["delivered"], "--json")
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "valid"
    assert out["record"]["account"] == acct and out["record"]["qid"] == info["qid"]


def test_message_from_stdin_and_lf_line_ends(wl):
    info = wl.msgs["bob"]
    r = subprocess_stdin(wl.p, info["delivered"].replace(b"\r\n", b"\n"))
    assert r.returncode == EXIT_FOUND, (r.stdout, r.stderr)
    out = r.stdout.decode()
    assert info["qid"] in out and re.search(r"account\s+bob\b", out), out


def subprocess_stdin(p, data):
    return subprocess.run([POSTERN, "trace", "-c", p.conf, "--message", "-"], input=data,
                          capture_output=True, timeout=60)


def test_documented_mac_matches_delivered_header(wl):
    """The MAC described in trace/header.c, computed here, is the one in
    the header of the delivered message."""
    info = wl.msgs["alice"]
    whole, tags = trace_header(info["delivered"])
    key = read_keys(wl.p.keys)[tags["k"]]
    mine = make_trace_header(key, tags["k"], HOSTNAME, tags["id"], tags["t"], info["mid"])
    _, mytags = trace_header(b"X: y\r\n" + mine)
    assert mytags["m"] == tags["m"]


def test_message_altered_message_id_is_copied(wl):
    """The header is genuine, but its record was another Message-ID's: the
    header was copied onto this message or the message was altered; either
    way it names nobody."""
    info = wl.msgs["alice"]
    altered = info["delivered"].replace(info["mid"].encode(), b"<someone-else@client.test>")
    assert altered != info["delivered"]
    r = check_message(wl, "altered-mid.eml", altered)
    assert r.returncode == EXIT_NOT_AUTHENTIC, r.stdout + r.stderr
    assert "genuine" in r.stdout and "copied onto it" in r.stdout, r.stdout
    assert "alice" not in r.stdout and info["qid"] not in r.stdout
    r = check_message(wl, "altered-mid.eml", altered, "--json")
    assert r.returncode == EXIT_NOT_AUTHENTIC
    out = json.loads(r.stdout)
    assert out["verdict"] == "copied" and out["record"] is None


def test_message_removed_message_id_is_copied(wl):
    info = wl.msgs["alice"]
    altered = info["delivered"].replace(f"Message-ID: {info['mid']}\r\n".encode(), b"")
    assert altered != info["delivered"]
    r = check_message(wl, "no-mid.eml", altered, "--json")
    assert r.returncode == EXIT_NOT_AUTHENTIC, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "copied" and out["record"] is None


def alter_tag(msg, tag, fn):
    whole, tags = trace_header(msg)
    new = re.sub(rb"\b" + tag.encode() + rb"=([^;\s]+)",
                 lambda m: tag.encode() + b"=" + fn(m.group(1).decode()).encode(), whole, count=1)
    assert new != whole
    return msg.replace(whole, new, 1)


def other_b32(c):
    return "a" if c != "a" else "b"


@pytest.mark.parametrize("tag,fn", [
    ("id", lambda v: v[:-1] + other_b32(v[-1])),
    ("id", lambda v: other_b32(v[0]) + v[1:]),
    ("t", lambda v: str(int(v) + 1)),
    ("t", lambda v: str(int(v) - 3600)),
    ("m", lambda v: ("B" if v[0] != "B" else "C") + v[1:]),
])
def test_message_altered_header_is_forged(wl, tag, fn):
    altered = alter_tag(wl.msgs["alice"]["delivered"], tag, fn)
    r = check_message(wl, "altered-hdr.eml", altered)
    assert r.returncode == EXIT_NOT_AUTHENTIC, r.stdout + r.stderr
    assert "forged or altered" in r.stdout, r.stdout
    r = check_message(wl, "altered-hdr.eml", altered, "--json")
    assert json.loads(r.stdout)["verdict"] == "forged"


def test_message_other_key_id_is_unknown_key(wl):
    altered = alter_tag(wl.msgs["alice"]["delivered"], "k", lambda v: "k9")
    r = check_message(wl, "k9.eml", altered, "--json")
    assert r.returncode == EXIT_NOT_AUTHENTIC, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "unknown_key" and out["key_id"] == "k9"


def test_message_forged_header_with_wrong_key(wl):
    """A header made up by someone without our key, for our gate."""
    info = wl.msgs["bob"]
    _, tags = trace_header(info["delivered"])
    forged = make_trace_header(os.urandom(32), "k1", HOSTNAME, tags["id"], tags["t"], info["mid"])
    r = check_message(wl, "forged.eml", replace_trace_header(info["delivered"], forged))
    assert r.returncode == EXIT_NOT_AUTHENTIC, r.stdout + r.stderr
    assert "forged" in r.stdout
    assert "bob" not in r.stdout and info["qid"] not in r.stdout


def test_message_edited_gate_is_not_authentic(wl):
    altered = alter_tag(wl.msgs["alice"]["delivered"], "g", lambda v: "mx.elsewhere.test")
    r = check_message(wl, "gate.eml", altered)
    assert r.returncode == EXIT_NOT_AUTHENTIC, r.stdout + r.stderr
    assert "alice" not in r.stdout


def test_message_from_another_gate(wl):
    """A validly signed header (the MAC documented in trace/header.c) for
    another gate name: said to be another gate's."""
    info = wl.msgs["alice"]
    _, tags = trace_header(info["delivered"])
    key = read_keys(wl.p.keys)["k1"]
    other = make_trace_header(key, "k1", "relay.other.example", tags["id"], tags["t"], info["mid"])
    msg = replace_trace_header(info["delivered"], other)
    r = check_message(wl, "other-gate.eml", msg)
    assert r.returncode == EXIT_NOT_AUTHENTIC, r.stdout + r.stderr
    assert "another gate" in r.stdout and "relay.other.example" in r.stdout, r.stdout
    r = check_message(wl, "other-gate.eml", msg, "--json")
    out = json.loads(r.stdout)
    assert out["verdict"] == "other_gate" and out["gate"] == "relay.other.example"


def test_message_valid_header_without_record(wl):
    """Signed with our key (so authentic) but for a trace id we never gave."""
    info = wl.msgs["alice"]
    key = read_keys(wl.p.keys)["k1"]
    hdr = make_trace_header(key, "k1", HOSTNAME, "a" * 26, int(time.time()), info["mid"])
    r = check_message(wl, "norecord.eml", replace_trace_header(info["delivered"], hdr))
    assert r.returncode == EXIT_NOT_FOUND, r.stdout + r.stderr
    assert "authentic" in r.stdout and "no record" in r.stdout


def test_message_missing_header(wl):
    info = wl.msgs["alice"]
    whole, _ = trace_header(info["delivered"])
    stripped = info["delivered"].replace(whole, b"", 1)
    assert b"X-Postern-Trace" not in stripped
    r = check_message(wl, "missing.eml", stripped)
    assert r.returncode == EXIT_NOT_FOUND, r.stdout + r.stderr
    assert re.search(r"no .*trace header", r.stdout), r.stdout
    r = check_message(wl, "missing.eml", stripped, "--json")
    assert r.returncode == EXIT_NOT_FOUND
    assert json.loads(r.stdout)["verdict"] == "missing"


def test_message_malformed_header(wl):
    info = wl.msgs["alice"]
    bad = b"X-Postern-Trace: v=1; g=mx.test; id=nonsense\r\n"
    r = check_message(wl, "malformed.eml", replace_trace_header(info["delivered"], bad), "--json")
    assert r.returncode == EXIT_NOT_AUTHENTIC, r.stdout + r.stderr
    assert json.loads(r.stdout)["verdict"] == "malformed"


def test_message_not_a_message(wl):
    garbage = bytes(range(256)) * 8
    r = check_message(wl, "garbage.bin", b"\x00\x89PNG\r\n\x1a\n" + garbage)
    assert r.returncode == EXIT_USAGE, r.stdout + r.stderr
    r = check_message(wl, "empty.eml", b"")
    assert r.returncode == EXIT_USAGE, r.stdout + r.stderr
    r = trace(wl.p, "--message", os.path.join(wl.base, "does-not-exist.eml"))
    assert r.returncode == EXIT_USAGE, r.stdout + r.stderr
    r = trace(wl.p, "--message", os.path.join(wl.base, "alice.eml"), "--account", "alice")
    assert r.returncode == EXIT_USAGE, r.stdout + r.stderr


def test_without_config_file(wl):
    """--db alone for lookups; --db, --keys and --gate for --message."""
    info = wl.msgs["bob"]
    p = wl.p
    r = p.postern("trace", "--db", p.trace_db, "--qid", info["qid"], "--json")
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert json.loads(r.stdout)[0]["account"] == "bob"
    r = p.postern("stats", "--db", p.trace_db, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["messages"] == 3, r.stdout + r.stderr
    path = write_file(wl.base, "bob.eml", info["delivered"])
    r = p.postern("trace", "--db", p.trace_db, "--keys", p.keys, "--gate", HOSTNAME,
                  "--message", path)
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert info["qid"] in r.stdout
    r = p.postern("trace", "--db", p.trace_db, "--keys", p.keys, "--gate", "gate.other.test",
                  "--message", path)
    assert r.returncode == EXIT_NOT_AUTHENTIC, r.stdout + r.stderr
    assert "another gate" in r.stdout and HOSTNAME in r.stdout
    # Without keys a header cannot be checked: a usage error, not a verdict.
    r = p.postern("trace", "--db", p.trace_db, "--message", path)
    assert r.returncode == EXIT_USAGE, r.stdout + r.stderr
    r = p.postern("trace", "--db", os.path.join(wl.base, "nothing-here.db"), "--qid", "X")
    assert r.returncode == EXIT_DB, r.stdout + r.stderr


# ---- ARF reports (RFC 5965) built with python's email package -----------------

def arf_report(original_part):
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "abuse@isp.example"
    report["To"] = f"abuse@{HOSTNAME}"
    report["Subject"] = "FW: abuse report"
    report["Message-ID"] = "<report-1@isp.example>"
    report.attach(MIMEText("This is an email abuse report for a message received from "
                           "your gate.\n"))
    fb = MIMEBase("message", "feedback-report")
    fb.set_payload("Feedback-Type: abuse\nUser-Agent: test_trace/1.0\nVersion: 1\n"
                   "Original-Mail-From: <alice@mx.test>\nSource-IP: 192.0.2.1\n"
                   "Reported-Domain: mx.test\n")
    report.attach(fb)
    report.attach(original_part)
    return report.as_bytes()


def headers_only(msg):
    return msg.split(b"\r\n\r\n", 1)[0].decode() + "\r\n"


@pytest.mark.parametrize("variant", ["rfc822", "rfc822-headers", "rfc822-headers-base64",
                                     "refolded", "mbox-from-line"])
def test_arf_report_traced_to_sender(wl, variant):
    info = wl.msgs["alice"]
    if variant in ("rfc822", "mbox-from-line"):
        part = MIMEMessage(message_from_bytes(info["delivered"]))
    elif variant == "rfc822-headers":
        part = MIMEText(headers_only(info["delivered"]), "rfc822-headers")
    elif variant == "rfc822-headers-base64":
        part = MIMEText(headers_only(info["delivered"]), "rfc822-headers", "utf-8")
        assert part["Content-Transfer-Encoding"] == "base64"
    else:
        # Saved by some mailer: header fields unfolded, the trace header and
        # the Message-ID folded again elsewhere, LF line ends.
        head, body = info["delivered"].split(b"\r\n\r\n", 1)
        head = re.sub(rb"\r\n[ \t]+", b" ", head)
        head = re.sub(rb"(X-Postern-Trace:.*)", lambda m: m.group(1).replace(b"; ", b";\n    "),
                      head)
        head = head.replace(b"Message-ID: ", b"Message-ID:\n\t ")
        refolded = (head + b"\r\n\r\n" + body).replace(b"\r\n", b"\n")
        assert b";\n    k=k1" in refolded and b"Message-ID:\n\t <" in refolded
        part = MIMEMessage(message_from_bytes(refolded))
    report = arf_report(part)
    if variant == "mbox-from-line":
        report = b"From abuse@isp.example Mon Jan  1 00:00:00 2024\n" + report
    # The report's own Message-ID is not the original's: the header must be
    # judged against the Message-ID of the message it sits in.
    assert b"report-1@isp.example" in report
    r = check_message(wl, f"arf-{variant}.eml", report)
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert info["qid"] in r.stdout
    assert re.search(r"account\s+alice\b", r.stdout), r.stdout
    r = check_message(wl, f"arf-{variant}.eml", report, "--json")
    out = json.loads(r.stdout)
    assert out["verdict"] == "valid" and out["record"]["account"] == "alice"
    assert out["record"]["qid"] == info["qid"]


def test_forwarded_as_eml_attachment(wl):
    """Not an ARF report: a desk's colleague forwards the spam as a .eml
    attachment (application/octet-stream, base64)."""
    info = wl.msgs["carol@example.org"]
    fwd = MIMEMultipart()
    fwd["From"] = "colleague@isp.example"
    fwd["Subject"] = "Fwd: look at this"
    fwd.attach(MIMEText("See the attached message.\n"))
    fwd.attach(MIMEApplication(info["delivered"], Name="spam.eml"))
    r = check_message(wl, "fwd.eml", fwd.as_bytes(), "--json")
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["record"]["account"] == "carol@example.org"
    assert out["record"]["qid"] == info["qid"]


def test_arf_report_with_altered_original_is_not_attributed(wl):
    info = wl.msgs["alice"]
    altered = info["delivered"].replace(info["mid"].encode(), b"<spoofed@client.test>")
    report = arf_report(MIMEMessage(message_from_bytes(altered)))
    r = check_message(wl, "arf-forged.eml", report, "--json")
    assert r.returncode == EXIT_NOT_AUTHENTIC, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "copied" and out["found_in"] == "enclosed" and out["record"] is None
    # a MAC no key made is forged
    whole, tags = trace_header(altered)
    bad = altered.replace(tags["m"].encode(), b"A" * 43 + b"=")
    r = check_message(wl, "arf-forged.eml", arf_report(MIMEMessage(message_from_bytes(bad))),
                      "--json")
    assert r.returncode == EXIT_NOT_AUTHENTIC, r.stdout + r.stderr
    assert json.loads(r.stdout)["verdict"] == "forged"


def test_arf_report_without_trace_header(wl):
    info = wl.msgs["alice"]
    whole, _ = trace_header(info["delivered"])
    report = arf_report(MIMEMessage(message_from_bytes(info["delivered"].replace(whole, b""))))
    r = check_message(wl, "arf-missing.eml", report)
    assert r.returncode == EXIT_NOT_FOUND, r.stdout + r.stderr
    assert re.search(r"no .*trace header", r.stdout), r.stdout


# ---- the header on messages of every shape ------------------------------------

def login_raw(p, user):
    c = p.raw("smtps")
    assert c.reply()[0] == 220
    c.login(user)
    return c


def bdat_send(c, sender, rcpt, chunks):
    assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        c.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
        reply = c.reply()
        assert reply[0] == 250, reply
    return queued_qid(reply)


def split_at(data, *cuts):
    out, prev = [], 0
    for cut in cuts:
        out.append(data[prev:cut])
        prev = cut
    out.append(data[prev:])
    return out


SHAPES = {
    # name: (message as sent, message as the record's size counts it, Message-ID
    # recorded; None: the one the gate adds, <trace id@gate>)
    "folded-message-id": (b"Subject: folded\r\nMessage-ID:\r\n\t<folded-1@client.test>\r\n\r\nbody\r\n",
                          None, "<folded-1@client.test>"),
    "no-message-id": (b"Subject: no id\r\nFrom: <alice@mx.test>\r\n\r\nbody\r\n", None, None),
    "headers-only-no-id": (b"Subject: headers only, no id\r\n", None, None),
    "no-header-block": (b"a body line and nothing else\r\n", None, None),
    "headers-only": (b"Subject: headers only\r\nMessage-ID: <hdr-only@client.test>\r\n",
                     None, "<hdr-only@client.test>"),
    "lower-case-name": (b"Subject: lc\r\nmessage-id: <lower-1@client.test>\r\n\r\nbody\r\n",
                        None, "<lower-1@client.test>"),
    "two-message-ids": (b"Message-ID: <first@client.test>\r\nSubject: two\r\n"
                        b"Message-ID: <second@client.test>\r\n\r\nbody\r\n",
                        None, "<first@client.test>"),
    "dot-stuffed": (b"Subject: dots\r\nMessage-ID: <dots-1@client.test>\r\n\r\n..hidden\r\n"
                    b"...\r\nend\r\n",
                    b"Subject: dots\r\nMessage-ID: <dots-1@client.test>\r\n\r\n.hidden\r\n"
                    b"..\r\nend\r\n", "<dots-1@client.test>"),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_header_on_every_shape(postern, shape):
    p = postern
    sent, relayed, mid = SHAPES[shape]
    content = relayed or sent
    c = login_raw(p, "alice")
    qid = raw_send(c, "alice@mx.test", ["x@example.net"], sent)
    c.cmd("QUIT")
    c.close()
    m = strip_sink_line(p.sink.wait_messages(1)[0])
    assert untraced(m).endswith(content), m
    rec = wait_delivered(p, qid)
    assert rec["size"] == len(content)
    assert rec["body_sha256"] == hashlib.sha256(m).hexdigest()
    if mid is None:
        mid = f"<{trace_header(m)[1]['id']}@{HOSTNAME}>"
        assert f"Message-ID: {mid}\r\n".encode() in m, m
    assert rec["message_id"] == mid
    if mid:
        r, data = trace_json(p, "--message-id", mid)
        assert r.returncode == EXIT_FOUND and qids(data) == [qid], r.stdout + r.stderr
    path = write_file(p.base, "shape.eml", m)
    r = trace(p, "--message", path, "--json")
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "valid" and out["record"]["qid"] == qid


BDAT_MSG = b"Subject: bdat\r\nMessage-ID: <bdat-1@client.test>\r\n\r\nbody line\r\n"


@pytest.mark.parametrize("cuts", [
    (),
    (17, 20),                       # inside "Message-ID"
    (47, 48, 49, 50),               # between the CRs and LFs around the empty line
    tuple(range(1, len(BDAT_MSG))),  # one byte at a time
], ids=["one", "in-name", "around-empty-line", "bytewise"])
def test_header_with_bdat_chunks(postern, cuts):
    p = postern
    assert BDAT_MSG[15:25] == b"Message-ID" and BDAT_MSG[47:51] == b"\r\n\r\n"
    c = login_raw(p, "bob")
    qid = bdat_send(c, "bob@mx.test", "x@example.net", split_at(BDAT_MSG, *cuts))
    c.cmd("QUIT")
    c.close()
    m = strip_sink_line(p.sink.wait_messages(1)[0])
    assert untraced(m).endswith(BDAT_MSG)
    _, tags = trace_header(m)
    assert m.index(b"X-Postern-Trace:") < m.index(b"\r\n\r\n")
    rec = wait_delivered(p, qid)
    assert rec["message_id"] == "<bdat-1@client.test>"
    assert rec["body_sha256"] == hashlib.sha256(m).hexdigest()
    assert rec["trace_id"] == tags["id"]
    r = trace(p, "--message", write_file(p.base, "bdat.eml", m))
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert qid in r.stdout


def test_bdat_headers_only_without_final_crlf(postern):
    p = postern
    msg = b"Subject: bare\r\nMessage-ID: <bare-end@client.test>"
    c = login_raw(p, "bob")
    qid = bdat_send(c, "bob@mx.test", "x@example.net", [msg[:20], msg[20:]])
    c.close()
    m = strip_sink_line(p.sink.wait_messages(1)[0])
    rec = wait_delivered(p, qid)
    assert rec["message_id"] == "<bare-end@client.test>"
    assert rec["body_sha256"] == hashlib.sha256(m).hexdigest()
    r = trace(p, "--message", write_file(p.base, "bare.eml", m))
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr


def test_record_is_durable_before_the_250(postern):
    """The record is written before the 250: a lookup right after it finds it."""
    p = postern
    for i in range(3):
        c = login_raw(p, "alice")
        qid = raw_send(c, "alice@mx.test", ["x@example.net"],
                       make_msg("alice@mx.test", "durable", f"<durable-{i}@client.test>"))
        r, data = trace_json(p, "--qid", qid)
        assert r.returncode == EXIT_FOUND, (i, r.stdout, r.stderr)
        assert data[0]["message_id"] == f"<durable-{i}@client.test>"
        c.close()


# ---- trace headers the client brought along -------------------------------------

def test_client_supplied_forged_header_does_not_hide_ours(postern):
    p = postern
    bogus = make_trace_header(os.urandom(32), "k1", HOSTNAME, "b" * 26, int(time.time()),
                              "<bogus@client.test>")
    msg = b"Subject: bogus\r\nMessage-ID: <bogus@client.test>\r\n" + bogus + b"\r\nbody\r\n"
    c = login_raw(p, "bob")
    qid = raw_send(c, "bob@mx.test", ["x@example.net"], msg)
    c.close()
    m = strip_sink_line(p.sink.wait_messages(1)[0])
    r = trace(p, "--message", write_file(p.base, "bogus.eml", m), "--json")
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "valid"
    assert out["record"]["account"] == "bob" and out["record"]["qid"] == qid


def test_copied_trace_header_cannot_frame_another_account(postern):
    """bob copies the (authentic) trace header and the Message-ID of a
    message alice sent into his own message and submits it. The copy the
    abuse desk gets must be traced to bob, who sent it, not to alice."""
    p = postern
    c = login_raw(p, "alice")
    qid_alice = raw_send(c, "alice@mx.test", ["victim@example.net"],
                         make_msg("alice@mx.test", "genuine", "<genuine@client.test>"))
    c.close()
    genuine = strip_sink_line(p.sink.wait_messages(1)[0])
    copied, _ = trace_header(genuine)
    spam = (b"Subject: buy now\r\nMessage-ID: <genuine@client.test>\r\n" + copied +
            b"\r\nspam spam spam\r\n")
    c = login_raw(p, "bob")
    qid_bob = raw_send(c, "bob@mx.test", ["victim@example.net"], spam)
    c.close()
    delivered = [strip_sink_line(m) for m in p.sink.wait_messages(2)]
    spam_copy = [m for m in delivered if b"spam spam spam" in m][0]
    r = trace(p, "--message", write_file(p.base, "framed.eml", spam_copy), "--json")
    out = json.loads(r.stdout) if r.stdout.strip() else {}
    record = out.get("record") or {}
    assert record.get("account") != "alice" and record.get("qid") != qid_alice, (
        "a copied trace header frames alice: " + r.stdout)
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert record.get("account") == "bob" and record.get("qid") == qid_bob, r.stdout


# ---- key rotation --------------------------------------------------------------

def test_key_rotation(make_postern, sink, workdir):
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
    old = read_keys(p.keys)["k1"]

    def send(subject, mid):
        with p.smtps() as c:
            c.login("bob", USERS["bob"])
            c.mail("bob@mx.test")
            c.rcpt("x@example.net")
            return queued_qid(c.data(make_msg("bob@mx.test", subject, mid)))

    qid_old = send("old key", "<old-key@client.test>")
    old_msg = find_at_sink(sink, "<old-key@client.test>")
    assert trace_header(old_msg)[1]["k"] == "k1"
    old_path = write_file(p.base, "old.eml", old_msg)

    # Rotate: a new key first, the old one kept below it.
    new = os.urandom(32)
    with open(p.keys, "w") as f:
        f.write(f"# rotated\nk2 {new.hex()}\nk1 {old.hex()}\n")
    assert p.stop() == 0
    p.start()
    qid_new = send("new key", "<new-key@client.test>")
    new_msg = find_at_sink(sink, "<new-key@client.test>")
    assert trace_header(new_msg)[1]["k"] == "k2"
    new_path = write_file(p.base, "new.eml", new_msg)

    r = trace(p, "--message", old_path)
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert qid_old in r.stdout and "bob" in r.stdout
    r = trace(p, "--message", new_path)
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert qid_new in r.stdout

    # The old key dropped: its messages are under an unknown key.
    with open(p.keys, "w") as f:
        f.write(f"k2 {new.hex()}\n")
    r = trace(p, "--message", old_path)
    assert r.returncode == EXIT_NOT_AUTHENTIC, r.stdout + r.stderr
    assert "k1" in r.stdout and "does not have" in r.stdout, r.stdout
    r = trace(p, "--message", old_path, "--json")
    assert json.loads(r.stdout)["verdict"] == "unknown_key"
    r = trace(p, "--message", new_path)
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr


# ---- refusals are recorded ----------------------------------------------------

def test_rejects_are_recorded(postern):
    p = postern
    # A wrong password for alice.
    c = p.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    tok = base64.b64encode(b"\0alice\0not-her-password").decode()
    code, lines = c.cmd("AUTH PLAIN " + tok)
    assert code == 535, lines
    c.close()
    # MAIL without AUTH.
    c = p.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("MAIL FROM:<someone@example.net>")
    assert code == 530, lines
    c.close()
    # Relay denied on the MX listener.
    c = p.raw("mx")
    c.reply()
    c.cmd("EHLO peer.test")
    assert c.cmd("STARTTLS")[0] == 220
    c.starttls()
    c.cmd("EHLO peer.test")
    assert c.cmd("MAIL FROM:<someone@example.net>")[0] == 250
    code, lines = c.cmd("RCPT TO:<victim@elsewhere.example>")
    assert code == 550, lines
    c.cmd("QUIT")
    c.close()

    st = wait_for(lambda: (lambda s: s if s["rejects"] >= 3 else None)(stats_json(p)),
                  what="three refusals in the trace store")
    assert st["rejects"] == 3, st
    assert counts(st["rejected_by_rule"]) == {"auth_failed": 1, "auth_required": 1,
                                               "relay_denied": 1}, st
    assert counts(st["rejected_by_listener"]) == {"smtps": 2, "mx": 1}, st
    assert counts(st["auth_failures_by_account"]) == {"alice": 1}, st
    assert counts(st["auth_failures_by_ip"]) == {"127.0.0.1": 1}, st
    assert st["messages"] == 0


# ---- a trace store that cannot be written ---------------------------------------

def tempfailed_data(p, subject, msgid, timeout=10):
    """One message whose DATA must get 451 4.3.0; the session goes on."""
    with p.smtps(timeout=timeout) as c:
        c.login("alice", USERS["alice"])
        c.mail("alice@mx.test")
        c.rcpt("x@example.net")
        code, text = c.data(make_msg("alice@mx.test", subject, msgid))
        assert code == 451, (code, text)
        assert text.startswith(b"4.3.0"), text
        assert c.noop()[0] == 250


def send_one(p, subject, msgid):
    with p.smtps() as c:
        c.login("alice", USERS["alice"])
        c.sendmail("alice@mx.test", ["x@example.net"], make_msg("alice@mx.test", subject, msgid))


def test_trace_store_failure_tempfails(postern):
    """Another writer holds the store's write lock longer than posternd's
    busy timeout (5 s): the record cannot be written, so the message gets
    451 4.3.0 and goes nowhere. Once the lock is gone, mail flows again."""
    p = postern
    send_one(p, "before", "<before@client.test>")
    p.sink.wait_messages(1)

    db = sqlite3.connect(p.trace_db, timeout=10, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        tempfailed_data(p, "during", "<during@client.test>", timeout=30)
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert "event=trace_error" in p.logtext()

    send_one(p, "after", "<after@client.test>")
    msgs = p.sink.wait_messages(2)
    time.sleep(0.5)
    msgs = p.sink.messages()
    assert len(msgs) == 2
    assert not any(b"<during@client.test>" in m for m in msgs)
    r, _ = trace_json(p, "--message-id", "<during@client.test>")
    assert r.returncode == EXIT_NOT_FOUND, r.stdout + r.stderr
    r, _ = trace_json(p, "--message-id", "<after@client.test>")
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert p.queue() == []


def test_queue_failure_after_record_takes_it_back(postern):
    """The record is written, then the queue file cannot enter queue/ (its
    directory refuses the rename): the client gets 451 4.3.0, the record
    is taken back (a record stands for an accepted message), the attempt is
    recorded as a refusal, and mail flows again."""
    p = postern
    queue = os.path.join(p.spool, "queue")
    mode = os.stat(queue).st_mode & 0o7777
    os.chmod(queue, 0o500)
    try:
        tempfailed_data(p, "lost", "<lost@client.test>")
    finally:
        os.chmod(queue, mode)
    st = wait_for(lambda: (lambda s: s if s["rejects"] >= 1 else None)(stats_json(p)),
                  what="the refusal recorded")
    assert counts(st["rejected_by_rule"]) == {"queue_error": 1}, st
    assert st["messages"] == 0, st
    r, _ = trace_json(p, "--message-id", "<lost@client.test>")
    assert r.returncode == EXIT_NOT_FOUND, r.stdout + r.stderr
    assert "event=trace_retracted" in p.logtext() and "found=yes" in p.logtext()

    send_one(p, "after", "<after2@client.test>")
    msgs = p.sink.wait_messages(1)
    assert b"<after2@client.test>" in msgs[0]
    assert not any(b"<lost@client.test>" in m for m in p.sink.messages())
    r, _ = trace_json(p, "--message-id", "<after2@client.test>")
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr


# ---- pruning ------------------------------------------------------------------

def test_prune(postern):
    p = postern
    with p.smtps() as c:
        c.login("alice", USERS["alice"])
        c.mail("alice@mx.test")
        c.rcpt("x@example.net")
        qid = queued_qid(c.data(make_msg("alice@mx.test", "old", "<prune@client.test>")))
    c = p.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<x@example.net>")[0] == 530
    c.close()
    wait_delivered(p, qid)
    wait_for(lambda: stats_json(p)["rejects"] == 1, what="the refusal recorded")

    # Nothing is that old yet.
    r = trace(p, "--prune", "--older-than", "1h")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pruned 0 messages" in r.stdout
    r, _ = trace_json(p, "--qid", qid)
    assert r.returncode == EXIT_FOUND

    time.sleep(2.1)
    r = trace(p, "--prune", "--older-than", "1s")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pruned 1 message and 1 refused attempt" in r.stdout, r.stdout
    for args in (["--qid", qid], ["--message-id", "<prune@client.test>"],
                 ["--account", "alice"], ["--rcpt", "x@example.net"]):
        r, data = trace_json(p, *args)
        assert r.returncode == EXIT_NOT_FOUND and data == [], (args, r.stdout, r.stderr)
    st = stats_json(p)
    assert st["messages"] == 0 and st["rejects"] == 0 and st["recipients"] == 0

    # The gate keeps tracing afterwards.
    with p.smtps() as c:
        c.login("alice", USERS["alice"])
        c.mail("alice@mx.test")
        c.rcpt("y@example.net")
        qid2 = queued_qid(c.data(make_msg("alice@mx.test", "new", "<prune-2@client.test>")))
    wait_delivered(p, qid2)


def test_prune_usage(postern):
    for args in (["--prune"], ["--prune", "--older-than", "soon"],
                 ["--prune", "--older-than", "1d", "--account", "alice"]):
        r = trace(postern, *args)
        assert r.returncode == EXIT_USAGE, (args, r.stdout, r.stderr)
