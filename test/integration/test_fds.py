"""Out of file descriptors: posternd at its open-file limit must neither
spin nor flood the log (it wrote 3.1 million accept_error lines in 4 s and
used a whole core), must answer what it can, and must serve new clients
again, and stop on SIGTERM, once descriptors are free.

The start-up check keeps max_connections well under the limit, so the
test takes the limit away from a running daemon (prlimit, run as the
daemon's own user, which may lower its limits without privileges)."""

import os
import pwd
import shutil
import socket
import subprocess
import time

import pytest

from conftest import IS_ROOT, wait_for


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def lower_nofile(pid, limit):
    def as_daemon():
        if IS_ROOT:
            nobody = pwd.getpwnam("nobody")
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:{limit}"], check=True,
                   preexec_fn=as_daemon)


def test_descriptor_exhaustion(make_postern):
    if not shutil.which("prlimit"):
        pytest.skip("prlimit (util-linux) is missing")
    p = make_postern()
    pid = p.proc.pid
    time.sleep(0.5)
    # Room for a few connections only, from now on.
    lower_nofile(pid, open_fds(pid) + 6)
    held = []
    try:
        for _ in range(60):
            for mode in ("submission", "mx"):
                held.append(socket.create_connection(("127.0.0.1", p.ports[mode]), timeout=5))
        time.sleep(1)
        # The loops wait instead of spinning: little CPU, few log lines.
        c0, lines0 = cpu_seconds(pid), p.logtext().count("event=accept_error")
        time.sleep(3)
        used = cpu_seconds(pid) - c0
        logged = p.logtext().count("event=accept_error") - lines0
        assert used < 0.5, f"{used:.2f} s of CPU in 3 s at the descriptor limit"
        assert logged <= 4, f"{logged} accept_error lines in 3 s"
        # Some of those over the limit were told so, rather than left
        # hanging or dropped in silence.
        told = 0
        for s in held:
            s.settimeout(0.05)
            try:
                told += s.recv(200).startswith(b"421 4.3.2")
            except OSError:
                pass
        assert told >= 1, told
        # and it was logged, with a count, not once per attempt
        line = [ln for ln in p.logtext().splitlines() if "event=accept_error" in ln][-1]
        assert "count=" in line and "Too many open files" in line, line
    finally:
        for s in held:
            s.close()
    # Descriptors free again: a new client is greeted.

    def greets():
        try:
            c = p.raw("submission", timeout=2)
            ok = c.reply()[0] == 220
            c.close()
            return ok
        except (OSError, ConnectionError):
            return False
    wait_for(greets, 15, interval=0.3, what="a greeting after the exhaustion")
    assert p.stop(timeout=20) == 0
