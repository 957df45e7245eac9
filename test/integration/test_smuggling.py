"""SMTP smuggling (SEC Consult, December 2023): a message whose content
holds an end-of-data sequence other than CRLF "." CRLF, followed by a second
SMTP transaction, must be refused as a whole (554 5.6.0), never split into
two messages. Bare LF and bare CR in command lines are refused too
(RFC 5321 2.3.8, 4.1.1.4)."""

import socket
import ssl
import time

import pytest

from conftest import expect


VARIANTS = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
    "CRLF.LF": b"\r\n.\n",
    "CR.LF": b"\r.\n",
    "LF.CR": b"\n.\r",
    "CRLF.CRCRLF": b"\r\n.\r\r\n",
}

SMUGGLED = (b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
            b"smuggled\r\n")
GRACE = 0.3






def open_smtps(p):
    c = p.raw("smtps", timeout=5)
    expect(c.reply(), 220)
    c.login("alice")
    return c


def open_mx(p):
    c = p.raw("mx", timeout=5)
    expect(c.reply(), 220)
    expect(c.cmd("EHLO peer.test"), 250)
    expect(c.cmd("STARTTLS"), 220, "2.0.0")
    c.starttls()
    expect(c.cmd("EHLO peer.test"), 250)
    return c


def no_more_replies(c, wait=0.1):
    """Nothing buffered and nothing else arriving: no reply to a smuggled
    command is waiting."""
    if c.buf:
        return False
    c.sock.settimeout(wait)
    try:
        data = c.sock.recv(4096)
    except (socket.timeout, ssl.SSLWantReadError):
        return True
    finally:
        c.sock.settimeout(5)
    c.buf += data
    return False


def attack(p, c, sender, rcpt, seq):
    expect(c.cmd(f"MAIL FROM:<{sender}>"), 250, "2.1.0")
    expect(c.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    body = b"From: <" + sender.encode() + b">\r\nSubject: innocent\r\n\r\nhello" + seq + SMUGGLED
    c.send(body + b"\r\n.\r\n")
    expect(c.reply(), 554, "5.6.0")
    # one reply only: the "MAIL", "RCPT" and "DATA" inside were not commands
    expect(c.cmd("NOOP"), 250, "2.0.0")
    assert no_more_replies(c), c.buf
    # and there is no transaction left over
    expect(c.cmd("RCPT TO:<" + rcpt + ">"), 503, "5.5.1")
    # nothing was queued (marker_only then checks the sink got nothing)
    assert p.queue() == []
    assert "event=queued" not in p.logtext()
    assert p.sink.messages() == []


def marker_only(p, c, sender, rcpt):
    """A clean message on the same session arrives, and is all that ever did."""
    expect(c.cmd(f"MAIL FROM:<{sender}>"), 250, "2.1.0")
    expect(c.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    c.send(b"Subject: marker\r\n\r\nmarker body\r\n.\r\n")
    expect(c.reply(), 250, "2.0.0")
    p.sink.wait_messages(1, timeout=10)
    time.sleep(0.2)
    msgs = p.sink.messages()
    assert len(msgs) == 1, msgs
    assert b"marker body" in msgs[0]
    assert b"smuggled" not in msgs[0] and b"evil@x" not in msgs[0]


@pytest.mark.parametrize("seq", list(VARIANTS.values()), ids=list(VARIANTS))
def test_smuggling_smtps(postern, seq):
    c = open_smtps(postern)
    attack(postern, c, "alice@mx.test", "victim@example.org", seq)
    marker_only(postern, c, "alice@mx.test", "victim@example.org")


@pytest.mark.parametrize("seq", list(VARIANTS.values()), ids=list(VARIANTS))
def test_smuggling_mx(postern, seq):
    c = open_mx(postern)
    attack(postern, c, "someone@remote.test", "victim@example.org", seq)
    marker_only(postern, c, "someone@remote.test", "victim@example.org")


def test_variants_split_across_writes(postern):
    """The same attack with the sequence cut between two TCP writes (and two
    TLS records): the decoder must keep its state across reads."""
    c = open_smtps(postern)
    for seq in VARIANTS.values():
        expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<victim@example.org>"), 250, "2.1.5")
        expect(c.cmd("DATA"), 354)
        body = b"Subject: split\r\n\r\nhello" + seq + SMUGGLED + b"\r\n.\r\n"
        cut = len(b"Subject: split\r\n\r\nhello") + 2
        for part in (body[:cut], body[cut:]):
            c.send(part)
            time.sleep(0.02)
        expect(c.reply(), 554, "5.6.0")
    expect(c.cmd("NOOP"), 250, "2.0.0")
    assert no_more_replies(c), c.buf
    time.sleep(GRACE)
    assert postern.sink.messages() == []
    assert postern.queue() == []


def test_bare_lf_command(postern):
    c = open_smtps(postern)
    c.send(b"NOOP\n")
    expect(c.reply(), 500, "5.5.2")
    expect(c.cmd("NOOP"), 250, "2.0.0")
    assert no_more_replies(c), c.buf


def test_bare_cr_and_lf_inside_command_lines(postern):
    c = open_smtps(postern)
    # a CR that does not end the line: one refused line, nothing run
    c.send(b"MAIL FROM:<alice@mx.test>\rRCPT TO:<victim@example.org>\r\n")
    expect(c.reply(), 500, "5.5.2")
    expect(c.cmd("RCPT TO:<victim@example.org>"), 503, "5.5.1")
    # an LF alone ends nothing either
    c.send(b"MAIL FROM:<alice@mx.test>\n")
    expect(c.reply(), 500, "5.5.2")
    expect(c.cmd("RCPT TO:<victim@example.org>"), 503, "5.5.1")
    expect(c.cmd("NOOP"), 250, "2.0.0")
    assert no_more_replies(c), c.buf


def test_bare_lf_command_before_tls_on_mx(postern):
    c = postern.raw("mx", timeout=5)
    expect(c.reply(), 220)
    c.send(b"EHLO peer.test\n")
    expect(c.reply(), 500, "5.5.2")
    expect(c.cmd("EHLO peer.test"), 250)


# NUL is not allowed in 7bit/8bit content (RFC 2045 2.7) and BINARYMIME is
# not offered: "\r\n\0.\r\n" made a lenient next hop see an end of data and
# a second message Postern never saw.
NUL_SEQ = b"\r\n\0.\r\n"


@pytest.mark.parametrize("opener", [open_smtps, open_mx], ids=["smtps", "mx"])
def test_nul_in_data(postern, opener):
    c = opener(postern)
    sender = "alice@mx.test" if opener is open_smtps else "someone@remote.test"
    attack(postern, c, sender, "victim@example.org", NUL_SEQ)
    marker_only(postern, c, sender, "victim@example.org")


@pytest.mark.parametrize("opener", [open_smtps, open_mx], ids=["smtps", "mx"])
def test_nul_in_bdat(postern, opener):
    c = opener(postern)
    sender = "alice@mx.test" if opener is open_smtps else "someone@remote.test"
    expect(c.cmd(f"MAIL FROM:<{sender}>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<victim@example.org>"), 250, "2.1.5")
    first = b"Subject: innocent\r\n\r\nhello"
    c.send(b"BDAT %d\r\n" % len(first) + first)
    expect(c.reply(), 250)
    last = NUL_SEQ + SMUGGLED + b"\r\n.\r\n"
    c.send(b"BDAT %d LAST\r\n" % len(last) + last)
    expect(c.reply(), 554, "5.6.0")
    expect(c.cmd("RSET"), 250)
    expect(c.cmd("NOOP"), 250, "2.0.0")
    assert no_more_replies(c), c.buf
    assert postern.queue() == []
    marker_only(postern, c, sender, "victim@example.org")
    assert "rule=nul" in postern.logtext() or "Message contains NUL" in postern.logtext()
