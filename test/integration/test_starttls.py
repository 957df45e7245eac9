"""STARTTLS (RFC 3207) on the submission and mx listeners: what is offered
and refused before TLS, the CVE-2011-0411 command injection, the reset after
the handshake, the mx policy (no AUTH, local domains only), a real
openssl s_client, and old protocol versions refused."""

import base64
import re
import socket
import ssl
import subprocess
import time
import warnings

import pytest

from conftest import HOSTNAME, USERS, wait_for, enh, expect






def keywords(lines):
    return [l[4:].upper() for l in lines[1:]]


def plain_token(user="alice"):
    return base64.b64encode(f"\0{user}\0{USERS[user]}".encode()).decode()


def open_plain(p, mode, ehlo=True):
    c = p.raw(mode, timeout=5)
    expect(c.reply(), 220)
    if ehlo:
        expect(c.cmd("EHLO client.test"), 250)
    return c


def open_tls(p, mode):
    """Plaintext connection, EHLO, STARTTLS, handshake, EHLO again."""
    c = open_plain(p, mode)
    expect(c.cmd("STARTTLS"), 220, "2.0.0")
    c.starttls()
    lines = expect(c.cmd("EHLO client.test"), 250)
    return c, lines


# ---- submission before TLS -------------------------------------------------------

def test_submission_ehlo_before_tls(postern):
    c = open_plain(postern, "submission", ehlo=False)
    lines = expect(c.cmd("EHLO client.test"), 250)
    kw = keywords(lines)
    assert "STARTTLS" in kw, lines
    assert not any(k.startswith("AUTH") for k in kw), lines


def test_submission_auth_before_tls(postern):
    c = open_plain(postern, "submission")
    expect(c.cmd("AUTH PLAIN " + plain_token()), 538, "5.7.11")
    expect(c.cmd("AUTH LOGIN"), 538, "5.7.11")
    # no credentials were taken: still unauthenticated after TLS
    expect(c.cmd("STARTTLS"), 220, "2.0.0")
    c.starttls()
    expect(c.cmd("EHLO client.test"), 250)
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 530, "5.7.0")


def test_submission_mail_before_tls(postern):
    c = open_plain(postern, "submission")
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 530, "5.7.0")
    expect(c.cmd("RCPT TO:<bob@example.net>"), 503, "5.5.1")


def test_submission_after_tls_offers_auth_not_starttls(postern):
    c, lines = open_tls(postern, "submission")
    kw = keywords(lines)
    assert "STARTTLS" not in kw, lines
    auth = [k for k in kw if k.startswith("AUTH ")]
    assert auth and "PLAIN" in auth[0].split(), lines
    expect(c.cmd("AUTH PLAIN " + plain_token("bob")), 235, "2.7.0")
    expect(c.cmd("MAIL FROM:<bob@mx.test>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<far@example.net>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    c.send("Subject: via 587\r\n\r\nsubmitted\r\n.\r\n")
    expect(c.reply(), 250, "2.0.0")
    m = postern.sink.wait_messages(1)[0]
    assert b"with ESMTPSA id " in m and b"submitted" in m


# ---- CVE-2011-0411 ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["submission", "mx"])
def test_starttls_injection(postern, mode):
    c = open_plain(postern, mode)
    c.send(b"STARTTLS\r\nRSET\r\n")
    expect(c.reply(), 220, "2.0.0")
    assert c.buf == b"", c.buf
    c.starttls()
    # the first reply over TLS must answer our EHLO, not the injected RSET
    code, lines = c.cmd("EHLO client.test")
    assert code == 250, lines
    assert len(lines) > 1 and lines[0].startswith(f"250-{HOSTNAME}"), lines
    assert "PIPELINING" in keywords(lines)
    expect(c.cmd("NOOP"), 250, "2.0.0")
    assert c.buf == b""
    wait_for(lambda: "event=starttls_injection" in postern.logtext(), timeout=3,
             what="event=starttls_injection in the log")


# ---- STARTTLS twice, reset ---------------------------------------------------------------

def test_starttls_twice(postern):
    c, _ = open_tls(postern, "submission")
    code, lines = c.cmd("STARTTLS")
    assert code in (502, 503), lines
    assert enh(lines).startswith("5."), lines
    # the TLS session goes on
    expect(c.cmd("NOOP"), 250, "2.0.0")


def test_starttls_on_smtps_refused(postern):
    c = postern.raw("smtps", timeout=5)
    expect(c.reply(), 220)
    expect(c.cmd("EHLO client.test"), 250)
    code, lines = c.cmd("STARTTLS")
    assert code in (502, 503), lines
    expect(c.cmd("NOOP"), 250, "2.0.0")


def test_starttls_resets_session(postern):
    c = open_plain(postern, "submission")
    expect(c.cmd("STARTTLS"), 220, "2.0.0")
    c.starttls()
    # RFC 3207 4.2: the EHLO before TLS is forgotten
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 503, "5.5.1")
    expect(c.cmd("AUTH PLAIN " + plain_token()), 503, "5.5.1")
    expect(c.cmd("EHLO client.test"), 250)
    expect(c.cmd("AUTH PLAIN " + plain_token()), 235, "2.7.0")
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")


# ---- the mx listener -------------------------------------------------------------------

def test_mx_before_tls(postern):
    c = open_plain(postern, "mx", ehlo=False)
    lines = expect(c.cmd("EHLO peer.test"), 250)
    kw = keywords(lines)
    assert "STARTTLS" in kw, lines
    assert not any(k.startswith("AUTH") for k in kw), lines
    expect(c.cmd("MAIL FROM:<someone@remote.test>"), 530, "5.7.0")
    expect(c.cmd("RCPT TO:<user@example.org>"), 503, "5.5.1")


def test_mx_after_tls(postern):
    c, lines = open_tls(postern, "mx")
    kw = keywords(lines)
    assert not any(k.startswith("AUTH") for k in kw), lines
    assert "STARTTLS" not in kw, lines
    expect(c.cmd("AUTH PLAIN " + plain_token()), 503, "5.5.1")
    expect(c.cmd("MAIL FROM:<someone@remote.test>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<someone@elsewhere.net>"), 550, "5.7.1")
    expect(c.cmd("RCPT TO:<user@example.org>"), 250, "2.1.5")
    expect(c.cmd("RCPT TO:<other@MX.TEST>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    c.send("Subject: inbound\r\n\r\nfrom a peer\r\n.\r\n")
    expect(c.reply(), 250, "2.0.0")
    m = postern.sink.wait_messages(1)[0]
    env = m.split(b"\r\n", 1)[0]
    assert b"from=<someone@remote.test>" in env
    assert b"<user@example.org>" in env and b"<other@MX.TEST>" in env
    assert b"elsewhere.net" not in env
    assert re.search(rb"by mx\.test \(Postern\) with ESMTPS id ", m), m[:500]
    assert b"from a peer" in m
    time.sleep(0.2)
    assert len(postern.sink.messages()) == 1


# ---- real clients, protocol versions ----------------------------------------------------

def test_openssl_s_client_starttls(postern):
    out = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect",
         f"127.0.0.1:{postern.ports['submission']}", "-CAfile", postern.pki.ca,
         "-verify_return_error", "-verify_hostname", HOSTNAME, "-brief", "-ign_eof",
         "-crlf"],
        input="QUIT\n", capture_output=True, text=True, timeout=15)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "TLSv1.3" in text, text
    assert "Verification: OK" in text, text
    # QUIT went over TLS and was answered
    assert re.search(r"^221 ", out.stdout, re.M), text


def _legacy_ctx(max_version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = max_version
    # let this client offer what the local OpenSSL policy would forbid
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def test_tls11_refused_on_smtps(postern):
    port = postern.ports["smtps"]
    # control: the same client, allowed TLS 1.2, gets through
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with _legacy_ctx(ssl.TLSVersion.TLSv1_2).wrap_socket(s) as t:
            assert t.version() == "TLSv1.2"
            assert t.recv(100).startswith(b"220 ")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx11 = _legacy_ctx(ssl.TLSVersion.TLSv1_1)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            ctx11.wrap_socket(s)
    log = wait_for(lambda: "event=tls_error" in postern.logtext() and postern.logtext(),
                   timeout=3, what="event=tls_error in the log")
    assert "version=TLSv1.1" not in log and "version=TLSv1 " not in log
