"""The gate end to end: a real client submits over TLS with AUTH and the
message reaches the downstream with our Received header."""

import re
import subprocess

from conftest import HOSTNAME, USERS


def test_smtps_auth_plain_delivers(postern):
    with postern.smtps() as c:
        c.login("alice", USERS["alice"])
        refused = c.sendmail("alice@mx.test", ["rcpt@example.net"],
                             b"Subject: hello\r\n\r\nbody line\r\n")
        assert refused == {}
    msgs = postern.sink.wait_messages(1)
    m = msgs[0]
    assert b"from=<alice@mx.test>" in m and b"rcpt=<rcpt@example.net>" in m
    assert b"Subject: hello" in m and b"body line" in m
    # Our Received header comes first and says what an abuse desk needs.
    received = re.search(rb"\r\n(Received: from \S+ \(unknown \[127\.0\.0\.1\]\)\r\n"
                         rb"(?:\t[^\r]*\r\n)+)", m)
    assert received, m
    received = received.group(1)
    assert b"with ESMTPSA id " in received
    assert b"using TLSv1.3" in received
    assert b"by mx.test (Postern)" in received


def test_swaks_submission_starttls(postern):
    out = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{postern.ports['submission']}", "--tls",
         "--auth", "LOGIN", "--auth-user", "bob", "--auth-password", USERS["bob"],
         "--from", "bob@mx.test", "--to", "x@example.net", "--header", "Subject: via swaks"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"250 2\.0\.0 Ok: queued as [0-9A-V]{16}", out.stdout)
    m = postern.sink.wait_messages(1)[0]
    assert b"Subject: via swaks" in m
    assert HOSTNAME.encode() in m
