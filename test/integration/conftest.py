"""Integration test harness: starts a real posternd with a temporary
configuration, certificates made with openssl, a sasldb made with
saslpasswd2, and a capture sink (test/integration/sink.py) as downstream.
Everything binds 127.0.0.1 on free ports; every process started here is
stopped by PID."""

import base64
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("POSTERN_SRCDIR", os.path.abspath(os.path.join(HERE, "..", "..")))
BUILDDIR = os.environ.get("POSTERN_BUILDDIR", os.path.join(SRCDIR, "build"))
POSTERND = os.path.join(BUILDDIR, "posternd")
POSTERN = os.path.join(BUILDDIR, "postern")
SASLPASSWD2 = os.environ.get("SASLPASSWD2") or shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"
HOSTNAME = "mx.test"
USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol@example.org": "carol-secret"}
IS_ROOT = os.geteuid() == 0
# Who may send as whom in the tests (policy { sender_map }).
DEFAULT_SENDER_MAP = """# account  addresses it may use as MAIL FROM
alice  @mx.test, <>
bob    @mx.test, <>
carol@example.org  =
"""


GATE_MESSAGE_ID = re.compile(rb"message-id: <[a-z2-7]{26}@" + re.escape(HOSTNAME.encode())
                             + rb">$")


def untraced(msg):
    """The message without what Postern inserts at the end of its header
    block: the X-Postern-Trace header (and its folded continuation lines)
    and the Message-ID it adds on submission when the client sent none, for
    tests that compare content byte for byte."""
    nl = b"\r\n" if b"\r\n" in msg else b"\n"
    out, skipping, in_header = [], False, True
    for line in msg.split(nl):
        if in_header and line == b"":
            in_header = False
        if line.lower().startswith(b"x-postern-trace:") or (
                in_header and GATE_MESSAGE_ID.match(line.lower())):
            skipping = True
            continue
        if skipping and line[:1] in (b" ", b"\t"):
            continue
        skipping = False
        out.append(line)
    return nl.join(out)


PORTS_GIVEN = set()


def free_port():
    """A loopback port nothing listens on, never handed out before in this
    run: two listeners given the same one would not start (posternd
    refuses a taken address)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in PORTS_GIVEN:
            PORTS_GIVEN.add(port)
            return port


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def wait_for(pred, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def make_dir(path, for_daemon=False):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    if for_daemon and IS_ROOT:
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return path


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class PKI:
    """A CA, a server certificate and client certificates, ECDSA P-256."""

    def __init__(self, d):
        self.dir = d
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=Postern Test CA",
                "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
        self._issue("server", "/CN=" + HOSTNAME, f"subjectAltName=DNS:{HOSTNAME},DNS:localhost,IP:127.0.0.1")
        self._issue("client", "/CN=alice client/O=Postern Tests", None)
        openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=Rogue CA",
                "-keyout", "rogue-ca.key", "-out", "rogue-ca.pem", cwd=d)
        self._issue("rogue", "/CN=rogue client", None, ca="rogue-ca")
        self.ca = os.path.join(d, "ca.pem")

    def _issue(self, name, subj, san, ca="ca"):
        d = self.dir
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", subj, "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        ext = []
        if san:
            with open(os.path.join(d, f"{name}.ext"), "w") as f:
                f.write(san + "\n")
            ext = ["-extfile", f"{name}.ext"]
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext, cwd=d)

    def path(self, name):
        return os.path.join(self.dir, name)

    def fingerprint(self, name):
        out = subprocess.run(["openssl", "x509", "-in", self.path(name + ".pem"), "-noout",
                              "-fingerprint", "-sha256"], check=True, capture_output=True, text=True)
        return out.stdout.strip().split("=", 1)[1].replace(":", "").lower()


class Sink:
    """The downstream: test/integration/sink.py writing one file per message."""

    def __init__(self, base, lmtp=False, extra=()):
        self.dir = make_dir(tempfile.mkdtemp(prefix="sink-", dir=base))
        self.port = free_port()
        self.lmtp = lmtp
        self.extra = list(extra)
        self.proc = None

    def start(self):
        args = [sys.executable, os.path.join(HERE, "sink.py"), "--port", str(self.port),
                "--dir", self.dir, *self.extra]
        if self.lmtp:
            args.append("--lmtp")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        assert "ready" in line, f"sink did not start: {line}"
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def messages(self):
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".eml"):
                with open(os.path.join(self.dir, name), "rb") as f:
                    out.append(f.read())
        return out

    def wait_messages(self, n, timeout=15.0):
        return wait_for(lambda: len(self.messages()) >= n and self.messages(), timeout,
                        what=f"{n} message(s) at the sink")


class Postern:
    """A running posternd with its own configuration and state."""

    def __init__(self, base, pki, sasldb, downstream=None, extra="", listen_extra=None,
                 limits="", relay_extra="", trace="", sender_map=None, policy="", sasl_extra=""):
        self.base = base
        self.pki = pki
        self.ports = {"smtps": free_port(), "submission": free_port(), "mx": free_port()}
        self.spool = make_dir(os.path.join(base, "spool"), for_daemon=True)
        self.maildir = make_dir(os.path.join(base, "Maildir"), for_daemon=True)
        self.trace_dir = make_dir(os.path.join(base, "trace"), for_daemon=True)
        self.trace_db = os.path.join(self.trace_dir, "trace.db")
        self.sender_map = os.path.join(base, "senders")
        with open(self.sender_map, "w") as f:
            f.write(DEFAULT_SENDER_MAP if sender_map is None else sender_map)
        os.chmod(self.sender_map, 0o644)
        self.keys = os.path.join(base, "trace.keys")
        with open(self.keys, "w") as f:
            f.write("k1 " + os.urandom(32).hex() + "\n")
        os.chmod(self.keys, 0o600)
        self.log_path = os.path.join(base, "posternd.log")
        self.conf = os.path.join(base, "postern.conf")
        listen_extra = listen_extra or {}
        relay = f'downstream = "{downstream}"' if downstream else f'maildir = "{self.maildir}"'
        user = 'user = "nobody"' if IS_ROOT else ""
        lines = [
            f'hostname = "{HOSTNAME}"', user, "loops = 2",
            'log { syslog = false level = "debug" }',
        ]
        for mode, port in self.ports.items():
            lines.append(f'listen {mode} {{ address = "127.0.0.1:{port}" {listen_extra.get(mode, "")} }}')
        lines += [
            f'tls {{ cert = "{pki.path("server.pem")}" key = "{pki.path("server.key")}" ca = "{pki.ca}" '
            'handshake_timeout = "5s" }',
            f'sasl {{ sasldb = "{sasldb}" fail_delay = "1s" {sasl_extra} }}',
            f'limits {{ max_message_size = "1M" max_recipients = 20 idle_timeout = "30s" {limits} }}',
            f'policy {{ local_domains = {{ "example.org", "mx.test" }} '
            f'sender_map = "{self.sender_map}" {policy} }}',
            f'trace {{ db = "{self.trace_db}" key_file = "{self.keys}" {trace} }}',
            f'spool {{ directory = "{self.spool}" }}',
            f'relay {{ {relay} retry_min = "1s" retry_max = "2s" timeout = "10s" {relay_extra} }}',
            # No test sends DNS beyond loopback: lookups only where a test
            # starts its own DNS server.
            extra if "dns {" in extra else extra + '\ndns { reverse_lookup = false }',
        ]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None
        self.log = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([POSTERND, "-c", self.conf], stdout=self.log, stderr=self.log)
        for port in self.ports.values():
            wait_port(port)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops posternd and returns its exit status."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.log.close()
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def postern(self, *args, check=False):
        """Runs the operator tool against this instance's configuration."""
        return subprocess.run([POSTERN, *args], capture_output=True, text=True, check=check,
                              timeout=60)

    def logtext(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def queue(self):
        q = os.path.join(self.spool, "queue")
        return sorted(os.listdir(q)) if os.path.isdir(q) else []

    def maildir_messages(self):
        new = os.path.join(self.maildir, "new")
        if not os.path.isdir(new):
            return []
        out = []
        for name in sorted(os.listdir(new)):
            with open(os.path.join(new, name), "rb") as f:
                out.append(f.read())
        return out

    # ---- clients -------------------------------------------------------
    def tls_context(self, cert=None):
        ctx = ssl.create_default_context(cafile=self.pki.ca)
        ctx.check_hostname = False
        if cert:
            ctx.load_cert_chain(self.pki.path(cert + ".pem"), self.pki.path(cert + ".key"))
        return ctx

    def smtps(self, cert=None, timeout=10):
        return smtplib.SMTP_SSL("127.0.0.1", self.ports["smtps"], context=self.tls_context(cert),
                                timeout=timeout)

    def submission(self, starttls=True, timeout=10):
        c = smtplib.SMTP("127.0.0.1", self.ports["submission"], timeout=timeout)
        c.ehlo("client.test")
        if starttls:
            c.starttls(context=self.tls_context())
            c.ehlo("client.test")
        return c

    def raw(self, mode="smtps", cert=None, timeout=10, source=None):
        return RawClient(self, mode, cert, timeout, source)


OPEN_CLIENTS = []


def enh(lines):
    """The enhanced status code of a reply's last line."""
    return lines[-1][4:].split(" ", 1)[0]


def expect(reply, code, enhanced=None):
    """Asserts a (code, lines) reply; returns its lines."""
    got, lines = reply
    assert got == code, f"expected {code} {enhanced or ''}, got {lines}"
    if enhanced is not None:
        assert enh(lines) == enhanced, f"expected {code} {enhanced}, got {lines}"
    return lines


class RawClient:
    """Byte-exact SMTP for tests that must send what no library would. The
    greeting is not read on connect: call reply() for it first. Clients
    still open when a test ends are closed before posternd is stopped: a
    session left in DATA would make SIGTERM wait for it."""

    def __init__(self, postern, mode, cert, timeout, source=None):
        OPEN_CLIENTS.append(self)
        self.p = postern
        self.sock = socket.create_connection(("127.0.0.1", postern.ports[mode]), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if mode == "smtps":
            self.sock = postern.tls_context(cert).wrap_socket(self.sock)
        self.buf = b""

    def starttls(self):
        self.sock = self.p.tls_context().wrap_socket(self.sock)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """Reads one (possibly multi-line) reply: (code, text lines)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed; got %r" % (lines,))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), lines

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def login(self, user="alice", password=None):
        password = password or USERS[user]
        self.cmd("EHLO client.test")
        tok = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        code, lines = self.cmd("AUTH PLAIN " + tok)
        assert code == 235, lines

    def closed(self, timeout=5):
        """True when the server has closed the connection."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def saslpasswd2(db, user, password=None):
    """Sets user's password in db, or deletes user (password None)."""
    if password is None:
        subprocess.run([SASLPASSWD2, "-d", "-f", db, "-u", HOSTNAME, user], check=True)
    else:
        subprocess.run([SASLPASSWD2, "-p", "-c", "-f", db, "-u", HOSTNAME, user],
                       input=password.encode(), check=True)


def own_sasldb(workdir, accounts):
    """A sasldb of the test's own, old enough for the cache to remember
    logins from it (its last change at least 2 s ago)."""
    d = make_dir(os.path.join(workdir, f"sasl-{os.urandom(4).hex()}"))
    db = os.path.join(d, "sasldb2")
    for user, password in accounts.items():
        saslpasswd2(db, user, password)
    os.chmod(db, 0o644)
    while time.time() - os.stat(db).st_ctime < 2.2:
        time.sleep(0.1)
    return db


# ---- fixtures --------------------------------------------------------------

@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="postern-it-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pki(workdir):
    return PKI(make_dir(os.path.join(workdir, "pki")))


@pytest.fixture(scope="session")
def sasldb(workdir):
    path = os.path.join(workdir, "sasldb2")
    for user, password in USERS.items():
        if "@" in user:
            name, realm = user.split("@", 1)
        else:
            name, realm = user, HOSTNAME
        subprocess.run([SASLPASSWD2, "-p", "-c", "-f", path, "-u", realm, name],
                       input=password.encode(), check=True)
    os.chmod(path, 0o644)
    return path


@pytest.fixture
def sink(workdir):
    s = Sink(workdir).start()
    yield s
    s.stop()


@pytest.fixture
def make_postern(workdir, pki, sasldb):
    started = []

    def make(**kw):
        base = make_dir(tempfile.mkdtemp(prefix="p-", dir=workdir))
        p = Postern(base, pki, kw.pop("sasldb", sasldb), **kw)
        started.append(p)
        return p.start()

    yield make
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().close()
    problems = []
    for p in started:
        if p.proc:
            rc = p.stop()
            if rc != 0:
                problems.append(f"posternd exited with status {rc}")
        log = p.logtext()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "event=loop_busy"):
            if marker in log:
                problems.append(f"{marker} in {p.log_path}")
    assert not problems, "; ".join(problems)


@pytest.fixture
def postern(make_postern, sink):
    """posternd relaying to a fresh capture sink (p.sink)."""
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
    p.sink = sink
    return p
