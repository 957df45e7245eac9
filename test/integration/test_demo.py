"""The README's quick start: scripts/demo.sh makes a working set-up, and the
swaks line from the README delivers into the demo Maildir."""

import os
import signal
import subprocess
import tempfile

import pytest

from conftest import BUILDDIR, SRCDIR, make_dir, wait_for, wait_port


def test_demo_setup_delivers(workdir):
    state = make_dir(tempfile.mkdtemp(prefix="demo-", dir=workdir))
    with socket_free(10465) as free:
        if not free:
            pytest.skip("port 10465 is in use: the demo's fixed port")
    proc = subprocess.Popen([os.path.join(SRCDIR, "scripts", "demo.sh"), BUILDDIR, state],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_port(10465)
        with open(os.path.join(state, "password")) as f:
            password = f.read().strip()
        out = subprocess.run(
            ["swaks", "--server", "127.0.0.1:10465", "--tlsc", "--auth", "PLAIN",
             "--auth-user", "demo", "--auth-password", password,
             "--from", "demo@localhost", "--to", "you@example.org"],
            capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        new = os.path.join(state, "Maildir", "new")
        wait_for(lambda: os.listdir(new), 10, what="the message in the demo Maildir")
        trace = subprocess.run([os.path.join(BUILDDIR, "postern"), "trace", "-c",
                                os.path.join(state, "postern.conf"), "--account", "demo"],
                               capture_output=True, text=True, timeout=30)
        assert trace.returncode == 0 and "demo" in trace.stdout, trace.stdout + trace.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


class socket_free:
    """True inside the block when nothing listens on the port."""

    def __init__(self, port):
        self.port = port

    def __enter__(self):
        import socket
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) != 0

    def __exit__(self, *exc):
        return False
