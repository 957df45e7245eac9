"""Slow and hostile clients: a client that stops in the middle of DATA, one
that never finishes its TLS handshake after STARTTLS, AUTH responses
longer than RFC 4954 allows, and one that sends without reading its replies. Each ends in a reply and a clean close (or the
session goes on), never a hang, and nothing half-received is delivered."""

import base64
import os
import socket
import threading
import time

from conftest import expect


def test_stalled_data_times_out(make_postern, sink):
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}", limits='data_timeout = "2s"')
    c = p.raw("smtps")
    c.reply()
    c.login("alice")
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250)
    expect(c.cmd("RCPT TO:<r@example.net>"), 250)
    expect(c.cmd("DATA"), 354)
    c.send("Subject: half a message\r\n\r\nthen nothing")
    t0 = time.monotonic()
    code, lines = c.reply()
    assert code == 421 and lines[0].startswith("421 4.4.2"), lines
    assert time.monotonic() - t0 < 6
    assert c.closed()
    time.sleep(0.5)
    assert sink.messages() == []
    assert p.queue() == []
    assert os.listdir(os.path.join(p.spool, "tmp")) == []


def test_stalled_starttls_handshake_is_dropped(make_postern):
    """handshake_timeout is 5 s in the test configuration."""
    p = make_postern()
    c = p.raw("submission")
    c.reply()
    expect(c.cmd("EHLO client.test"), 250)
    expect(c.cmd("STARTTLS"), 220, "2.0.0")
    t0 = time.monotonic()
    assert c.closed(timeout=10)        # no ClientHello ever comes
    assert time.monotonic() - t0 < 9
    d = p.raw("smtps")                  # and the daemon still serves
    assert d.reply()[0] == 220


def test_auth_response_longer_than_rfc4954_allows(postern):
    c = postern.raw("smtps")
    c.reply()
    expect(c.cmd("EHLO client.test"), 250)
    expect(c.cmd("AUTH LOGIN"), 334)
    # RFC 4954 4: a response line is at most 12288 octets.
    code, lines = c.cmd(base64.b64encode(b"a" * 12000).decode())
    assert code == 500 and lines[0].startswith("500 5.5.2"), lines
    # the exchange is over: the next line is a command again
    expect(c.cmd("NOOP"), 250)
    c.login("alice")


def test_client_that_does_not_read_its_replies(postern):
    """600,000 pipelined NOOPs (on the mx listener, in plaintext, so that
    one thread may send while another reads) from a client with a 4 KiB
    receive buffer that reads nothing for a while: the replies (~9 MB)
    outgrow what the socket takes even at its largest send buffer (4 MB
    here), so they are written in part and the rest is queued, and the
    server stops reading above its high-water mark instead of buffering
    without end. Once the client reads, every reply arrives, once and in
    order, and the session goes on."""
    n = 600000
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", postern.ports["mx"]))
    f = sock.makefile("rb")
    assert f.readline().startswith(b"220 ")
    sender = threading.Thread(target=sock.sendall, args=(b"NOOP\r\n" * n,))
    sender.start()
    time.sleep(1.5)                          # nothing read meanwhile
    with postern.smtps() as other:           # the loop is not stuck on us
        assert other.noop()[0] == 250
    for i in range(n):
        line = f.readline()
        assert line == b"250 2.0.0 Ok\r\n", (i, line)
    sender.join(60)
    assert not sender.is_alive()
    sock.sendall(b"QUIT\r\n")
    assert f.readline().startswith(b"221 ")
    sock.close()


# ---- slowloris: a byte now and then must not hold a connection ------------------

def drip(c, data, every):
    """Sends data one byte at a time; returns the reply that ends it (or
    None if the server let it all through)."""
    for i in range(len(data)):
        try:
            c.send(data[i:i + 1])
        except OSError:
            break
        time.sleep(every)
        c.sock.settimeout(0.01)
        try:
            chunk = c.sock.recv(4096)
            c.buf += chunk
            if not chunk or b"\r\n" in c.buf:
                break
        except (socket.timeout, BlockingIOError):
            pass
        except OSError:
            break
        finally:
            c.sock.settimeout(10)
    return c.reply() if b"\r\n" in c.buf else None


def test_command_line_deadline(make_postern):
    """idle_timeout runs from one command line to the next: a line
    dripped one byte a second against 3 s is cut off (it was held for as
    long as the bytes came)."""
    p = make_postern(limits='idle_timeout = "3s"')
    c = p.raw("submission")
    expect(c.reply(), 220)
    t0 = time.monotonic()
    code, lines = drip(c, b"EHLO " + b"a" * 40 + b"\r\n", 1.0)
    assert code == 421 and lines[0].startswith("421 4.4.2"), lines
    assert time.monotonic() - t0 < 6
    assert c.closed()


def test_data_progress_deadline(make_postern):
    """In DATA the timer restarts only after data_progress more bytes:
    one byte every half second against data_timeout = 3s is cut off."""
    p = make_postern(limits='data_timeout = "3s" data_progress = "1k"')
    c = p.raw("smtps")
    c.reply()
    c.login("alice")
    expect(c.cmd("MAIL FROM:<alice@mx.test>"), 250)
    expect(c.cmd("RCPT TO:<r@example.net>"), 250)
    expect(c.cmd("DATA"), 354)
    t0 = time.monotonic()
    code, lines = drip(c, b"Subject: slow\r\n\r\n" + b"x" * 40, 0.5)
    assert code == 421 and lines[0].startswith("421 4.4.2"), lines
    assert time.monotonic() - t0 < 6
    assert p.queue() == []


def test_session_lifetime(make_postern):
    """A connection that keeps busy (a NOOP every half second) still ends
    at session_lifetime."""
    p = make_postern(limits='session_lifetime = "3s"')
    c = p.raw("submission")
    expect(c.reply(), 220)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        code, lines = c.cmd("NOOP")
        if code != 250:
            break
        time.sleep(0.5)
    assert code == 421 and lines[0].startswith("421 4.4.2"), lines
    assert 2.5 < time.monotonic() - t0 < 6
    assert c.closed()
    assert "phase=lifetime" in p.logtext()


def test_stress_shortens_the_idle_timeout(make_postern):
    """With most of max_connections in use, stress_idle_timeout applies:
    an idle client is told 421 after about a second, not 30."""
    p = make_postern(limits='max_connections = 10 stress_threshold = 30 '
                            'stress_idle_timeout = "1s"')
    time.sleep(0.3)
    held = []
    for _ in range(8):
        c = p.raw("submission")
        expect(c.reply(), 220)
        held.append(c)
    t0 = time.monotonic()
    c = p.raw("submission")
    expect(c.reply(), 220)
    code, lines = c.reply()
    assert code == 421 and lines[0].startswith("421 4.4.2"), lines
    assert time.monotonic() - t0 < 5
    for h in held:
        h.close()
