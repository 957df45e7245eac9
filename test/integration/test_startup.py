"""Start-up as an operator meets it: the files the daemon creates and who
may read them, the directories it makes before it drops privileges, the
checks of `posternd -t` and of a start from the daemon user's point of
view, and the file descriptor limit against `max_connections`."""

import os
import stat

import pytest

from conftest import USERS, wait_for


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def send_one(p, subject="modes"):
    with p.smtps() as c:
        c.login("alice", USERS["alice"])
        c.sendmail("alice@mx.test", ["r@example.net"],
                   f"Subject: {subject}\r\n\r\nbody\r\n".encode())


# ---- the trace store's files -------------------------------------------------

def test_trace_store_files_are_not_world_readable(make_postern, sink):
    """Accounts, addresses and recipients are in trace.db and its -wal and
    -shm: 0640 (owner and the operators' group) whatever the umask, even a
    permissive one."""
    old = os.umask(0)
    try:
        p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
    finally:
        os.umask(old)
    wait_for(lambda: "event=started" in p.logtext(), 10, what="the daemon started")
    send_one(p)
    sink.wait_messages(1)
    for suffix in ("", "-wal", "-shm"):
        path = p.trace_db + suffix
        assert os.path.exists(path), path
        assert mode(path) == 0o640, f"{path} is {oct(mode(path))}"


def test_trace_store_left_open_by_an_older_version_is_closed(make_postern, sink):
    """A database an older version made 0644 (and a -wal a crash left
    beside it) loses the world's access at the next start."""
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
    wait_for(lambda: "event=started" in p.logtext(), 10, what="the daemon started")
    p.kill9()
    for suffix in ("", "-wal"):
        assert os.path.exists(p.trace_db + suffix)
        os.chmod(p.trace_db + suffix, 0o644)
    p.start()
    wait_for(lambda: "event=started" in p.logtext().split("event=started", 1)[1], 10,
             what="the second start")
    assert "event=trace_store_mode" in p.logtext()
    send_one(p)
    sink.wait_messages(1)
    for suffix in ("", "-wal", "-shm"):
        assert mode(p.trace_db + suffix) == 0o640, suffix
