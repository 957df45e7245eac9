"""DNS against a real DNS server (ldns-testns on 127.0.0.1): the reverse
name in the Received header and the trace record, DNSBL refusals on the mx
listener, and a server that never answers."""

import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import HERE, wait_for

TESTNS = "/usr/bin/ldns-testns"


def start_testns():
    """ldns-testns on a random port; (process, port), or (None, None) when
    the port it drew was taken and it gave up."""
    proc = subprocess.Popen([TESTNS, "-r", os.path.join(HERE, "dns.data")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"Listening on port (\d+)", line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    proc.wait()
    return None, None


@pytest.fixture
def dns_server():
    if not os.path.exists(TESTNS):
        pytest.skip("ldns-testns (ldnsutils) is not installed")
    for _ in range(5):
        proc, port = start_testns()
        if proc:
            break
    assert proc, "ldns-testns did not start"
    yield port
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def dead_server():
    """A UDP port that takes queries and never answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


def dns_conf(port, extra=""):
    return f'dns {{ servers = {{ "127.0.0.1:{port}" }} timeout = "2s" {extra} }}'


def mail_from(p, source, mode="mx"):
    c = p.raw(mode, source=source)
    assert c.reply()[0] == 220
    c.cmd("EHLO client.test")
    return c, c.cmd("MAIL FROM:<someone@elsewhere.test>")


MX_PLAIN = {"mx": "require_tls = false"}


def test_dnsbl_listed_client_is_refused(make_postern, dns_server):
    p = make_postern(listen_extra=MX_PLAIN, extra=dns_conf(dns_server, 'dnsbl = { "bl.example.test" }'))
    c, (code, lines) = mail_from(p, "127.0.0.1")
    assert code == 554, lines
    assert lines[0].startswith("554 5.7.1") and "bl.example.test" in lines[0], lines
    assert "listed for testing" in lines[0]
    c.close()

    def refused_by_dnsbl():
        out = p.postern("stats", "-c", p.conf, "--json")
        assert out.returncode == 0, out.stderr
        rules = {e["key"]: e["count"] for e in json.loads(out.stdout)["rejected_by_rule"]}
        return rules.get("dnsbl")
    # Refusals reach the trace store with the next commit (within 100 ms).
    assert wait_for(refused_by_dnsbl, 5, what="the refusal in postern stats") == 1


def test_dnsbl_unlisted_client_is_accepted(make_postern, dns_server, sink):
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}", listen_extra=MX_PLAIN,
                     extra=dns_conf(dns_server, 'dnsbl = { "bl.example.test" }'))
    c, (code, lines) = mail_from(p, "127.0.0.2")
    assert code == 250, lines
    assert c.cmd("RCPT TO:<user@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    code, lines = c.cmd("Subject: from an unlisted host\r\n\r\nhello\r\n.")
    assert code == 250, lines
    c.close()
    m = sink.wait_messages(1)[0]
    assert b"(unknown [127.0.0.2])" in m


def test_dnsbl_tag_only_accepts_and_logs(make_postern, dns_server):
    p = make_postern(listen_extra=MX_PLAIN,
                     extra=dns_conf(dns_server, 'dnsbl = { "bl.example.test" } dnsbl_action = "tag"'))
    c, (code, lines) = mail_from(p, "127.0.0.1")
    assert code == 250, lines
    c.close()
    assert re.search(r"event=dnsbl .*zone=bl\.example\.test listed=yes action=tag", p.logtext())


def test_reverse_name_in_received_and_trace(make_postern, dns_server, sink):
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}", extra=dns_conf(dns_server))
    c = p.raw("smtps", source="127.0.0.1")
    assert c.reply()[0] == 220
    c.login("alice")
    assert c.cmd("MAIL FROM:<alice@mx.test>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.net>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    code, lines = c.cmd("Subject: named\r\n\r\nhi\r\n.")
    assert code == 250, lines
    qid = lines[0].split()[-1]
    c.close()
    m = sink.wait_messages(1)[0]
    assert b"Received: from client.test (client.example.test [127.0.0.1])" in m
    out = p.postern("trace", "-c", p.conf, "--qid", qid, "--json")
    assert out.returncode == 0, out.stderr
    assert "client.example.test" in out.stdout


@pytest.mark.parametrize("outcome", ["tempfail", "pass"])
def test_dns_server_that_never_answers(make_postern, dead_server, outcome):
    p = make_postern(listen_extra=MX_PLAIN,
                     extra=f'dns {{ servers = {{ "127.0.0.1:{dead_server}" }} timeout = "1s" '
                           f'dnsbl = {{ "bl.example.test" }} on_timeout = "{outcome}" }}')
    t0 = time.monotonic()
    c, (code, lines) = mail_from(p, "127.0.0.1")
    elapsed = time.monotonic() - t0
    assert elapsed < 4, f"took {elapsed:.1f}s"
    if outcome == "tempfail":
        assert code == 451 and lines[0].startswith("451 4.7.1"), lines
    else:
        assert code == 250, lines
    # the session goes on either way
    assert c.cmd("NOOP")[0] == 250
    c.close()
