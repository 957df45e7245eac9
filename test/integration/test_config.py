"""The configuration as an operator meets it: `posternd -t` accepting a
good file and pointing at the file and line of a bad one, the sample
etc/postern.conf, and stopping the daemon with SIGTERM."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import IS_ROOT, POSTERND, SRCDIR, free_port, make_dir, wait_for

SAMPLE = os.path.join(SRCDIR, "etc", "postern.conf")


def good_lines(pki, sasldb, spool):
    """A valid configuration, one setting per line so that every line
    number below is unambiguous."""
    return [
        'hostname = "mx.test"',
        'user = "nobody"' if IS_ROOT else "# user unset: not root",
        "log {",
        "\tsyslog = false",
        '\tlevel = "info"',
        "}",
        "listen smtps {",
        f'\taddress = "127.0.0.1:{free_port()}"',
        "}",
        "listen submission {",
        f'\taddress = "127.0.0.1:{free_port()}"',
        "}",
        "tls {",
        f'\tcert = "{pki.path("server.pem")}"',
        f'\tkey = "{pki.path("server.key")}"',
        f'\tca = "{pki.ca}"',
        '\thandshake_timeout = "10s"',
        "}",
        "sasl {",
        f'\tsasldb = "{sasldb}"',
        "}",
        "limits {",
        '\tmax_recipients = 20',
        '\tmax_message_size = "1M"',
        "}",
        "spool {",
        f'\tdirectory = "{spool}"',
        "}",
        "relay {",
        '\tdownstream = "smtp://127.0.0.1:10026"',
        "}",
    ]


def line_of(lines, needle):
    """1-based number of the first line containing needle."""
    for i, line in enumerate(lines, 1):
        if needle in line:
            return i
    raise KeyError(needle)


def check(path):
    return subprocess.run([POSTERND, "-t", "-c", path], capture_output=True, text=True, timeout=20)


@pytest.fixture
def conf(tmp_path, pki, sasldb, workdir):
    """Writes a variant of the good configuration; returns (path, lines).
    The spool is where the daemon user can reach it (pytest's tmp_path is
    root's 0700, and posternd -t checks as that user)."""
    spool = os.path.join(make_dir(tempfile.mkdtemp(prefix="t-", dir=workdir)), "spool")

    def write(edit=None, name="postern.conf"):
        lines = good_lines(pki, sasldb, spool)
        if edit:
            lines = edit(lines)
        path = str(tmp_path / name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path, lines
    return write


def replace(old, new):
    def edit(lines):
        n = line_of(lines, old)
        lines[n - 1] = lines[n - 1].replace(old, new)
        return lines
    return edit


def set_value(key, value):
    """Replaces the quoted value on the first line containing key."""
    def edit(lines):
        n = line_of(lines, key)
        lines[n - 1] = re.sub(r'"[^"]*"', lambda m: f'"{value}"', lines[n - 1], count=1)
        return lines
    return edit


def insert_after(needle, new_line):
    def edit(lines):
        n = line_of(lines, needle)
        lines.insert(n, new_line)
        return lines
    return edit


def error_line(out, path):
    """The line number in "posternd: <path>:<line>: <reason>", or None."""
    m = re.search(rf"{re.escape(path)}:(\d+): \S", out.stderr)
    return int(m.group(1)) if m else None


# ---- posternd -t -------------------------------------------------------------------

def test_good_config(conf):
    path, _ = conf()
    out = check(path)
    assert out.returncode == 0, out.stderr
    assert "configuration OK" in out.stdout
    assert path in out.stdout


@pytest.mark.parametrize("case", [
    "unknown_option_top", "unknown_option_in_section", "bad_size", "bad_listen_address",
    "bad_listen_port", "mode_typo", "bad_duration",
])
def test_bad_config_points_at_line(conf, case):
    if case == "unknown_option_top":
        edit, needle, words = insert_after('hostname = ', "colour = \"blue\""), "colour", ["colour"]
    elif case == "unknown_option_in_section":
        edit, needle, words = insert_after('level = ', '\tcolour = "blue"'), "colour", ["colour"]
    elif case == "bad_size":
        edit, needle, words = replace('"1M"', '"lots"'), '"lots"', ["max_message_size", "lots"]
    elif case == "bad_listen_address":
        edit = set_value("address", "127.0.0.1")
        needle, words = 'address = "127.0.0.1"', ["address", "127.0.0.1"]
    elif case == "bad_listen_port":
        edit = set_value("address", "127.0.0.1:99999")
        needle, words = "127.0.0.1:99999", ["address", "99999"]
    elif case == "mode_typo":
        # One line, so the section's line is the offending line either way.
        def edit(lines):
            n = line_of(lines, "listen submission {")
            lines[n - 1:n + 2] = [f'listen smpts {{ address = "127.0.0.1:{free_port()}" }}']
            return lines
        needle, words = "listen smpts", ["smpts"]
    else:
        edit, needle, words = replace('"10s"', '"soon"'), '"soon"', ["handshake_timeout", "soon"]
    path, lines = conf(edit)
    out = check(path)
    assert out.returncode != 0, out.stdout
    assert "configuration OK" not in out.stdout
    for w in words:
        assert w in out.stderr, out.stderr
    want = line_of(lines, needle)
    got = error_line(out, path)
    assert got == want, f"error should name {path}:{want}; stderr: {out.stderr.strip()}"


def test_missing_cert_file(conf, tmp_path):
    missing = str(tmp_path / "no-such-cert.pem")
    path, lines = conf(set_value("cert = ", missing))
    out = check(path)
    assert out.returncode != 0
    assert missing in out.stderr, out.stderr
    assert path in out.stderr, out.stderr
    # README: "exit 1 + file:line: reason on error".
    want = line_of(lines, "cert = ")
    assert error_line(out, path) == want, f"error should name {path}:{want}; stderr: {out.stderr.strip()}"


def test_key_not_matching_cert(conf, pki):
    path, lines = conf(replace(pki.path("server.key"), pki.path("client.key")))
    out = check(path)
    assert out.returncode != 0
    assert pki.path("client.key") in out.stderr, out.stderr
    assert re.search(r"does not match|mismatch", out.stderr), out.stderr
    # Any line of the tls { } section will do.
    first, last = line_of(lines, "tls {"), line_of(lines, "handshake_timeout") + 1
    got = error_line(out, path)
    assert got is not None and first <= got <= last, \
        f"error should name {path}:<line in {first}..{last}>; stderr: {out.stderr.strip()}"


def test_nonexistent_config_file(tmp_path):
    path = str(tmp_path / "does-not-exist.conf")
    for args in (["-t", "-c", path], ["-c", path]):
        out = subprocess.run([POSTERND, *args], capture_output=True, text=True, timeout=20)
        assert out.returncode != 0
        assert path in out.stderr and "No such file" in out.stderr, out.stderr


def test_check_does_not_bind(postern):
    """-t on the configuration of a running daemon: its ports are taken."""
    out = check(postern.conf)
    assert out.returncode == 0, out.stderr
    assert "configuration OK" in out.stdout
    with postern.smtps() as c:
        assert c.noop()[0] == 250


def test_sample_config_parses(tmp_path, pki, sasldb):
    with open(SAMPLE) as f:
        text = f.read()
    keys = tmp_path / "trace.keys"
    keys.write_text("k1 " + os.urandom(32).hex() + "\n")
    keys.chmod(0o600)
    senders = tmp_path / "senders"
    senders.write_text("alice alice@example.org\n")
    subst = {
        r'(\bsender_map\s*=\s*)"[^"]*"': str(senders),
        r'(\bkey_file\s*=\s*)"[^"]*"': str(keys),
        r'(\bcert\s*=\s*)"[^"]*"': pki.path("server.pem"),
        r'(\bkey\s*=\s*)"[^"]*"': pki.path("server.key"),
        r'(\bca\s*=\s*)"[^"]*"': pki.ca,
        r'(\bsasldb\s*=\s*)"[^"]*"': sasldb,
    }
    for pattern, value in subst.items():
        text, n = re.subn(pattern, lambda m, v=value: f'{m.group(1)}"{v}"', text, count=1)
        assert n == 1, pattern
    if IS_ROOT:
        text, n = re.subn(r'^user\s*=\s*"[^"]*"', 'user = "nobody"', text, count=1, flags=re.M)
        assert n == 1
    path = str(tmp_path / "postern.conf")
    with open(path, "w") as f:
        f.write(text)
    out = check(path)
    assert out.returncode == 0, out.stderr
    assert "configuration OK" in out.stdout


# ---- addresses in use ----------------------------------------------------------------

def run_posternd(text, base):
    path = os.path.join(base, "postern.conf")
    with open(path, "w") as f:
        f.write(text)
    return subprocess.run([POSTERND, "-c", path], capture_output=True, text=True, timeout=30)


def test_port_of_a_running_daemon_refused(postern, workdir):
    """A second posternd on the first one's smtps port stops with "Address
    already in use" (SO_REUSEPORT would otherwise let it take a share of
    the first one's connections); the first one goes on serving."""
    base = make_dir(tempfile.mkdtemp(prefix="second-", dir=workdir))
    with open(postern.conf) as f:
        text = f.read()
    for mode in ("submission", "mx"):
        text = text.replace(f'127.0.0.1:{postern.ports[mode]}"', f'127.0.0.1:{free_port()}"')
    spool = make_dir(os.path.join(base, "spool"), for_daemon=True)
    trace = make_dir(os.path.join(base, "trace"), for_daemon=True)
    text = text.replace(f'"{postern.spool}"', f'"{spool}"')
    text = text.replace(f'"{postern.trace_db}"', f'"{os.path.join(trace, "trace.db")}"')
    out = run_posternd(text, base)
    assert out.returncode != 0
    address = f"127.0.0.1:{postern.ports['smtps']}"
    assert f"listen {address}: Address already in use" in out.stderr, out.stderr
    for _ in range(8):
        with postern.smtps() as c:
            assert c.noop()[0] == 250


def test_two_listeners_on_one_address_refused(postern):
    """A configuration that gives two listeners the same address does not
    start: connections would land on either at random."""
    assert postern.stop() == 0
    with open(postern.conf) as f:
        text = f.read()
    smtps = f'127.0.0.1:{postern.ports["smtps"]}"'
    text = text.replace(f'127.0.0.1:{postern.ports["submission"]}"', smtps)
    out = run_posternd(text, postern.base)
    assert out.returncode != 0
    assert f"listen {smtps[:-1]}: Address already in use" in out.stderr, out.stderr


# ---- signals -----------------------------------------------------------------------

def test_sigterm_idle_daemon(make_postern):
    p = make_postern()
    wait_for(lambda: "event=started" in p.logtext(), timeout=5, what="event=started")
    t0 = time.monotonic()
    rc = p.stop(signal.SIGTERM, timeout=10)
    elapsed = time.monotonic() - t0
    assert rc == 0
    assert elapsed < 5, f"took {elapsed:.1f}s to stop"
    lines = [line for line in p.logtext().splitlines() if line.strip()]
    assert "event=stopped" in lines[-1], lines[-3:]


@pytest.mark.parametrize("mode", ["smtps", "submission"])
def test_sigterm_with_idle_client(make_postern, mode):
    p = make_postern()
    c = p.raw(mode)
    assert c.reply()[0] == 220
    if mode == "smtps":
        c.login("alice")
    else:
        assert c.cmd("EHLO client.test")[0] == 250
    # A second client that never finishes its TLS handshake must not hold
    # the stop up either.
    silent = socket.create_connection(("127.0.0.1", p.ports["smtps"]), timeout=5)
    time.sleep(0.1)
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    code, lines = c.reply()
    assert code == 421 and lines[-1][4:].startswith("4.3.2"), lines
    assert c.closed()
    c.close()
    rc = p.proc.wait(10)
    elapsed = time.monotonic() - t0
    p.stop()
    silent.close()
    assert rc == 0
    assert elapsed < 5, f"took {elapsed:.1f}s to stop"
    assert "event=stopped" in p.logtext()
