"""Start-up as an operator meets it: the files the daemon creates and who
may read them, the directories it makes before it drops privileges, the
checks of `posternd -t` and of a start from the daemon user's point of
view, and the file descriptor limit against `max_connections`."""

import os
import pwd
import re
import resource
import shutil
import signal
import stat
import subprocess
import tempfile

import pytest

from conftest import IS_ROOT, POSTERND, USERS, Postern, expect, make_dir, wait_for, wait_port

needs_root = pytest.mark.skipif(not IS_ROOT, reason="the daemon user's view differs from the"
                                " starter's only when posternd starts as root")


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


# ---- directories and access, from the daemon user's point of view -------------

@pytest.fixture
def unstarted(workdir, pki, sasldb):
    """Postern objects whose configuration a test edits before it starts
    them; stopped (and their logs checked) at the end like make_postern's."""
    made = []

    def make(**kw):
        base = make_dir(tempfile.mkdtemp(prefix="p-", dir=workdir))
        p = Postern(base, pki, kw.pop("sasldb", sasldb), **kw)
        made.append(p)
        return p

    yield make
    problems = []
    for p in made:
        if p.proc:
            rc = p.stop()
            if rc != 0:
                problems.append(f"posternd exited with status {rc}")
        if os.path.exists(p.log_path):
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if marker in p.logtext():
                    problems.append(f"{marker} in {p.log_path}")
    assert not problems, "; ".join(problems)


def edit_conf(p, old, new):
    with open(p.conf) as f:
        text = f.read()
    assert f'"{old}"' in text, old
    with open(p.conf, "w") as f:
        f.write(text.replace(f'"{old}"', f'"{new}"'))


def check(p, **kw):
    return subprocess.run([POSTERND, "-t", "-c", p.conf], capture_output=True, text=True,
                          timeout=30, **kw)


def run_briefly(p):
    """Starts posternd expecting it to refuse: returns (status, stderr)."""
    try:
        out = subprocess.run([POSTERND, "-c", p.conf], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("posternd started although it should have refused")
    return out.returncode, out.stderr


def owner_and_mode(path):
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, stat.S_IMODE(st.st_mode)


@needs_root
def test_first_start_makes_its_directories(unstarted):
    """As in the sample configuration: the spool and the trace database's
    directory do not exist yet, under directories only root may write.
    posternd -t makes nothing; the first start makes them, owned by the
    daemon user, before it drops privileges."""
    p = unstarted()
    var = os.path.join(p.base, "var")
    for d in ("spool", "lib"):
        os.makedirs(os.path.join(var, d), mode=0o755)
    spool = os.path.join(var, "spool", "postern")
    trace_db = os.path.join(var, "lib", "postern", "trace.db")
    edit_conf(p, p.spool, spool)
    edit_conf(p, p.trace_db, trace_db)
    p.spool, p.trace_db = spool, trace_db

    out = check(p)
    assert out.returncode == 0, out.stderr
    assert not os.path.exists(spool) and not os.path.exists(os.path.dirname(trace_db))

    p.start()
    wait_for(lambda: "event=started" in p.logtext(), 10, what="the daemon started")
    assert owner_and_mode(spool) == ("nobody", 0o700)
    assert owner_and_mode(os.path.dirname(trace_db)) == ("nobody", 0o750)
    send_one(p)
    wait_for(lambda: p.maildir_messages(), 15, what="the message delivered")


def unreadable_sasldb(p, sasldb):
    """The sasldb as saslpasswd2 makes it when run as root: root's, 0640."""
    db = os.path.join(p.base, "sasldb2")
    shutil.copy(sasldb, db)
    os.chmod(db, 0o640)
    edit_conf(p, sasldb, db)
    return db


@needs_root
def test_sasldb_the_daemon_user_cannot_read(unstarted, sasldb):
    """Every login would get 454: -t and the start both say which file and why."""
    p = unstarted()
    db = unreadable_sasldb(p, sasldb)
    for rc, err in ((lambda o: (o.returncode, o.stderr))(check(p)), run_briefly(p)):
        assert rc == 1, err
        assert db in err and "nobody" in err and "Permission denied" in err, err
        assert "configuration OK" not in err


def break_spool(p):
    os.chown(p.spool, 0, 0)
    return p.spool


def break_queue(p):
    q = make_dir(os.path.join(p.spool, "queue"))   # root's, 0755
    return q


def break_trace_dir(p):
    os.chown(p.trace_dir, 0, 0)
    return p.trace_dir


def break_trace_db(p):
    with open(p.trace_db, "wb"):
        pass
    os.chmod(p.trace_db, 0o644)   # root's: readable, not writable
    return p.trace_db


def break_parent(p):
    """A spool to be made under a directory the user cannot enter: making
    it as root would succeed, and the daemon could not use it."""
    private = os.path.join(p.base, "private")
    os.mkdir(private, 0o700)
    spool = os.path.join(private, "spool")
    edit_conf(p, p.spool, spool)
    return private


@needs_root
@pytest.mark.parametrize("breaker", [break_spool, break_queue, break_trace_dir, break_trace_db,
                                     break_parent])
def test_directory_the_daemon_user_cannot_write(unstarted, breaker):
    p = unstarted()
    path = breaker(p)
    out = check(p)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{path}: Permission denied" in out.stderr and "nobody" in out.stderr, out.stderr
    assert p.conf in out.stderr
    rc, err = run_briefly(p)
    assert rc == 1 and f"{path}: Permission denied" in err, err


def as_nobody():
    nobody = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)


@needs_root
def test_check_run_by_the_daemon_user_itself(unstarted, sasldb):
    """Started as the unprivileged user (no user = ... needed), the check
    looks with its own eyes."""
    p = unstarted()
    db = unreadable_sasldb(p, sasldb)
    nobody = pwd.getpwnam("nobody")
    # What it reads before dropping privileges must be its own here.
    for path in (p.pki.path("server.key"), p.keys):
        mine = os.path.join(p.base, "own-" + os.path.basename(path))
        shutil.copy(path, mine)
        os.chown(mine, nobody.pw_uid, nobody.pw_gid)
        edit_conf(p, path, mine)
    with open(p.conf) as f:
        text = f.read().replace('user = "nobody"', "")
    with open(p.conf, "w") as f:
        f.write(text)
    out = check(p, preexec_fn=as_nobody)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{db}: Permission denied" in out.stderr, out.stderr
    os.chmod(db, 0o644)
    out = check(p, preexec_fn=as_nobody)
    assert out.returncode == 0, out.stderr


# ---- file descriptors ------------------------------------------------------------

def limited(soft, hard):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return set_limit


def start_limited(p, soft, hard):
    """Postern.start() under RLIMIT_NOFILE (soft, hard)."""
    p.log = open(p.log_path, "ab")
    p.proc = subprocess.Popen([POSTERND, "-c", p.conf], stdout=p.log, stderr=p.log,
                              preexec_fn=limited(soft, hard))
    for port in p.ports.values():
        wait_port(port)
    wait_for(lambda: "event=started" in p.logtext(), 10, what="the daemon started")
    return p


def nofile(pid):
    with open(f"/proc/{pid}/limits") as f:
        m = re.search(r"^Max open files\s+(\d+)\s+(\d+)", f.read(), re.M)
    return int(m.group(1)), int(m.group(2))


def test_soft_fd_limit_raised_to_the_hard_one(unstarted):
    p = unstarted(limits="max_connections = 1000")
    start_limited(p, 256, 4096)
    assert nofile(p.proc.pid) == (4096, 4096)
    assert "event=fd_limit" not in p.logtext()


def test_max_connections_lowered_to_what_the_fd_limit_holds(unstarted):
    """20000 connections (the default) need 40000 descriptors and more; with
    300 the daemon says how many it will take, and takes no more: the one
    beyond gets 421 4.7.0 rather than an accept() that fails."""
    p = unstarted(policy="max_connections_per_ip = 0")
    out = check(p, preexec_fn=limited(300, 300))
    assert out.returncode == 0, out.stderr
    m = re.search(r"event=fd_limit .*max_connections=20000 lowered_to=(\d+)", out.stderr)
    assert m, out.stderr
    start_limited(p, 300, 300)
    m = re.search(r"level=warn event=fd_limit .*max_connections=20000 lowered_to=(\d+)"
                  r" nofile=300", p.logtext())
    assert m, p.logtext()
    cap = int(m.group(1))
    assert 20 <= cap < 150, cap
    fill_to_the_cap(p, cap)
    # A reload reads limits { } again: the cap must survive it.
    p.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "event=reload_done" in p.logtext(), 10, what="the reload")
    fill_to_the_cap(p, cap)


def fill_to_the_cap(p, cap):
    clients = []
    for _ in range(cap):
        c = p.raw("mx")
        expect(c.reply(), 220)
        clients.append(c)
    extra = p.raw("mx")
    expect(extra.reply(), 421, "4.7.0")
    for c in clients + [extra]:
        c.close()
    # The daemon counts them out as it sees them close.
    wait_for(lambda: p.logtext().count("event=disconnect") >= p.logtext().count("event=connect"),
             10, what="the connections closed")


def test_fd_limit_too_low_for_the_daemon_itself(unstarted):
    p = unstarted()
    for argv in ([POSTERND, "-t", "-c", p.conf], [POSTERND, "-c", p.conf]):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20,
                             preexec_fn=limited(40, 40))
        assert out.returncode == 1, out.stdout + out.stderr
        assert "RLIMIT_NOFILE" in out.stderr and "max_connections" in out.stderr, out.stderr
        assert p.conf in out.stderr
