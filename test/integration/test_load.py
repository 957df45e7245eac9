"""Load: 500 clients connected at once, each authenticates and sends one
message; every one is acknowledged and arrives, and the server still
answers afterwards."""

import os
import re
import resource
import smtplib
import ssl
import threading
import time

from conftest import USERS, wait_for

N_CLIENTS = 500
QID_RE = re.compile(rb"queued as ([0-9A-V]{16})")
RECEIVED_ID_RE = re.compile(rb"\(Postern\) with ESMTPSA id ([0-9A-V]{16})")


def raise_nofile(need):
    """Soft RLIMIT_NOFILE up to the hard limit; posternd (started as a
    child, then dropping to nobody) inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= need, f"RLIMIT_NOFILE {soft} is too low for {N_CLIENTS} connections"
    return soft


def session_logs(p, client_ports):
    """The server's log lines of the sessions from these client ports."""
    log = p.logtext()
    out = []
    for port in client_ports:
        m = re.search(rf"event=connect sid=(\S+) listener=\S+ client=127\.0\.0\.1 port={port}\b", log)
        if not m:
            out.append(f"(no session from port {port} in the log)")
            continue
        sid = m.group(1)
        out += [l for l in log.splitlines() if re.search(rf"\bsid={re.escape(sid)}\b", l)]
        out.append("--")
    return "\n".join(out)


def eml_count(sink):
    return sum(1 for n in os.listdir(sink.dir) if n.endswith(".eml"))


def test_500_concurrent_connections(make_postern, sink):
    raise_nofile(2 * N_CLIENTS + 200)
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
    ctx = p.tls_context()
    barrier = threading.Barrier(N_CLIENTS + 1, timeout=60)
    results = [None] * N_CLIENTS           # qid, or the error as a string
    connected = [False] * N_CLIENTS
    ports = [None] * N_CLIENTS             # client port, to find the session in the log

    def client(i):
        c = None
        try:
            c = smtplib.SMTP_SSL("127.0.0.1", p.ports["smtps"], context=ctx, timeout=60)
            ports[i] = c.sock.getsockname()[1]
            user = "alice" if i % 2 == 0 else "bob"
            c.login(user, USERS[user])
            connected[i] = True
        except Exception as e:             # noqa: BLE001 - reported below
            results[i] = f"connect/auth: {e!r}"
        try:
            barrier.wait()                 # all of them are connected at once
        except threading.BrokenBarrierError:
            pass
        if not connected[i]:
            return
        stage = "MAIL"
        try:
            user = "alice" if i % 2 == 0 else "bob"
            code, resp = c.mail(f"{user}@mx.test")
            assert code == 250, resp
            stage = "RCPT"
            code, resp = c.rcpt(f"load{i}@example.net")
            assert code == 250, resp
            stage = "DATA"
            code, resp = c.data(b"Subject: load %d\r\n\r\nmessage number %d\r\n" % (i, i))
            if code == 250:
                results[i] = QID_RE.search(resp).group(1).decode()
            else:
                results[i] = f"DATA: {code} {resp!r}"
            c.quit()
        except Exception as e:             # noqa: BLE001
            if results[i] is None:
                results[i] = f"{stage}: {e!r}"
        finally:
            try:
                c.close()
            except Exception:              # noqa: BLE001
                pass

    old_stack = threading.stack_size(512 * 1024)
    try:
        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(N_CLIENTS)]
    finally:
        threading.stack_size(old_stack)
    t0 = time.time()
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    t_connected = time.time() - t0
    n_connected = sum(connected)
    for t in threads:
        t.join(60)
    t_sent = time.time() - t0
    assert not any(t.is_alive() for t in threads)

    failed = [i for i, r in enumerate(results) if r is None or not re.fullmatch(r"[0-9A-V]{16}", r)]
    errors = [results[i] for i in failed]
    qids = [r for i, r in enumerate(results) if i not in failed]
    print(f"\n{n_connected}/{N_CLIENTS} connected+authenticated at once after {t_connected:.1f}s; "
          f"{len(qids)} acknowledged after {t_sent:.1f}s")
    assert n_connected == N_CLIENTS, errors[:5]
    assert errors == [], f"{len(errors)} failed, e.g. {errors[:5]}\n" + session_logs(
        p, [ports[i] for i in failed[:3]])
    assert len(set(qids)) == N_CLIENTS

    wait_for(lambda: eml_count(sink) >= N_CLIENTS, timeout=40, interval=0.2,
             what=f"{N_CLIENTS} messages at the sink")
    t_delivered = time.time() - t0
    print(f"all {N_CLIENTS} at the sink after {t_delivered:.1f}s")
    got = []
    for m in sink.messages():
        found = RECEIVED_ID_RE.search(m)
        assert found, m[:300]
        got.append(found.group(1).decode())
    assert sorted(got) == sorted(qids)
    wait_for(lambda: p.queue() == [], timeout=10, what="the queue to empty")

    # and the server still answers a new client
    with p.smtps() as c:
        c.login("alice", USERS["alice"])
        assert c.noop()[0] == 250
        code, resp = c.mail("alice@mx.test")
        assert code == 250
        assert c.rcpt("after@example.net")[0] == 250
        code, resp = c.data(b"Subject: after the storm\r\n\r\nstill here\r\n")
        assert code == 250, resp
    wait_for(lambda: eml_count(sink) >= N_CLIENTS + 1, timeout=10, what="the last message")
    assert p.proc.poll() is None
