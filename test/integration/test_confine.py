"""Confinement of the running daemon, read from the kernel's side: every
thread of posternd (those made before the filter and those made after it,
the thread pool's SASL workers included) runs with NoNewPrivs and a
seccomp filter; `sandbox { seccomp = false }` leaves the filter out. That
the whole suite passes with the filter on is what shows the allowlist is
complete."""

import os
import re

from conftest import USERS, wait_for


def tasks_status(pid):
    """{tid: {field: value}} from /proc/<pid>/task/*/status."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                text = f.read()
        except FileNotFoundError:
            continue   # a thread that just ended
        out[int(tid)] = dict(re.findall(r"^(\w+):\s*(.*)$", text, re.M))
    return out


def login_and_send(p):
    """Puts the thread pool to work (the SASL check runs there)."""
    with p.smtps() as c:
        c.login("alice", USERS["alice"])
        c.sendmail("alice@mx.test", ["r@example.net"], b"Subject: confined\r\n\r\nbody\r\n")


def test_every_thread_is_filtered(postern):
    wait_for(lambda: "event=started" in postern.logtext(), 10, what="the daemon started")
    assert re.search(r"event=sandbox seccomp=on action=kill_process rules=\d+ no_new_privs=yes",
                     postern.logtext()), postern.logtext()
    login_and_send(postern)
    postern.sink.wait_messages(1)
    tasks = tasks_status(postern.proc.pid)
    names = sorted(t["Name"] for t in tasks.values())
    # The loops, spool, trace writer and relay threads, and the pool's.
    assert len(tasks) >= 8, names
    for tid, st in tasks.items():
        assert st["NoNewPrivs"] == "1", (tid, st["Name"])
        assert st["Seccomp"] == "2", (tid, st["Name"], st["Seccomp"])
        assert st["Seccomp_filters"] == "1", (tid, st["Name"])
        assert st["CapEff"] == "0000000000000000", (tid, st["Name"])


def test_filter_switched_off(make_postern, sink):
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}",
                     extra="sandbox { seccomp = false }")
    wait_for(lambda: "event=sandbox seccomp=off" in p.logtext(), 10, what="the sandbox line")
    login_and_send(p)
    sink.wait_messages(1)
    for tid, st in tasks_status(p.proc.pid).items():
        assert st["Seccomp"] == "0", (tid, st["Name"])
        assert st["NoNewPrivs"] == "1", (tid, st["Name"])
