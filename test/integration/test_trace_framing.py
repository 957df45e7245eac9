"""Trace framing: `postern trace --message` names the account that sent the
message it is handed, or nobody. A Message-ID that an MTA downstream adds,
headers added, reordered or refolded on the way, a genuine trace header of
another user copied onto the message (at the top, renamed by the gate, or
inside an attached message) and a hop through a real Postfix must never
point the abuse desk at the wrong account."""

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from email import message_from_bytes
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from conftest import (HOSTNAME, IS_ROOT, USERS, Postern, Sink, free_port, make_dir, wait_for,
                      wait_port)
from test_trace import (EXIT_FOUND, EXIT_NOT_AUTHENTIC, bdat_send, login_raw, queued_qid,
                        raw_send, read_keys, strip_sink_line, trace, trace_header,
                        wait_delivered, write_file)

GATE_MSGID_RE = re.compile(rb"^Message-ID: <([a-z2-7]{26})@" + re.escape(HOSTNAME.encode())
                           + rb">\r\n", re.M)


# ---- helpers ------------------------------------------------------------------

def no_mid_msg(sender, subject, body=None):
    """A message as a careless client writes it: no Message-ID."""
    return (f"From: <{sender}>\r\nTo: <someone@example.net>\r\nSubject: {subject}\r\n"
            f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n"
            f"{body or 'Hello from ' + sender + '.'}\r\n").encode()


def with_mid(sender, subject, mid, body=None):
    return (f"From: <{sender}>\r\nTo: <someone@example.net>\r\nSubject: {subject}\r\n"
            f"Message-ID: {mid}\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n"
            f"{body or 'Hello from ' + sender + '.'}\r\n").encode()


def send(p, user, msg, rcpt="someone@example.net"):
    """One message over smtps as user; returns its queue id."""
    c = login_raw(p, user)
    qid = raw_send(c, f"{user}@{HOSTNAME}", [rcpt], msg)
    c.cmd("QUIT")
    c.close()
    return qid


def delivered(sink, marker, timeout=20):
    """The message at the sink containing marker, without the sink's line."""
    def look():
        for m in sink.messages():
            if marker in m:
                return m
        return None
    return strip_sink_line(wait_for(look, timeout, what=f"{marker!r} at the sink"))


def header_block(msg):
    return msg.split(b"\r\n\r\n", 1)[0]


def fields(msg, name):
    """The values of every top-level field called name (unfolded)."""
    head = re.sub(rb"\r\n[ \t]+", b" ", header_block(msg))
    return [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
            if line.lower().startswith(name.lower().encode() + b":")]


def check_json(p, name, data):
    path = write_file(p.base, name, data)
    r = trace(p, "--message", path, "--json")
    return r, (json.loads(r.stdout) if r.stdout.strip() else None)


def assert_names(p, name, data, account, qid):
    """--message says valid and names exactly this account and queue id."""
    r, out = check_json(p, name, data)
    assert r.returncode == EXIT_FOUND, r.stdout + r.stderr
    assert out["verdict"] == "valid", out
    assert out["record"]["account"] == account and out["record"]["qid"] == qid, out
    text = trace(p, "--message", write_file(p.base, name, data))
    assert text.returncode == EXIT_FOUND, text.stdout + text.stderr
    assert re.search(r"account\s+" + re.escape(account) + r"\b", text.stdout), text.stdout
    return out


def assert_not_named(p, name, data, *who):
    """--message names none of these accounts and queue ids, in text or JSON."""
    r, out = check_json(p, name, data)
    text = trace(p, "--message", write_file(p.base, name, data))
    for w in who:
        assert w not in r.stdout and w not in text.stdout, (w, r.stdout, text.stdout)
    return r, out, text


def mac2(key, kid, trace_id, t, message_id):
    """The v=2 MAC as trace/header.c documents it."""
    data = f"v2\n{HOSTNAME}\n{trace_id}\n{t}\n{kid}\n{message_id}".encode()
    return base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode()


def mac1(key, kid, trace_id, t, message_id):
    """The v=1 MAC of headers issued before v=2 (Message-ID with whitespace
    runs made one space)."""
    mid = re.sub(r"[ \t]+", " ", message_id.replace("\r", "").replace("\n", "")).strip()
    data = f"v1\n{HOSTNAME}\n{trace_id}\n{t}\n{kid}\n{mid}".encode()
    return base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode()


def attach(outer, inner):
    """outer (bytes, a whole message) with inner attached as message/rfc822."""
    head, body = outer.split(b"\r\n\r\n", 1)
    m = MIMEMultipart()
    m.attach(MIMEText(body.decode()))
    m.attach(MIMEMessage(message_from_bytes(inner)))
    enc = m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    mime_head, mime_body = enc.split(b"\r\n\r\n", 1)
    return head + b"\r\n" + mime_head + b"\r\n\r\n" + mime_body


@pytest.fixture(scope="module")
def gate(workdir, pki, sasldb):
    """One gate relaying to a capture sink, shared by the tests that only
    send and look."""
    sink = Sink(workdir).start()
    base = make_dir(tempfile.mkdtemp(prefix="p-framing-", dir=workdir))
    p = Postern(base, pki, sasldb, downstream=f"smtp://127.0.0.1:{sink.port}").start()
    p.sink = sink
    try:
        yield p
    finally:
        try:
            assert p.stop() == 0
            log = p.logtext()
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                assert marker not in log, f"{marker} in {p.log_path}"
        finally:
            sink.stop()


# ---- the Message-ID added on submission ---------------------------------------------

@pytest.mark.parametrize("how", ["smtps", "submission", "bdat"])
def test_submission_without_message_id_gets_one(gate, how):
    p = gate
    tag = f"no-mid-{how}-{os.urandom(4).hex()}"
    msg = no_mid_msg(f"alice@{HOSTNAME}", tag)
    if how == "smtps":
        qid = send(p, "alice", msg)
    elif how == "bdat":
        c = login_raw(p, "alice")
        qid = bdat_send(c, f"alice@{HOSTNAME}", "someone@example.net", [msg[:30], msg[30:]])
        c.close()
    else:
        c = p.submission()
        c.login("alice", USERS["alice"])
        c.mail(f"alice@{HOSTNAME}")
        c.rcpt("someone@example.net")
        qid = queued_qid(c.data(msg))
        c.quit()
    m = delivered(p.sink, tag.encode())
    mids = fields(m, "Message-ID")
    assert len(mids) == 1, m
    added = GATE_MSGID_RE.search(m)
    assert added, m
    # At the end of the header block, before the trace header; the rest as sent.
    assert m.index(added.group(0)) < m.index(b"X-Postern-Trace:") < m.index(b"\r\n\r\n")
    _, tags = trace_header(m)
    assert added.group(1).decode() == tags["id"]
    rec = wait_delivered(p, qid)
    assert rec["message_id"] == mids[0].decode()
    assert rec["body_sha256"] == hashlib.sha256(m).hexdigest()
    assert_names(p, f"{how}.eml", m, "alice", qid)


def test_mx_does_not_add_message_id(gate):
    """An MTA relaying for someone else leaves the header alone (RFC 5321
    6.4): only the listeners that require AUTH act as a submission agent."""
    p = gate
    tag = f"mx-{os.urandom(4).hex()}"
    c = p.raw("mx")
    assert c.reply()[0] == 220
    c.cmd("EHLO peer.test")
    assert c.cmd("STARTTLS")[0] == 220
    c.starttls()
    c.cmd("EHLO peer.test")
    qid = raw_send(c, "someone@example.net", [f"alice@{HOSTNAME}"],
                   no_mid_msg("someone@example.net", tag))
    c.close()
    m = delivered(p.sink, tag.encode())
    assert fields(m, "Message-ID") == [], m
    assert (wait_delivered(p, qid)["message_id"] or "") == ""


def test_client_message_id_is_kept(gate):
    p = gate
    mid = f"<kept-{os.urandom(4).hex()}@client.test>"
    qid = send(p, "bob", with_mid(f"bob@{HOSTNAME}", "kept", mid))
    m = delivered(p.sink, mid.encode())
    assert fields(m, "Message-ID") == [mid.encode()]
    assert not GATE_MSGID_RE.search(m)
    assert wait_delivered(p, qid)["message_id"] == mid


def test_message_id_added_without_trace_key(workdir, pki, sasldb):
    """The Message-ID is the submission agent's job, not the MAC's: it is
    added with tracing headers off too, and a client's X-Postern-Trace is
    still renamed (a key configured later must not verify it as ours)."""
    sink = Sink(workdir).start()
    base = make_dir(tempfile.mkdtemp(prefix="p-nokey-", dir=workdir))
    p = Postern(base, pki, sasldb, downstream=f"smtp://127.0.0.1:{sink.port}")
    with open(p.conf) as f:
        conf = f.read()
    conf, n = re.subn(r' key_file = "[^"]*"', "", conf)
    assert n == 1
    with open(p.conf, "w") as f:
        f.write(conf)
    p.start()
    try:
        tag = f"nokey-{os.urandom(4).hex()}"
        msg = no_mid_msg(f"alice@{HOSTNAME}", tag).replace(
            b"Subject:", b"X-Postern-Trace: v=1; g=mx.test; id=x\r\nSubject:")
        qid = send(p, "alice", msg)
        m = delivered(sink, tag.encode())
        assert b"\r\nX-Postern-Trace:" not in m and not m.startswith(b"X-Postern-Trace:"), m
        assert b"X-Postern-Trace-Prior: v=1; g=mx.test; id=x\r\n" in m, m
        mids = fields(m, "Message-ID")
        assert len(mids) == 1 and GATE_MSGID_RE.search(m), m
        rec = wait_delivered(p, qid)
        assert rec["message_id"] == mids[0].decode()
        assert rec["body_sha256"] == hashlib.sha256(m).hexdigest()
    finally:
        try:
            assert p.stop() == 0
        finally:
            sink.stop()


def test_downstream_adding_message_id_changes_nothing(gate):
    """What a relay downstream does to a message without a Message-ID
    (Postfix: "Message-Id:" and "Date:" at the end of the header block, its
    Received at the top): the lookup still names the sender."""
    p = gate
    tag = f"downstream-{os.urandom(4).hex()}"
    qid = send(p, "alice", no_mid_msg(f"alice@{HOSTNAME}", tag).replace(b"Date: Mon", b"X-Date: Mon"))
    m = delivered(p.sink, tag.encode())
    head, body = m.split(b"\r\n\r\n", 1)
    if not fields(m, "Message-ID"):
        head += b"\r\nMessage-Id: <20240101000000.4F2A1@relay.example>"
    head += b"\r\nDate: Mon,  1 Jan 2024 00:00:01 +0000 (UTC)"
    relayed = (b"Received: from mx.test (mx.test [127.0.0.1])\r\n\tby relay.example (Postfix)"
               b" with ESMTP id 4F2A1\r\n\tfor <someone@example.net>; Mon,  1 Jan 2024\r\n"
               + head + b"\r\n\r\n" + body)
    assert_names(p, "downstream.eml", relayed, "alice", qid)


# ---- reordered, refolded, added to ---------------------------------------------------

def refold_everywhere(field):
    """A header field refolded at every space, with spaces for tabs."""
    name, value = field.split(b":", 1)
    value = re.sub(rb"\r\n[ \t]+", b" ", value)
    return name + b":" + value.replace(b" ", b"\r\n  ")


def test_reordered_refolded_and_added_headers(gate):
    p = gate
    mid = f"<reorder-{os.urandom(4).hex()}@client.test>"
    qid = send(p, "bob", with_mid(f"bob@{HOSTNAME}", "reorder me", mid))
    m = delivered(p.sink, mid.encode())
    head, body = m.split(b"\r\n\r\n", 1)
    flds = re.split(rb"\r\n(?![ \t])", head)
    assert len(flds) >= 6
    # Every field refolded, the order reversed, headers added at the top,
    # in the middle and at the end.
    flds = [refold_everywhere(f) for f in reversed(flds)]
    flds.insert(0, b"Received: from relay.example by desk.example; Mon, 1 Jan 2024")
    flds.insert(len(flds) // 2, b"X-Spam-Status: No, score=0.1")
    flds.append(b"X-Filtered: yes")
    out = b"\r\n".join(flds) + b"\r\n\r\n" + body
    assert b"Message-ID:\r\n  " + mid.encode() in out
    assert_names(p, "reordered.eml", out, "bob", qid)
    # Folded where no whitespace was (inside the MAC, inside the
    # Message-ID) and a comment after the Message-ID, as broken or fussy
    # software does.
    whole, tags = trace_header(m)
    broken = m.replace(tags["m"].encode(), tags["m"][:20].encode() + b"\r\n " + tags["m"][20:].encode())
    broken = broken.replace(b"Message-ID: " + mid.encode(),
                            b"Message-ID: " + mid[:9].encode() + b"\r\n\t" + mid[9:].encode() +
                            b" (refolded)")
    assert broken != m
    assert_names(p, "broken-fold.eml", broken, "bob", qid)


def test_v1_headers_still_verify(gate):
    """Headers issued before v=2 (MAC over the Message-ID with whitespace
    runs made one space) keep verifying."""
    p = gate
    mid = f"<legacy-{os.urandom(4).hex()}@client.test>"
    qid = send(p, "alice", with_mid(f"alice@{HOSTNAME}", "legacy", mid))
    m = delivered(p.sink, mid.encode())
    whole, tags = trace_header(m)
    key = read_keys(p.keys)[tags["k"]]
    v1 = (f"X-Postern-Trace: v=1; g={HOSTNAME}; id={tags['id']}; t={tags['t']};\r\n"
          f"\tk={tags['k']}; m={mac1(key, tags['k'], tags['id'], tags['t'], mid)}\r\n").encode()
    assert_names(p, "v1.eml", m.replace(whole, v1), "alice", qid)
    # and the v=2 MAC is the documented one
    assert tags["v"] == "2"
    assert tags["m"] == mac2(key, tags["k"], tags["id"], tags["t"], mid)


# ---- copied genuine headers of another user -------------------------------------------

@pytest.fixture(scope="module")
def bobs(gate):
    """A message bob sent, as delivered, with its queue id."""
    mid = f"<bob-genuine-{os.urandom(4).hex()}@client.test>"
    qid = send(gate, "bob", with_mid(f"bob@{HOSTNAME}", "bob's own", mid))
    return dict(qid=qid, mid=mid, msg=delivered(gate.sink, mid.encode()))


def test_header_transplanted_onto_another_message_is_copied(gate, bobs):
    """bob's genuine trace header in place of alice's: genuine, but issued
    for another message; neither bob nor his message is named."""
    p = gate
    mid = f"<alice-victim-{os.urandom(4).hex()}@client.test>"
    send(p, "alice", with_mid(f"alice@{HOSTNAME}", "alice's", mid))
    m = delivered(p.sink, mid.encode())
    bob_hdr, bob_tags = trace_header(bobs["msg"])
    own, _ = trace_header(m)
    framed = m.replace(own, bob_hdr)
    r, out, text = assert_not_named(p, "transplant.eml", framed, "bob", bobs["qid"])
    assert r.returncode == EXIT_NOT_AUTHENTIC and text.returncode == EXIT_NOT_AUTHENTIC, r.stdout
    assert out["verdict"] == "copied" and out["record"] is None, out
    assert out["trace_id"] == bob_tags["id"]
    assert "copied" in text.stdout, text.stdout


def test_attached_genuine_message_never_outranks_the_top_level(gate, bobs):
    """alice attaches bob's delivered message (genuine header and all) to
    her own: the top level decides, bob's header is only quoted."""
    p = gate
    tag = f"attach-{os.urandom(4).hex()}"
    outer = with_mid(f"alice@{HOSTNAME}", tag, f"<{tag}@client.test>")
    qid = send(p, "alice", attach(outer, bobs["msg"]))
    m = delivered(p.sink, tag.encode())
    _, bob_tags = trace_header(bobs["msg"])
    out = assert_names(p, "attached.eml", m, "alice", qid)
    quoted = [q for q in out["quoted"] if q["trace_id"] == bob_tags["id"]]
    assert quoted and quoted[0]["where"] == "enclosed" and quoted[0]["verdict"] == "valid", out

    # The top-level header damaged, altered or gone on the way: bob is
    # never named in its place.
    own, tags = trace_header(m)
    top = header_block(m)
    damaged = {
        "forged-mac": m.replace(own, own.replace(tags["m"].encode(), b"A" * 43 + b"=")),
        "malformed": m.replace(own, b"X-Postern-Trace: v=2; g=mx.test; id=oops\r\n"),
        "mid-altered": top.replace(f"<{tag}@client.test>".encode(), b"<other@client.test>")
        + m[len(top):],
        "stripped": m.replace(own, b""),
    }
    for name, msg in damaged.items():
        assert msg != m, name
        r, out, text = assert_not_named(p, f"attached-{name}.eml", msg, "bob", bobs["qid"])
        assert out["verdict"] != "valid" and out["record"] is None, (name, out)
        assert any(q["trace_id"] == bob_tags["id"] for q in out["quoted"]), (name, out)


def test_attached_to_message_without_message_id(gate, bobs):
    """The reported case: alice's message without a Message-ID, bob's
    genuine message attached, a Message-ID added downstream."""
    p = gate
    tag = f"attach-nomid-{os.urandom(4).hex()}"
    qid = send(p, "alice", attach(no_mid_msg(f"alice@{HOSTNAME}", tag), bobs["msg"]))
    m = delivered(p.sink, tag.encode())
    top = header_block(m)
    if not fields(m, "Message-ID"):
        m = top + b"\r\nMessage-Id: <20240101000000.4F2A1@relay.example>" + m[len(top):]
    assert_names(p, "attach-nomid.eml", m, "alice", qid)


def test_copied_header_is_renamed_and_only_evidence(gate, bobs):
    """alice sends bob's genuine header (and bob's Message-ID) at the top of
    her message: the gate renames it X-Postern-Trace-Prior; the lookup names
    alice and shows the renamed header as evidence, never as the sender."""
    p = gate
    bob_hdr, bob_tags = trace_header(bobs["msg"])
    tag = f"prior-{os.urandom(4).hex()}"
    msg = with_mid(f"alice@{HOSTNAME}", tag, bobs["mid"])
    msg = msg.replace(b"Subject:", bob_hdr + b"Subject:")
    qid = send(p, "alice", msg)
    m = delivered(p.sink, tag.encode())
    assert b"X-Postern-Trace-Prior:" in m
    out = assert_names(p, "prior.eml", m, "alice", qid)
    renamed = [q for q in out["quoted"] if q["where"] == "renamed"]
    assert len(renamed) == 1 and renamed[0]["trace_id"] == bob_tags["id"], out
    text = trace(p, "--message", write_file(p.base, "prior.eml", m))
    assert not re.search(r"account\s+bob", text.stdout) and bobs["qid"] not in text.stdout, (
        text.stdout)
    # Without the gate's own header, the renamed one is still no attribution
    # (the message carries bob's Message-ID, so only accounts and queue ids
    # are looked for).
    own, _ = trace_header(m)
    r, out, text = assert_not_named(p, "prior-only.eml", m.replace(own, b""), bobs["qid"], qid)
    assert not re.search(r"account\s", text.stdout), text.stdout
    assert out["verdict"] == "missing" and out["record"] is None, out
    assert [q["trace_id"] for q in out["quoted"]] == [bob_tags["id"]], out


# ---- a real Postfix as the relay hop ---------------------------------------------------

POSTFIX = "/usr/sbin/postfix"

MASTER_CF = """\
{listen} inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """A private Postfix (its own configuration directory, queue and log;
    see test/bench/postfix.sh) on a loopback port, relaying everything to
    one downstream. Like a site's own relay it fixes up what its clients
    send: a missing Message-Id and Date are added (always_add_missing_headers)."""

    def __init__(self, base, downstream_port):
        self.dir = make_dir(os.path.join(base, "postfix"))
        self.etc = make_dir(os.path.join(self.dir, "etc"))
        self.queue = make_dir(os.path.join(self.dir, "queue"))
        self.data = make_dir(os.path.join(self.dir, "data"))
        self.log = os.path.join(self.dir, "maillog")
        self.port = free_port()
        self.master = None
        shutil.chown(self.data, "postfix")
        open(self.log, "w").close()
        shutil.chown(self.log, "postfix")
        main = f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.test
mydomain = relay.test
myorigin = relay.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
local_header_rewrite_clients = permit_mynetworks
always_add_missing_headers = yes
relayhost = [127.0.0.1]:{downstream_port}
smtp_dns_support_level = disabled
smtp_tls_security_level = none
maillog_file = {self.log}
maillog_file_prefixes = {self.dir}
biff = no
"""
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(main)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))

    def run(self, *args):
        r = subprocess.run([POSTFIX, "-c", self.etc, *args], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, (args, r.stdout, r.stderr, self.logtext())

    def start(self):
        self.run("check")
        self.run("start")
        self.master = int(wait_for(self.master_pid, 15, what="the Postfix master's PID"))
        wait_port(self.port)
        return self

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    def stop(self):
        if not self.master:
            return
        subprocess.run([POSTFIX, "-c", self.etc, "stop"], capture_output=True, timeout=60)
        deadline = time.time() + 15
        while time.time() < deadline and os.path.exists(f"/proc/{self.master}"):
            time.sleep(0.1)
        if os.path.exists(f"/proc/{self.master}"):
            os.kill(self.master, signal.SIGKILL)
        self.master = None

    def logtext(self):
        with open(self.log, errors="replace") as f:
            return f.read()


@pytest.fixture(scope="module")
def via_postfix(workdir, pki, sasldb):
    """posternd -> Postfix -> sink."""
    if not os.path.exists(POSTFIX):
        pytest.skip("postfix is not installed (scripts/install-deps.sh)")
    if not IS_ROOT:
        pytest.skip("a private Postfix instance needs root")
    sink = Sink(workdir).start()
    base = make_dir(tempfile.mkdtemp(prefix="p-postfix-", dir=workdir))
    pf = Postfix(base, sink.port)
    p = None
    try:
        pf.start()
        p = Postern(base, pki, sasldb, downstream=f"smtp://127.0.0.1:{pf.port}").start()
        p.sink, p.postfix = sink, pf
        yield p
    finally:
        try:
            if p:
                assert p.stop() == 0
        finally:
            try:
                pf.stop()
            finally:
                sink.stop()


def through_postfix(p, marker):
    m = delivered(p.sink, marker)
    assert re.search(rb"^Received: from [^\r\n]*\r\n\tby relay\.test \(Postfix\)", m, re.M), m
    return m


def test_postfix_hop_without_message_id(via_postfix):
    p = via_postfix
    tag = f"pf-nomid-{os.urandom(4).hex()}"
    qid = send(p, "alice", no_mid_msg(f"alice@{HOSTNAME}", tag))
    m = through_postfix(p, tag.encode())
    # Postfix added nothing but its Received header: the Message-ID is ours.
    mids = fields(m, "Message-ID")
    assert len(mids) == 1 and GATE_MSGID_RE.search(m), m
    assert wait_delivered(p, qid)["message_id"] == mids[0].decode()
    assert_names(p, "pf-nomid.eml", m, "alice", qid)


def test_postfix_hop_with_message_id(via_postfix):
    p = via_postfix
    mid = f"<pf-{os.urandom(4).hex()}@client.test>"
    qid = send(p, "bob", with_mid(f"bob@{HOSTNAME}", "via postfix", mid))
    m = through_postfix(p, mid.encode())
    assert fields(m, "Message-ID") == [mid.encode()]
    assert_names(p, "pf-mid.eml", m, "bob", qid)


def test_postfix_hop_attached_message_of_another_user(via_postfix):
    """bob's message as it arrived through Postfix, attached by alice to a
    message without a Message-ID, through Postfix again: alice."""
    p = via_postfix
    mid = f"<pf-bob-{os.urandom(4).hex()}@client.test>"
    qid_bob = send(p, "bob", with_mid(f"bob@{HOSTNAME}", "bob via postfix", mid))
    bob_msg = through_postfix(p, mid.encode())
    tag = f"pf-attach-{os.urandom(4).hex()}"
    qid = send(p, "alice", attach(no_mid_msg(f"alice@{HOSTNAME}", tag), bob_msg))
    m = through_postfix(p, tag.encode())
    out = assert_names(p, "pf-attach.eml", m, "alice", qid)
    assert qid_bob not in json.dumps(out)
    _, bob_tags = trace_header(bob_msg)
    assert [q["trace_id"] for q in out["quoted"]] == [bob_tags["id"]], out


def test_postfix_hop_mx_without_message_id_is_not_attributed(via_postfix):
    """A message from a peer MTA without a Message-ID gets none from the
    gate (it is no submission agent there); Postfix adds one. The header
    was signed for a message without one, so it cannot vouch for this
    message: nothing is attributed."""
    p = via_postfix
    tag = f"pf-mx-{os.urandom(4).hex()}"
    c = p.raw("mx")
    assert c.reply()[0] == 220
    c.cmd("EHLO peer.test")
    assert c.cmd("STARTTLS")[0] == 220
    c.starttls()
    c.cmd("EHLO peer.test")
    qid = raw_send(c, "someone@example.net", [f"alice@{HOSTNAME}"],
                   no_mid_msg("someone@example.net", tag))
    c.close()
    m = through_postfix(p, tag.encode())
    mids = fields(m, "Message-ID")
    assert len(mids) == 1 and mids[0].endswith(b"@relay.test>"), m
    r, out, text = assert_not_named(p, "pf-mx.eml", m, qid)
    assert r.returncode == EXIT_NOT_AUTHENTIC and out["verdict"] == "copied", out
    assert "no Message-ID" in text.stdout, text.stdout
