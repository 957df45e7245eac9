"""The queue runner end to end: what reaches the Maildir or the downstream,
what happens when the downstream is down, refuses for a while or refuses
for good (DSNs), queue expiry, and `postern queue`."""

import json
import re
import subprocess
import time

from conftest import HOSTNAME, POSTERN, USERS, Sink, free_port, untraced, wait_for

QID_RE = re.compile(rb"queued as ([0-9A-V]{16})")


def submit(p, sender, rcpts, body, user="alice", mail_options=()):
    """Sends one message over smtps; returns its queue id from the 250."""
    with p.smtps() as c:
        c.login(user, USERS[user])
        code, resp = c.mail(sender, list(mail_options))
        assert code == 250, resp
        for r in rcpts:
            code, resp = c.rcpt(r)
            assert code == 250, (r, resp)
        code, resp = c.data(body)
        assert code == 250, resp
        m = QID_RE.search(resp)
        assert m, resp
        return m.group(1).decode()


def log_has(p, pattern):
    return re.search(pattern, p.logtext())


def wait_log(p, pattern, timeout=15.0):
    return wait_for(lambda: log_has(p, pattern), timeout, what=f"log line {pattern!r}")


def envelope(msg):
    """The sink's first line: (from, [rcpts])."""
    first = msg.split(b"\r\n", 1)[0].decode()
    m = re.match(r"X-Sink-Envelope: from=<([^>]*)> rcpt=(.*)$", first)
    assert m, first
    return m.group(1), re.findall(r"<([^>]*)>", m.group(2))


def queue_cli(p, *args):
    return subprocess.run([POSTERN, "queue", "-d", p.spool, *args], capture_output=True,
                          text=True, timeout=30)


def chunky_body():
    """~200 KB of lines that start with a dot, laid out so that whatever the
    length of our Received header, one of the relay's 64 KiB read chunks
    starts exactly at the start of a line (".\r\n" lines are 3 bytes; each
    ".ab\r\n" line shifts the phase by 2 mod 3, and 65536 = 1 mod 3)."""
    head = b"Subject: dots everywhere\r\n\r\n"
    region = b".\r\n" * 21800                       # 65400 bytes
    return head + region + b".ab\r\n" + region + b".ab\r\n" + region + b"last\r\n"


# ---- Maildir -------------------------------------------------------------

def test_default_maildir_delivery(make_postern):
    p = make_postern()
    body = (b"From: alice@mx.test\r\nTo: rcpt@example.org\r\nSubject: to the maildir\r\n"
            b"\r\nfirst body line\r\nsecond body line\r\n")
    qid = submit(p, "alice@mx.test", ["rcpt@example.org"], body)
    msgs = wait_for(lambda: p.maildir_messages(), 15, what="a message in Maildir/new")
    assert len(msgs) == 1
    m = msgs[0]
    assert m.startswith(b"Return-Path: <alice@mx.test>\n"), m[:200]
    assert b"\r" not in m, "CRLF must become LF in a Maildir"
    assert re.search(rb"\nReceived: from client\.test ", m) or b"\nReceived: from " in m
    assert re.search(rb"\n\tby " + HOSTNAME.encode() + rb" \(Postern\) with ESMTPSA id " +
                     qid.encode(), m), m
    assert b"\nSubject: to the maildir\n" in m
    assert m.endswith(b"\n\nfirst body line\nsecond body line\n")
    wait_for(lambda: p.queue() == [], 10, what="the queue to empty")


def test_maildir_body_across_chunk_boundaries(make_postern):
    p = make_postern()
    body = chunky_body()
    submit(p, "alice@mx.test", ["rcpt@example.org"], body)
    m = wait_for(lambda: p.maildir_messages(), 15, what="a message in Maildir/new")[0]
    assert b"\r" not in m
    assert untraced(m).endswith(body.replace(b"\r\n", b"\n"))


# ---- SMTP and LMTP downstream --------------------------------------------

def test_smtp_downstream_keeps_envelope_and_body_exact(postern):
    rcpts = ["one@example.net", "two@example.com", "three@example.org"]
    body = (b"From: alice@mx.test\r\n"
            b"To: one@example.net\r\n"
            b"Subject: byte exact\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n"
            b"\r\n"
            b".leading dot\r\n"
            b"..two leading dots\r\n"
            b".\r\n"
            b"the line above is a lone dot\r\n"
            b"caf\xc3\xa9 \xe2\x82\xac 8-bit \x80\xfe\xff\r\n"
            b"  leading and trailing spaces  \r\n"
            b"\ttab\r\n"
            b"\r\n"
            b"last line\r\n")
    qid = submit(postern, "alice@mx.test", rcpts, body, mail_options=["BODY=8BITMIME"])
    m = postern.sink.wait_messages(1)[0]
    sender, got_rcpts = envelope(m)
    assert sender == "alice@mx.test"
    assert got_rcpts == rcpts
    env_line, rest = m.split(b"\r\n", 1)
    rest = untraced(rest)
    assert rest.endswith(body), rest
    received = rest[:len(rest) - len(body)]
    # nothing but our Received header between the envelope and the message
    assert re.fullmatch(rb"Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", received), received
    assert b" id " + qid.encode() in received
    wait_for(lambda: postern.queue() == [], 10, what="the queue to empty")
    for r in rcpts:
        assert log_has(postern, rf"event=delivered qid={qid} rcpt=\"{re.escape(r)}\"")


def test_smtp_body_exact_across_chunk_boundaries(postern):
    body = chunky_body()
    submit(postern, "alice@mx.test", ["big@example.net"], body)
    m = postern.sink.wait_messages(1)[0]
    assert untraced(m).endswith(body), "dot-stuffing went wrong somewhere in a 200 KB message"
    assert len(m) < len(body) + 1000


def test_lmtp_downstream_delivers(workdir, make_postern):
    sink = Sink(workdir, lmtp=True).start()
    try:
        p = make_postern(downstream=f"lmtp://127.0.0.1:{sink.port}")
        body = b"Subject: over lmtp\r\n\r\nhello lmtp\r\n"
        qid = submit(p, "bob@mx.test", ["x@example.org", "y@example.org"], body, user="bob")
        m = sink.wait_messages(1)[0]
        assert envelope(m) == ("bob@mx.test", ["x@example.org", "y@example.org"])
        assert untraced(m).endswith(body)
        assert b" id " + qid.encode() in m
        wait_for(lambda: p.queue() == [], 10, what="the queue to empty")
        wait_log(p, rf"event=delivered qid={qid} rcpt=\"x@example\.org\"")
        wait_log(p, rf"event=delivered qid={qid} rcpt=\"y@example\.org\"")
    finally:
        sink.stop()


def test_lmtp_partial_failure_bounces(workdir, make_postern):
    sink = Sink(workdir, lmtp=True, extra=["--fail-rcpt", "nobody@example.org:550"]).start()
    try:
        p = make_postern(downstream=f"lmtp://127.0.0.1:{sink.port}")
        qid = submit(p, "alice@mx.test", ["a@example.org", "nobody@example.org", "b@example.org"],
                     b"Subject: lmtp partial\r\n\r\ntext\r\n")
        msgs = sink.wait_messages(2)
        envs = sorted(envelope(m) for m in msgs)
        assert envs == [("", ["alice@mx.test"]), ("alice@mx.test", ["a@example.org", "b@example.org"])]
        dsn = [m for m in msgs if envelope(m)[0] == ""][0]
        assert b"Final-Recipient: rfc822; nobody@example.org" in dsn
        assert b"Status: 5.1.1" in dsn
        wait_for(lambda: p.queue() == [], 10, what="the queue to empty")
        wait_log(p, rf"event=delivered qid={qid} rcpt=\"a@example\.org\"")
        wait_log(p, rf"event=delivered qid={qid} rcpt=\"b@example\.org\"")
    finally:
        sink.stop()


# ---- downstream trouble --------------------------------------------------

def test_downstream_down_then_back(workdir, make_postern):
    port = free_port()
    p = make_postern(downstream=f"smtp://127.0.0.1:{port}")
    qids = []
    for i in range(5):
        qids.append(submit(p, "alice@mx.test", [f"r{i}@example.net", "all@example.net"],
                           b"Subject: waiting %d\r\n\r\nbody %d\r\n" % (i, i)))
    assert len(set(qids)) == 5
    # every message has been tried once and is still there
    for q in qids:
        wait_log(p, rf"event=deferred qid={q} ")
    assert set(qids) <= set(p.queue())

    out = queue_cli(p)
    assert out.returncode == 0, out.stderr
    for q in qids:
        assert q in out.stdout
    assert out.stdout.count("last error:") >= 5, out.stdout
    assert f"127.0.0.1:{port}" in out.stdout
    assert re.search(r"^5 messages, \d+ bytes$", out.stdout, re.M), out.stdout

    js = queue_cli(p, "--json")
    assert js.returncode == 0, js.stderr
    entries = json.loads(js.stdout)
    assert sorted(e["qid"] for e in entries) == sorted(qids)
    for e in entries:
        assert e["sender"] == "alice@mx.test"
        assert [r["address"] for r in e["recipients"]][1] == "all@example.net"
        assert all(r["done"] is False for r in e["recipients"])
        assert e["attempts"] >= 1
        assert e["last_error"] and str(port) in e["last_error"]

    sink = Sink(workdir)
    sink.port = port
    sink.start()
    try:
        t0 = time.time()
        msgs = sink.wait_messages(5, timeout=10)
        took = time.time() - t0
        assert len(msgs) == 5
        got = set()
        for m in msgs:
            q = re.search(rb" id ([0-9A-V]{16})", m).group(1).decode()
            got.add(q)
        assert got == set(qids)
        wait_for(lambda: p.queue() == [], 10, what="the queue to empty")
        empty = queue_cli(p)
        assert empty.returncode == 0 and "queue is empty" in empty.stdout
        print(f"5 deferred messages delivered {took:.1f}s after the downstream came up")
    finally:
        sink.stop()


def test_tempfail_keeps_message_then_delivers(workdir, make_postern):
    bad = Sink(workdir, extra=["--tempfail-all"]).start()
    try:
        p = make_postern(downstream=f"smtp://127.0.0.1:{bad.port}")
        qid = submit(p, "alice@mx.test", ["later@example.net"], b"Subject: later\r\n\r\nlater\r\n")
        wait_log(p, rf"event=deferred qid={qid} rcpt=\"later@example\.net\" .*reply=\"451 4\.3\.0")
        assert qid in p.queue()
        assert bad.messages() == []
    finally:
        bad.stop()
    good = Sink(workdir)
    good.port = bad.port
    good.start()
    try:
        m = good.wait_messages(1, timeout=10)[0]
        assert envelope(m) == ("alice@mx.test", ["later@example.net"])
        assert b" id " + qid.encode() in m
        wait_for(lambda: p.queue() == [], 10, what="the queue to empty")
        wait_log(p, rf"event=delivered qid={qid} ")
    finally:
        good.stop()


def test_partial_tempfail_retries_only_pending(workdir, make_postern):
    picky = Sink(workdir, extra=["--fail-rcpt", "later@example.net:450"]).start()
    try:
        p = make_postern(downstream=f"smtp://127.0.0.1:{picky.port}")
        qid = submit(p, "alice@mx.test", ["now@example.net", "later@example.net"],
                     b"Subject: half now\r\n\r\nhalf later\r\n")
        m = picky.wait_messages(1)[0]
        assert envelope(m) == ("alice@mx.test", ["now@example.net"])
        wait_log(p, rf"event=deferred qid={qid} rcpt=\"later@example\.net\" .*reply=\"450 4\.1\.1")
        assert qid in p.queue()
        entries = json.loads(queue_cli(p, "--json").stdout)
        assert len(entries) == 1 and entries[0]["qid"] == qid
        assert entries[0]["recipients"] == [{"address": "now@example.net", "done": True},
                                            {"address": "later@example.net", "done": False}]
        assert "450" in entries[0]["last_error"]
        text = queue_cli(p).stdout
        assert "to <now@example.net> (done)" in text and "to <later@example.net>\n" in text
    finally:
        picky.stop()
    good = Sink(workdir)                  # same port, its own directory
    good.port = picky.port
    good.start()
    try:
        msgs = good.wait_messages(1, timeout=10)
        assert envelope(msgs[0]) == ("alice@mx.test", ["later@example.net"])
        wait_for(lambda: p.queue() == [], 10, what="the queue to empty")
        time.sleep(1)
        assert len(good.messages()) == 1, "a recipient already delivered got a second copy"
        assert len(picky.messages()) == 1
    finally:
        good.stop()


def test_permanent_failure_bounces_with_dsn(workdir, make_postern):
    sink = Sink(workdir, extra=["--fail-rcpt", "bad@example.net:550"]).start()
    try:
        p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
        body = b"Subject: partly bad\r\nMessage-ID: <partly@client.test>\r\n\r\nsome text\r\n"
        qid = submit(p, "alice@mx.test", ["good1@example.net", "bad@example.net",
                                          "good2@example.net"], body)
        msgs = sink.wait_messages(2, timeout=15)
        assert len(msgs) == 2
        orig = [m for m in msgs if envelope(m)[0] == "alice@mx.test"]
        dsn = [m for m in msgs if envelope(m)[0] == ""]
        assert len(orig) == 1 and len(dsn) == 1, [envelope(m) for m in msgs]
        assert envelope(orig[0])[1] == ["good1@example.net", "good2@example.net"]
        assert untraced(orig[0]).endswith(body)

        d = dsn[0]
        assert envelope(d) == ("", ["alice@mx.test"])
        assert b"multipart/report" in d and b"report-type=delivery-status" in d
        assert b"Content-Type: message/delivery-status" in d
        assert b"Final-Recipient: rfc822; bad@example.net" in d
        assert b"Final-Recipient: rfc822; good" not in d
        assert b"Action: failed" in d
        assert re.search(rb"Status: 5\.\d{1,3}\.\d{1,3}\r\n", d), d
        assert b"Diagnostic-Code: smtp; 550" in d
        assert b"To: <alice@mx.test>" in d
        assert b"X-Postern-Queue-ID: " + qid.encode() in d
        # the original's headers come back to the sender
        assert b"Message-ID: <partly@client.test>" in d
        wait_log(p, rf"event=bounced qid={qid} rcpt=\"bad@example\.net\"")
        wait_for(lambda: p.queue() == [], 10, what="the queue to empty")
    finally:
        sink.stop()


def test_null_sender_failure_gets_no_dsn(workdir, make_postern):
    sink = Sink(workdir, extra=["--fail-rcpt", "bad@example.net:550"]).start()
    try:
        p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
        qid = submit(p, "", ["ok@example.net", "bad@example.net"],
                     b"Subject: a bounce\r\n\r\nbounce text\r\n")
        m = sink.wait_messages(1)[0]
        assert envelope(m) == ("", ["ok@example.net"])
        wait_log(p, rf"event=removed qid={qid}")
        assert log_has(p, rf"event=dsn_dropped qid={qid}")
        wait_for(lambda: p.queue() == [], 10, what="the queue to empty")
        time.sleep(1.5)
        assert len(sink.messages()) == 1, [envelope(m) for m in sink.messages()]
        assert not log_has(p, rf"event=dsn qid=\S+ orig_qid={qid}")
    finally:
        sink.stop()


def test_max_queue_time_expiry_bounces(workdir, make_postern):
    port = free_port()
    p = make_postern(downstream=f"smtp://127.0.0.1:{port}", relay_extra='max_queue_time = "3s"')
    t0 = time.time()
    body = b"Subject: never delivered\r\nMessage-ID: <expire@client.test>\r\n\r\nlost\r\n"
    qid = submit(p, "alice@mx.test", ["far@example.net"], body)
    wait_log(p, rf"event=bounced qid={qid} rcpt=\"far@example\.net\" .*status=4\.4\.7", timeout=12)
    expired_after = time.time() - t0
    assert 2 <= expired_after < 8, expired_after
    wait_log(p, rf"event=dsn qid=\S+ orig_qid={qid} to=\"alice@mx\.test\"", timeout=5)
    # the DSN now waits for the downstream like any message
    sink = Sink(workdir)
    sink.port = port
    sink.start()
    try:
        msgs = sink.wait_messages(1, timeout=10)
        time.sleep(0.5)
        msgs = sink.messages()
        assert len(msgs) == 1, "only the DSN arrives, never the expired original"
        d = msgs[0]
        assert envelope(d) == ("", ["alice@mx.test"])
        assert b"report-type=delivery-status" in d
        assert b"Final-Recipient: rfc822; far@example.net" in d
        assert b"Action: failed" in d
        assert b"Status: 4.4.7" in d
        assert b"Message-ID: <expire@client.test>" in d
        wait_for(lambda: p.queue() == [], 10, what="the queue to empty")
    finally:
        sink.stop()


# ---- postern queue ---------------------------------------------------------

def test_queue_cli_empty(make_postern):
    p = make_postern()
    out = queue_cli(p)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "queue is empty"
    js = queue_cli(p, "--json")
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout) == []
