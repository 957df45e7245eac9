"""TLS on the smtps listener as clients see it: protocol versions, client
certificates (optional/require) and what is recorded about them, garbage
and misbehaving clients, the handshake timeout, session resumption."""

import re
import smtplib
import socket
import ssl
import struct
import time

import pytest

from conftest import USERS, wait_for

MSG = b"Subject: tls test\r\n\r\nbody\r\n"


def sink_url(sink):
    return f"smtp://127.0.0.1:{sink.port}"


@pytest.fixture
def optional_postern(make_postern, sink):
    p = make_postern(downstream=sink_url(sink), listen_extra={"smtps": 'client_cert = "optional"'})
    p.sink = sink
    return p


@pytest.fixture
def require_postern(make_postern, sink):
    p = make_postern(downstream=sink_url(sink), listen_extra={"smtps": 'client_cert = "require"'})
    p.sink = sink
    return p


def client_ctx(p, cert=None, min_version=None, max_version=None):
    ctx = p.tls_context(cert)
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def connect_tls(p, ctx, session=None, timeout=10):
    raw = socket.create_connection(("127.0.0.1", p.ports["smtps"]), timeout=timeout)
    port = raw.getsockname()[1]
    s = ctx.wrap_socket(raw, session=session)
    s.local_port = port   # for finding the session in the log after close
    return s


def read_reply(sock):
    """One SMTP reply from a socket (bytes), to the last line."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) >= 2 and len(lines[-2]) >= 4 and lines[-2][3:4] == b" ":
            return data


def tls_log_line(p, sock):
    """The event=tls line of the session this client socket belongs to."""
    port = sock.local_port

    def find():
        log = p.logtext()
        m = re.search(rf"event=connect sid=(\S+) listener=\S+ client=127\.0\.0\.1 port={port}\b", log)
        if not m:
            return None
        t = re.search(rf"^.*event=tls sid={re.escape(m.group(1))} .*$", log, re.M)
        return t.group(0) if t else None

    return wait_for(find, timeout=5, what=f"event=tls line for client port {port}")


def submit(p, ctx, subject):
    with smtplib.SMTP_SSL("127.0.0.1", p.ports["smtps"], context=ctx, timeout=10) as c:
        c.login("alice", USERS["alice"])
        assert c.sendmail("alice@mx.test", ["rcpt@example.net"],
                          f"Subject: {subject}\r\n\r\nbody\r\n".encode()) == {}


def message_with(p, subject):
    def find():
        for m in p.sink.messages():
            if f"Subject: {subject}".encode() in m:
                return m
        return None
    return wait_for(find, timeout=15, what=f"message {subject!r} at the sink")


def received_header(m):
    head = m.split(b"\r\n\r\n", 1)[0]
    match = re.search(rb"^Received: .*?(?=\r\n\S)", head, re.M | re.S)
    assert match, m
    return match.group(0)


# ---- versions ---------------------------------------------------------------------

def test_tls13_by_default(postern):
    s = connect_tls(postern, postern.tls_context())
    assert s.version() == "TLSv1.3"
    assert read_reply(s).startswith(b"220 ")
    s.close()
    line = tls_log_line(postern, s)
    assert "version=TLSv1.3" in line and "reused=no" in line, line


def test_tls12_accepted(postern):
    ctx = client_ctx(postern, max_version=ssl.TLSVersion.TLSv1_2)
    s = connect_tls(postern, ctx)
    assert s.version() == "TLSv1.2"
    assert read_reply(s).startswith(b"220 ")
    s.close()
    submit(postern, ctx, "over tls12")
    m = message_with(postern, "over tls12")
    assert b"using TLSv1.2" in received_header(m)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls11_refused(postern):
    ctx = client_ctx(postern, min_version=ssl.TLSVersion.TLSv1_1,
                     max_version=ssl.TLSVersion.TLSv1_1)
    # Let our OpenSSL offer TLS 1.1 at all: the refusal must be the server's.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)) as exc:
        s = connect_tls(postern, ctx)
        s.recv(100)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(exc.value), "the client never offered TLS 1.1"
    if isinstance(exc.value, ssl.SSLError):
        # The server's protocol_version alert (RFC 8446 / RFC 5246).
        assert "PROTOCOL_VERSION" in str(exc.value) or "UNSUPPORTED_PROTOCOL" in str(exc.value), exc.value
    # The server is fine afterwards.
    with postern.smtps() as c:
        assert c.noop()[0] == 250


# ---- client certificates ----------------------------------------------------------

def test_optional_client_cert_recorded(optional_postern, pki):
    p = optional_postern
    fp = pki.fingerprint("client")
    ctx = p.tls_context("client")
    s = connect_tls(p, ctx)
    read_reply(s)
    s.close()
    line = tls_log_line(p, s)
    assert f"cert_fp={fp}" in line and "cert_verified=yes" in line, line
    submit(p, ctx, "with client cert")
    rcvd = received_header(message_with(p, "with client cert"))
    assert f"client certificate SHA256:{fp}".encode() in rcvd, rcvd


def test_optional_rogue_cert_accepted_unverified(optional_postern, pki):
    p = optional_postern
    ctx = p.tls_context("rogue")
    s = connect_tls(p, ctx)
    assert read_reply(s).startswith(b"220 ")
    s.close()
    line = tls_log_line(p, s)
    assert "cert_verified=no" in line, line
    assert f"cert_fp={pki.fingerprint('rogue')}" in line, line
    submit(p, ctx, "rogue cert")
    message_with(p, "rogue cert")


def test_optional_without_cert_no_fingerprint(optional_postern):
    p = optional_postern
    ctx = p.tls_context()
    s = connect_tls(p, ctx)
    read_reply(s)
    s.close()
    line = tls_log_line(p, s)
    assert "cert_fp=-" in line and "cert_verified=no" in line, line
    submit(p, ctx, "no client cert")
    m = message_with(p, "no client cert")
    assert b"client certificate" not in m


def _handshake_refused(p, ctx):
    """True when the server refuses the TLS session: with TLS 1.3 the
    client learns it on its first read."""
    try:
        s = connect_tls(p, ctx, timeout=5)
        data = s.recv(100)
    except (ssl.SSLError, ConnectionError):
        return True
    return not data.startswith(b"220")


def test_require_without_cert_fails(require_postern):
    p = require_postern
    assert _handshake_refused(p, p.tls_context())
    assert _handshake_refused(p, client_ctx(p, max_version=ssl.TLSVersion.TLSv1_2))
    # The rogue certificate does not verify against tls { ca }.
    assert _handshake_refused(p, p.tls_context("rogue"))
    # A good certificate gets in.
    ctx = p.tls_context("client")
    submit(p, ctx, "required cert")
    message_with(p, "required cert")


# ---- misbehaving clients -------------------------------------------------------------

def read_until_closed(sock, timeout):
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data, True
            data += chunk
    except ConnectionError:
        return data, True
    except socket.timeout:
        return data, False


def test_plaintext_to_smtps(postern):
    s = socket.create_connection(("127.0.0.1", postern.ports["smtps"]), timeout=5)
    s.sendall(b"EHLO x\r\n")
    t0 = time.monotonic()
    data, closed = read_until_closed(s, 4)
    s.close()
    assert closed, "server kept a non-TLS client open"
    assert time.monotonic() - t0 < 4
    # At most a TLS alert record, never SMTP text.
    assert not data or data[0] == 0x15, data
    assert b"220" not in data and b"250" not in data
    with postern.smtps() as c:
        c.login("alice", USERS["alice"])
        assert c.sendmail("alice@mx.test", ["x@example.net"], MSG) == {}
    postern.sink.wait_messages(1)
    assert postern.proc.poll() is None


def test_silent_client_dropped_after_handshake_timeout(postern):
    s = socket.create_connection(("127.0.0.1", postern.ports["smtps"]), timeout=15)
    t0 = time.monotonic()
    data, closed = read_until_closed(s, 12)
    elapsed = time.monotonic() - t0
    s.close()
    assert closed and data == b"", data
    assert 4.0 <= elapsed <= 9.0, f"dropped after {elapsed:.1f}s, handshake_timeout is 5s"
    assert "phase=tls_handshake" in postern.logtext()


def client_hello():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=False)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_tcp_drop_mid_handshake(postern):
    hello = client_hello()
    for i in range(6):
        s = socket.create_connection(("127.0.0.1", postern.ports["smtps"]), timeout=5)
        if i % 2:
            # Reset (RST) rather than FIN.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if i < 2:
            s.sendall(hello[: len(hello) // 2])
        else:
            s.sendall(hello)
            if i >= 4:
                s.recv(100)   # the ServerHello is on its way
        s.close()
    # The server carries on.
    with postern.smtps() as c:
        c.login("alice", USERS["alice"])
        assert c.sendmail("alice@mx.test", ["x@example.net"], MSG) == {}
    postern.sink.wait_messages(1)
    assert postern.proc.poll() is None
    wait_for(lambda: postern.logtext().count("event=disconnect") >= 7, timeout=5,
             what="every dropped connection closed")


# ---- resumption --------------------------------------------------------------------

@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_session_resumption(postern, version):
    ctx = client_ctx(postern, max_version=getattr(ssl.TLSVersion, version.replace(".", "_")))
    s1 = connect_tls(postern, ctx)
    assert read_reply(s1).startswith(b"220 ")
    s1.sendall(b"EHLO client.test\r\n")
    assert read_reply(s1).startswith(b"250")
    s1.sendall(b"QUIT\r\n")
    assert read_reply(s1).startswith(b"221")
    session = s1.session
    assert session is not None
    s1.close()
    assert not s1.session_reused

    s2 = connect_tls(postern, ctx, session=session)
    assert read_reply(s2).startswith(b"220 ")
    assert s2.version() == version
    assert s2.session_reused, "the server did not resume the TLS session"
    s2.sendall(b"QUIT\r\n")
    read_reply(s2)
    s2.close()
    assert "reused=no" in tls_log_line(postern, s1)
    line = tls_log_line(postern, s2)
    assert "reused=yes" in line, line
