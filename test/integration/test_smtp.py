"""The SMTP conversation on the smtps listener: EHLO, the sequence of
commands, the replies and their enhanced status codes (RFC 5321, RFC 2034),
the limits, PIPELINING, CHUNKING, SMTPUTF8, 8BITMIME, and whether each
message really reached the downstream (the capture sink) or not."""

import base64
import os
import re
import time

import pytest


from conftest import HOSTNAME, USERS, untraced, wait_for, enh, expect

SINK_GRACE = 0.4  # how long a refused message gets to (wrongly) show up


# ---- helpers -----------------------------------------------------------------






def connect(p, login=True, user="alice", ehlo=True, timeout=10):
    """A raw smtps client past the greeting (and EHLO and AUTH PLAIN)."""
    c = p.raw("smtps", timeout=timeout)
    expect(c.reply(), 220)
    if login:
        c.login(user)
    elif ehlo:
        expect(c.cmd("EHLO client.test"), 250)
    return c


def send_message(c, frm, rcpts, body, params=""):
    """MAIL, RCPT..., DATA and the (already CRLF-terminated) body; returns
    the reply to the final dot."""
    expect(c.cmd(f"MAIL FROM:<{frm}>{params}"), 250, "2.1.0")
    for r in rcpts:
        expect(c.cmd(f"RCPT TO:<{r}>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    if isinstance(body, str):
        body = body.encode()
    c.send(body + b".\r\n")
    return c.reply()


def envelope(msg):
    """(from, [rcpts]) from the sink's X-Sink-Envelope first line."""
    first = msg.split(b"\r\n", 1)[0].decode("utf-8", "surrogateescape")
    m = re.match(r"X-Sink-Envelope: from=<(.*?)> rcpt=(.*)$", first)
    assert m, first
    return m.group(1), re.findall(r"<([^>]*)>", m.group(2))


def body_of(msg):
    """What came after the header of the message (sink line stripped)."""
    rest = msg.split(b"\r\n", 1)[1]
    return rest.split(b"\r\n\r\n", 1)[1]


def queued_ok(reply):
    lines = expect(reply, 250, "2.0.0")
    assert re.search(r"queued as [0-9A-V]{16}", lines[-1]), lines
    return lines


def assert_nothing_delivered(p):
    """Nothing at the sink, nothing in the queue, nothing logged as queued."""
    time.sleep(SINK_GRACE)
    assert p.sink.messages() == []
    assert p.queue() == []
    assert "event=queued" not in p.logtext()


def marker_then_only(p, c, refused_words=(b"smuggled",)):
    """Sends a clean marker message on c and checks it is then the only
    message the sink ever got."""
    queued_ok(send_message(c, "alice@mx.test", ["marker@example.net"],
                           "Subject: marker\r\n\r\nmarker body\r\n"))
    p.sink.wait_messages(1, timeout=10)
    time.sleep(SINK_GRACE)
    msgs = p.sink.messages()
    assert len(msgs) == 1, msgs
    assert b"marker body" in msgs[0]
    for w in refused_words:
        assert w not in msgs[0]
    return msgs[0]


def spool_tmp(p):
    d = os.path.join(p.spool, "tmp")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


# ---- EHLO, HELO --------------------------------------------------------------

def test_ehlo_on_smtps_lists_extensions_without_starttls(postern):
    c = connect(postern, login=False, ehlo=False)
    lines = expect(c.cmd("EHLO client.test"), 250)
    assert lines[0][4:].split()[0] == HOSTNAME
    kw = [l[4:] for l in lines[1:]]
    for want in ("PIPELINING", "SIZE 1048576", "8BITMIME", "ENHANCEDSTATUSCODES",
                 "SMTPUTF8", "CHUNKING"):
        assert want in kw, (want, lines)
    auth = [k for k in kw if k.upper().startswith("AUTH ")]
    assert len(auth) == 1, lines
    assert set(auth[0].split()[1:]) == {"PLAIN", "LOGIN", "SCRAM-SHA-256"}, auth
    assert not any(k.upper().startswith("STARTTLS") for k in kw), lines
    # every line but the last is a continuation line
    assert all(l[3] == "-" for l in lines[:-1]) and lines[-1][3] == " "
    c.close()


def test_ehlo_after_auth_no_longer_offers_auth(postern):
    c = connect(postern)
    lines = expect(c.cmd("EHLO client.test"), 250)
    assert not any(l[4:].upper().startswith("AUTH") for l in lines), lines
    assert "PIPELINING" in [l[4:] for l in lines]
    # still authenticated after the new EHLO
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    c.close()


@pytest.mark.parametrize("mode", ["smtps", "mx"])
def test_dsn_parameters_refused_while_dsn_is_not_offered(postern, mode):
    """EHLO does not offer DSN (RFC 3461), so RET, ENVID, NOTIFY and ORCPT
    are unknown parameters: a bounce must not carry a whole message back
    to a forged sender because RET=FULL was taken."""
    if mode == "smtps":
        c = connect(postern)
        sender = "alice@mx.test"
    else:
        c = postern.raw("mx")
        c.reply()
        c.cmd("EHLO peer.test")
        expect(c.cmd("STARTTLS"), 220)
        c.starttls()
        sender = "forged@remote.test"
    code, lines = c.cmd("EHLO client.test")
    assert not any("DSN" in ln for ln in lines), lines
    expect(c.cmd(f"MAIL FROM:<{sender}> RET=FULL"), 555, "5.5.4")
    expect(c.cmd(f"MAIL FROM:<{sender}> ENVID=QQ314159"), 555, "5.5.4")
    expect(c.cmd(f"MAIL FROM:<{sender}>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<x@example.org> NOTIFY=SUCCESS,FAILURE"), 555, "5.5.4")
    expect(c.cmd("RCPT TO:<x@example.org> ORCPT=rfc822;x@example.org"), 555, "5.5.4")
    expect(c.cmd("RCPT TO:<x@example.org>"), 250, "2.1.5")
    c.close()


def test_helo_works_and_received_says_with_smtp(postern):
    c = connect(postern, login=False, ehlo=False)
    code, lines = c.cmd("HELO client.test")
    assert code == 250 and len(lines) == 1, lines
    assert HOSTNAME in lines[0]
    tok = base64.b64encode(b"\0alice\0" + USERS["alice"].encode()).decode()
    expect(c.cmd("AUTH PLAIN " + tok), 235, "2.7.0")
    queued_ok(send_message(c, "alice@mx.test", ["rcpt@example.net"],
                           "Subject: helo\r\n\r\nvia helo\r\n"))
    m = postern.sink.wait_messages(1)[0]
    assert b"Received: from client.test" in m
    assert re.search(rb"by mx\.test \(Postern\) with SMTP id ", m), m[:600]
    assert b"with ESMTP" not in m
    c.close()


# ---- sequence errors -----------------------------------------------------------

def test_mail_before_ehlo(postern):
    c = connect(postern, login=False, ehlo=False)
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 503, "5.5.1")
    c.close()


def test_rcpt_before_mail(postern):
    c = connect(postern)
    expect(c.cmd("RCPT TO:<bob@example.net>"), 503, "5.5.1")
    c.close()


def test_data_before_mail_and_before_rcpt(postern):
    c = connect(postern)
    expect(c.cmd("DATA"), 503, "5.5.1")
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    expect(c.cmd("DATA"), 554, "5.5.1")
    # the transaction is still there: a recipient and DATA now work
    expect(c.cmd("RCPT TO:<bob@example.net>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    c.send("Subject: late\r\n\r\nx\r\n.\r\n")
    queued_ok(c.reply())
    postern.sink.wait_messages(1)
    c.close()


def test_nested_mail(postern):
    c = connect(postern)
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    expect(c.cmd("MAIL FROM:<bob@mx.test>"), 503, "5.5.1")
    c.close()


def test_unknown_command(postern):
    c = connect(postern)
    expect(c.cmd("FROBNICATE now"), 500, "5.5.2")
    expect(c.cmd("NOOP"), 250, "2.0.0")
    c.close()


def test_syntax_errors_501(postern):
    c = connect(postern)
    expect(c.cmd("MAIL FROM:alice@mx.test"), 501, "5.1.7")     # no angle brackets
    expect(c.cmd("MAIL TO:<alice@mx.test>"), 501, "5.5.4")     # wrong keyword
    expect(c.cmd("MAIL FROM:<alice@@mx.test>"), 501, "5.1.7")
    expect(c.cmd("MAIL FROM:<alice@mx.test> SIZE=abc"), 501, "5.5.4")
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<no address here>"), 501, "5.1.3")
    expect(c.cmd("RCPT TO:<>"), 501, "5.1.3")
    expect(c.cmd("RSET now"), 501, "5.5.4")
    expect(c.cmd("EHLO"), 501, "5.5.4")
    c.close()


def test_unknown_mail_parameter(postern):
    c = connect(postern)
    expect(c.cmd("MAIL FROM:<alice@mx.test> FROB=1"), 555, "5.5.4")
    expect(c.cmd("MAIL FROM:<alice@mx.test> NOTIFY=NEVER"), 555, "5.5.4")  # an RCPT parameter
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    c.close()


def test_mail_without_auth_on_smtps(postern):
    c = connect(postern, login=False)
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 530, "5.7.0")
    # and so there is no transaction
    expect(c.cmd("RCPT TO:<bob@example.net>"), 503, "5.5.1")
    c.close()


def test_rset_clears_transaction(postern):
    c = connect(postern)
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<bob@example.net>"), 250, "2.1.5")
    expect(c.cmd("RSET"), 250, "2.0.0")
    expect(c.cmd("RCPT TO:<bob@example.net>"), 503, "5.5.1")
    expect(c.cmd("DATA"), 503, "5.5.1")
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    c.close()
    assert_nothing_delivered(postern)


def test_small_verbs(postern):
    c = connect(postern)
    expect(c.cmd("NOOP"), 250, "2.0.0")
    expect(c.cmd("NOOP some text"), 250, "2.0.0")
    lines = expect(c.cmd("VRFY alice"), 252)
    assert enh(lines).startswith("2."), lines
    lines = expect(c.cmd("EXPN staff"), 502)
    assert enh(lines).startswith("5.5."), lines
    lines = expect(c.cmd("HELP"), 214)
    assert enh(lines) == "2.0.0", lines
    c.close()


def test_quit_closes(postern):
    c = connect(postern)
    expect(c.cmd("QUIT"), 221, "2.0.0")
    assert c.closed(timeout=3)


# ---- PIPELINING -----------------------------------------------------------------

def test_pipelining_two_transactions(postern):
    c = connect(postern)
    c.send("MAIL FROM:<alice@mx.test>\r\nRCPT TO:<one@example.net>\r\n"
           "RCPT TO:<two@example.net>\r\nDATA\r\n")
    expect(c.reply(), 250, "2.1.0")
    expect(c.reply(), 250, "2.1.5")
    expect(c.reply(), 250, "2.1.5")
    expect(c.reply(), 354)
    # the first message, its dot and the whole second transaction in one write
    c.send("Subject: first\r\n\r\nfirst body\r\n.\r\n"
           "MAIL FROM:<bob@mx.test>\r\nRCPT TO:<three@example.net>\r\nDATA\r\n")
    queued_ok(c.reply())
    expect(c.reply(), 250, "2.1.0")
    expect(c.reply(), 250, "2.1.5")
    expect(c.reply(), 354)
    c.send("Subject: second\r\n\r\nsecond body\r\n.\r\nQUIT\r\n")
    queued_ok(c.reply())
    expect(c.reply(), 221, "2.0.0")
    assert c.closed(timeout=3)
    msgs = postern.sink.wait_messages(2)
    by_subject = {}
    for m in msgs:
        by_subject[re.search(rb"Subject: (\w+)", m).group(1)] = m
    assert set(by_subject) == {b"first", b"second"}
    assert envelope(by_subject[b"first"]) == ("alice@mx.test", ["one@example.net", "two@example.net"])
    assert envelope(by_subject[b"second"]) == ("bob@mx.test", ["three@example.net"])
    assert b"first body" in by_subject[b"first"] and b"second body" in by_subject[b"second"]


# ---- SIZE and line limits ------------------------------------------------------------

def test_size_parameter_too_big(postern):
    c = connect(postern)
    expect(c.cmd("MAIL FROM:<alice@mx.test> SIZE=2000000"), 552, "5.3.4")
    expect(c.cmd("MAIL FROM:<alice@mx.test> SIZE=1000"), 250, "2.1.0")
    c.close()


def test_message_over_limit_refused_after_dot(postern):
    c = connect(postern)
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<big@example.net>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    line = b"x" * 76 + b"\r\n"
    big = b"Subject: big\r\n\r\n" + line * (1100 * 1024 // len(line)) + b"bigmarker\r\n"
    assert len(big) > 1024 * 1024
    c.send(big + b".\r\n")
    expect(c.reply(), 552, "5.3.4")
    # the session goes on: a small message passes
    queued_ok(send_message(c, "alice@mx.test", ["small@example.net"],
                           "Subject: small\r\n\r\nsmall body\r\n"))
    msgs = postern.sink.wait_messages(1)
    time.sleep(SINK_GRACE)
    msgs = postern.sink.messages()
    assert len(msgs) == 1 and b"small body" in msgs[0]
    assert b"bigmarker" not in msgs[0]
    c.close()


def test_long_command_line(postern):
    c = connect(postern)
    line = "NOOP " + "y" * 595
    assert len(line) == 600
    expect(c.cmd(line), 500, "5.5.2")
    expect(c.cmd("NOOP"), 250, "2.0.0")
    # the same in three writes, the CRLF cut in two: one 500, then NOOP runs
    c.send(line[:300])
    time.sleep(0.05)
    c.send(line[300:] + "\r")
    time.sleep(0.05)
    c.send("\nNOOP\r\n")
    expect(c.reply(), 500, "5.5.2")
    expect(c.reply(), 250, "2.0.0")
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    c.close()


def test_long_text_line_refused(postern):
    c = connect(postern)
    body = "Subject: long\r\n\r\n" + "z" * 1001 + "\r\nlongmarker\r\n"
    expect(send_message(c, "alice@mx.test", ["r@example.net"], body), 554, "5.6.0")
    marker_then_only(postern, c, refused_words=(b"longmarker",))
    c.close()


def test_text_line_of_998_is_accepted(postern):
    c = connect(postern)
    line = b"w" * 998
    queued_ok(send_message(c, "alice@mx.test", ["r@example.net"],
                           b"Subject: limit\r\n\r\n" + line + b"\r\n"))
    m = postern.sink.wait_messages(1)[0]
    assert b"\r\n" + line + b"\r\n" in m
    c.close()


# ---- recipients and errors --------------------------------------------------------------

def test_max_recipients(postern):
    c = connect(postern)
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    rcpts = [f"r{i}@example.net" for i in range(1, 21)]
    for r in rcpts:
        expect(c.cmd(f"RCPT TO:<{r}>"), 250, "2.1.5")
    expect(c.cmd("RCPT TO:<r21@example.net>"), 452, "4.5.3")
    expect(c.cmd("DATA"), 354)
    c.send("Subject: twenty\r\n\r\nto twenty\r\n.\r\n")
    queued_ok(c.reply())
    got = set()

    def all_arrived():
        got.clear()
        for m in postern.sink.messages():
            got.update(envelope(m)[1])
        return len(got) >= 20
    wait_for(all_arrived, timeout=15, what="20 recipients at the sink")
    time.sleep(SINK_GRACE)
    all_arrived()
    assert got == set(rcpts)
    c.close()


def test_pipelined_recipients_over_the_limit(postern):
    """RFC 5321 4.5.3.1.10: 452 for too many recipients is how a server
    asks for the rest in another transaction, not an error: 30 RCPTs
    pipelined with DATA against max_recipients = 20 (and max_errors = 10)
    get 20 x 250, 10 x 452, 354, and the message for the first 20 is
    accepted on a session that stays open."""
    c = connect(postern)
    rcpts = [f"p{i}@example.net" for i in range(1, 31)]
    c.send("MAIL FROM:<alice@mx.test>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts)
           + "DATA\r\n")
    expect(c.reply(), 250, "2.1.0")
    for _ in range(20):
        expect(c.reply(), 250, "2.1.5")
    for _ in range(10):
        expect(c.reply(), 452, "4.5.3")
    expect(c.reply(), 354)
    c.send("Subject: twenty of thirty\r\n\r\nhi\r\n.\r\n")
    queued_ok(c.reply())
    expect(c.cmd("NOOP"), 250, "2.0.0")
    # and the errors it did make still count
    for i in range(10):
        expect(c.cmd(f"BOGUS{i}"), 500, "5.5.2")
    expect(c.reply(), 421, "4.7.0")


def test_too_many_errors_421(postern):
    c = connect(postern)
    for i in range(9):
        expect(c.cmd(f"BOGUS{i}"), 500, "5.5.2")
    expect(c.cmd("BOGUS9"), 500, "5.5.2")
    # the tenth refused command is followed by 421 without a further command
    expect(c.reply(), 421, "4.7.0")
    assert c.closed(timeout=3)


# ---- BDAT ---------------------------------------------------------------------------------

def test_bdat_chunks_delivered_intact(postern):
    c = connect(postern)
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<chunks@example.net>"), 250, "2.1.5")
    # BDAT is not dot-stuffed: a lone "." line and "..x" are message text,
    # and the relay must stuff them on the way out.
    content = (b"Subject: chunked\r\n\r\nline one\r\n.\r\n..two dots\r\n"
               b".single\r\nMAIL FROM:<evil@x>\r\nlast line\r\n")
    # three chunks, one CRLF split across two of them
    cut = content.index(b"\r\n.\r\n") + 1
    c1, c2, c3 = content[:cut], content[cut:cut + 10], content[cut + 10:]
    assert c1.endswith(b"\r") and c2.startswith(b"\n")
    c.send(f"BDAT {len(c1)}\r\n".encode() + c1)
    expect(c.reply(), 250)
    c.send(f"BDAT {len(c2)}\r\n".encode() + c2)
    expect(c.reply(), 250)
    c.send(f"BDAT {len(c3)} LAST\r\n".encode() + c3)
    queued_ok(c.reply())
    m = postern.sink.wait_messages(1)[0]
    assert envelope(m) == ("alice@mx.test", ["chunks@example.net"])
    assert untraced(m).endswith(content), m
    time.sleep(SINK_GRACE)
    assert len(postern.sink.messages()) == 1
    c.close()


def test_bdat_long_line_intact(postern):
    """BDAT counts octets: a chunk with a 900-character line (under the
    1000-octet text line limit) must be read whole, not cut at the command
    line limit."""
    c = connect(postern, timeout=3)
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<wide@example.net>"), 250, "2.1.5")
    content = b"Subject: wide\r\n\r\n" + b"v" * 900 + b"\r\nafter\r\n"
    c.send(f"BDAT {len(content)} LAST\r\n".encode() + content)
    queued_ok(c.reply())
    expect(c.cmd("NOOP"), 250, "2.0.0")
    m = postern.sink.wait_messages(1)[0]
    assert untraced(m).endswith(content)
    c.close()


def test_bdat_zero_last(postern):
    c = connect(postern)
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<zero@example.net>"), 250, "2.1.5")
    content = b"Subject: zero last\r\n\r\nbody before zero\r\n"
    c.send(f"BDAT {len(content)}\r\n".encode() + content)
    expect(c.reply(), 250)
    queued_ok(c.cmd("BDAT 0 LAST"))
    m = postern.sink.wait_messages(1)[0]
    assert untraced(m).endswith(content)
    c.close()


def test_bdat_without_mail_skips_chunk(postern):
    c = connect(postern)
    chunk = b"QUIT\r\nQUIT\r\nRSET\r\n"
    c.send(f"BDAT {len(chunk)}\r\n".encode() + chunk)
    expect(c.reply(), 503, "5.5.1")
    # the chunk's bytes were skipped, not run as commands
    expect(c.cmd("NOOP"), 250, "2.0.0")
    assert c.buf == b""
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    c.close()


def test_bdat_bare_lf_refused(postern):
    c = connect(postern)
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<lf@example.net>"), 250, "2.1.5")
    content = b"Subject: lf\r\n\r\nbare\nlfmarker\r\n"
    c.send(f"BDAT {len(content)} LAST\r\n".encode() + content)
    expect(c.reply(), 554, "5.6.0")
    expect(c.cmd("RSET"), 250, "2.0.0")
    marker_then_only(postern, c, refused_words=(b"lfmarker",))
    c.close()


# ---- SMTPUTF8, 8BITMIME, null sender ---------------------------------------------------------

def test_smtputf8_sender_and_recipient(postern):
    c = connect(postern)
    sender = "ålice@mx.test"
    rcpt = "bjørn@exämple.net"
    c.send(f"MAIL FROM:<{sender}> SMTPUTF8\r\n".encode())
    expect(c.reply(), 250, "2.1.0")
    c.send(f"RCPT TO:<{rcpt}>\r\n".encode())
    expect(c.reply(), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    c.send("Subject: ünïcödé\r\n\r\nhéllo wörld\r\n.\r\n".encode())
    queued_ok(c.reply())
    m = postern.sink.wait_messages(1)[0]
    assert envelope(m) == (sender, [rcpt])
    assert "héllo wörld".encode() in m
    c.close()


def test_non_ascii_without_smtputf8(postern):
    c = connect(postern)
    c.send("MAIL FROM:<ålice@mx.test>\r\n".encode())
    expect(c.reply(), 553, "5.6.7")
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    c.send("RCPT TO:<bjørn@example.net>\r\n".encode())
    expect(c.reply(), 553, "5.6.7")
    c.close()
    assert_nothing_delivered(postern)


def test_8bitmime_byte_exact(postern):
    c = connect(postern)
    eight = bytes(b for b in range(0x80, 0x100))
    body = b"Content-Type: text/plain; charset=latin1\r\nSubject: 8bit\r\n\r\n" + \
        eight + b"\r\n" + b"caf\xe9 na\xefve \xff\xfe\r\n"
    queued_ok(send_message(c, "alice@mx.test", ["eight@example.net"], body,
                           params=" BODY=8BITMIME"))
    m = postern.sink.wait_messages(1)[0]
    assert body_of(m) == eight + b"\r\n" + b"caf\xe9 na\xefve \xff\xfe\r\n"
    c.close()


def test_null_sender(postern):
    c = connect(postern)
    queued_ok(send_message(c, "", ["bounce@example.net"], "Subject: dsn\r\n\r\nnull\r\n"))
    m = postern.sink.wait_messages(1)[0]
    assert envelope(m) == ("", ["bounce@example.net"])
    c.close()


# ---- timeouts, dot-stuffing, aborted DATA --------------------------------------------------

def test_idle_timeout(make_postern, sink):
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}", limits='idle_timeout = "2s"')
    c = connect(p)
    t0 = time.time()
    expect(c.reply(), 421, "4.4.2")
    elapsed = time.time() - t0
    assert 1.0 <= elapsed <= 5.0, elapsed
    assert c.closed(timeout=3)


def test_dot_stuffing(postern):
    c = connect(postern)
    body = b"Subject: dots\r\n\r\n..foo\r\n...\r\n..\r\nend\r\n"
    queued_ok(send_message(c, "alice@mx.test", ["dots@example.net"], body))
    m = postern.sink.wait_messages(1)[0]
    assert body_of(m) == b".foo\r\n..\r\n.\r\nend\r\n"
    c.close()


def test_empty_message(postern):
    c = connect(postern)
    queued_ok(send_message(c, "alice@mx.test", ["empty@example.net"], b""))
    m = postern.sink.wait_messages(1)[0]
    assert envelope(m) == ("alice@mx.test", ["empty@example.net"])
    assert m.split(b"\r\n", 1)[1].startswith(b"Received: ")
    c.close()


def test_connection_dropped_in_data(postern):
    c = connect(postern)
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
    expect(c.cmd("RCPT TO:<drop@example.net>"), 250, "2.1.5")
    expect(c.cmd("DATA"), 354)
    c.send("Subject: dropped\r\n\r\npartial body dropmarker\r\n")
    time.sleep(0.2)
    assert len(spool_tmp(postern)) == 1  # the message being received
    before = postern.logtext().count("event=disconnect")
    c.sock.close()
    # the session is gone: no temporary file, nothing queued
    wait_for(lambda: postern.logtext().count("event=disconnect") > before, timeout=5,
             what="the disconnect")
    time.sleep(SINK_GRACE)
    assert postern.queue() == []
    assert spool_tmp(postern) == []
    # and the server keeps serving
    c2 = connect(postern)
    marker_then_only(postern, c2, refused_words=(b"dropmarker",))
    c2.close()


# ---- a spool that cannot be written --------------------------------------------

def test_unwritable_spool_tempfails_data_and_bdat(postern):
    """The queue file cannot be created (it is created off the event loop,
    on the thread pool): DATA and BDAT get 451 4.3.0, the BDAT chunk is read
    and dropped rather than taken as commands, the session stays in step,
    and mail flows again once the spool is writable."""
    tmp = os.path.join(postern.spool, "tmp")
    mode = os.stat(tmp).st_mode & 0o7777
    c = connect(postern)
    os.chmod(tmp, 0o500)
    try:
        expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<nospool@example.net>"), 250, "2.1.5")
        expect(c.cmd("DATA"), 451, "4.3.0")
        expect(c.cmd("RSET"), 250)
        expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250, "2.1.0")
        expect(c.cmd("RCPT TO:<nospool@example.net>"), 250, "2.1.5")
        chunk = b"Subject: bdat\r\n\r\nQUIT\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        expect(c.reply(), 451, "4.3.0")
        expect(c.cmd("NOOP"), 250)
    finally:
        os.chmod(tmp, mode)
    expect(c.cmd("RSET"), 250)
    queued_ok(send_message(c, "alice@mx.test", ["afterwards@example.net"],
                           b"Subject: afterwards\r\n\r\nfine\r\n"))
    msgs = postern.sink.wait_messages(1)
    time.sleep(SINK_GRACE)
    assert len(postern.sink.messages()) == 1 and b"Subject: afterwards" in msgs[0]
    assert spool_tmp(postern) == []
    assert "event=spool_error" in postern.logtext()
    c.close()
