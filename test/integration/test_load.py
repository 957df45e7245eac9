"""Load: 500 clients connected at once, each authenticates and sends one
message; every one is acknowledged and arrives, and the server still
answers afterwards. And many commits at the same instant, round after round:
each client gets its 250 whichever event loop serves it."""

import os
import re
import resource
import smtplib
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


def stranded(p, sink):
    """Messages committed (in queue/ or at the sink) whose client was never
    told: no event=queued line for them in the log."""
    time.sleep(1)
    at_sink = set(m.group(1).decode() for m in
                  (re.search(rb"with ESMTPSA id ([0-9A-V]{16})", x) for x in sink.messages()) if m)
    committed = at_sink | set(p.queue())
    log = p.logtext()
    told = set(re.findall(r"event=queued sid=\S+ qid=(\S+)", log))
    late = set(re.findall(r"event=queued qid=(\S+) note=", log))
    silent = sorted(committed - told - late)
    return (f"{len(silent)} committed message(s) whose client never got the 250 "
            f"(in queue/ or at the sink, no event=queued in the log), e.g. {silent[:3]}; "
            f"{len(late)} logged 'client left before the reply'\n")


def eml_count(sink):
    return sum(1 for n in os.listdir(sink.dir) if n.endswith(".eml"))


def test_500_concurrent_connections(make_postern, sink):
    raise_nofile(2 * N_CLIENTS + 200)
    # All 500 come from 127.0.0.1: lift the per-address limit (default 50).
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}",
                     policy="max_connections_per_ip = 0")
    ctx = p.tls_context()
    barrier = threading.Barrier(N_CLIENTS + 1, timeout=60)
    results = [None] * N_CLIENTS           # qid, or the error as a string
    connected = [False] * N_CLIENTS
    ports = [None] * N_CLIENTS             # client port, to find the session in the log
    stages = ["connect"] * N_CLIENTS       # where each client is

    def client(i):
        c = None
        try:
            c = smtplib.SMTP_SSL("127.0.0.1", p.ports["smtps"], context=ctx, timeout=12)
            ports[i] = c.sock.getsockname()[1]
            user = "alice" if i % 2 == 0 else "bob"
            stages[i] = "AUTH"
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
        stages[i] = stage = "MAIL"
        try:
            user = "alice" if i % 2 == 0 else "bob"
            code, resp = c.mail(f"{user}@mx.test")
            assert code == 250, resp
            stages[i] = stage = "RCPT"
            code, resp = c.rcpt(f"load{i}@example.net")
            assert code == 250, resp
            stages[i] = stage = "DATA"
            code, resp = c.docmd("DATA")
            assert code == 354, resp
            stages[i] = stage = "end of data (after 354)"
            c.send(b"Subject: load %d\r\n\r\nmessage number %d\r\n.\r\n" % (i, i))
            code, resp = c.getreply()
            if code == 250:
                results[i] = QID_RE.search(resp).group(1).decode()
            else:
                results[i] = f"DATA: {code} {resp!r}"
            stages[i] = stage = "QUIT"
            c.quit()
        except Exception as e:             # noqa: BLE001
            if results[i] is None:
                results[i] = f"{stage}: {e!r}"
        finally:
            stages[i] += " done"
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
        t.join(max(0.1, t0 + 45 - time.time()))
    t_sent = time.time() - t0
    stuck = [i for i, t in enumerate(threads) if t.is_alive()]
    assert not stuck, (f"{len(stuck)} client(s) still waiting after {t_sent:.0f}s, in "
                       f"{sorted(set(stages[i] for i in stuck))}\n" + stranded(p, sink) +
                       session_logs(p, [ports[i] for i in stuck[:2]]))

    failed = [i for i, r in enumerate(results) if r is None or not re.fullmatch(r"[0-9A-V]{16}", r)]
    errors = [results[i] for i in failed]
    qids = [r for i, r in enumerate(results) if i not in failed]
    print(f"\n{n_connected}/{N_CLIENTS} connected+authenticated at once after {t_connected:.1f}s; "
          f"{len(qids)} acknowledged after {t_sent:.1f}s")
    assert n_connected == N_CLIENTS, errors[:5]
    assert errors == [], (f"{len(errors)} failed, e.g. {errors[:3]}\n" + stranded(p, sink) +
                          session_logs(p, [ports[i] for i in failed[:2]]))
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


def test_simultaneous_commits_are_all_answered(postern):
    """Many clients end DATA at the same moment, round after round: the
    commit thread batches them, and every one must get its 250 promptly
    whichever event loop its session lives on."""
    n_clients, rounds = 32, 12
    barrier = threading.Barrier(n_clients, timeout=30)
    problems = []
    answered = []
    lock = threading.Lock()

    def client(i):
        try:
            c = postern.smtps(timeout=5)
            c.login("alice", USERS["alice"])
        except Exception as e:             # noqa: BLE001
            with lock:
                problems.append(f"client {i} connect/auth: {e!r}")
            barrier.abort()
            return
        try:
            for r in range(rounds):
                assert c.mail("alice@mx.test")[0] == 250
                assert c.rcpt(f"c{i}r{r}@example.net")[0] == 250
                code, resp = c.docmd("DATA")
                assert code == 354, resp
                barrier.wait()             # everybody ends DATA together
                t = time.time()
                c.send(b"Subject: round %d\r\n\r\nclient %d\r\n.\r\n" % (r, i))
                try:
                    code, resp = c.getreply()
                except smtplib.SMTPServerDisconnected as e:
                    with lock:
                        problems.append(f"round {r} client {i}: no reply to the end of data "
                                        f"within 5 s ({e})")
                    barrier.abort()
                    return
                assert code == 250, resp
                with lock:
                    answered.append((time.time() - t, QID_RE.search(resp).group(1).decode()))
            c.quit()
        except threading.BrokenBarrierError:
            pass
        except Exception as e:             # noqa: BLE001
            with lock:
                problems.append(f"client {i}: {e!r}")
            barrier.abort()
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n_clients)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    slowest = max((a[0] for a in answered), default=0)
    print(f"\n{len(answered)} commits answered in {time.time() - t0:.1f}s, slowest reply "
          f"{slowest * 1000:.0f} ms")
    if problems:
        raise AssertionError(f"{problems[:3]}\n" + stranded(postern, postern.sink))
    assert len(answered) == n_clients * rounds
    wait_for(lambda: eml_count(postern.sink) >= n_clients * rounds, timeout=40, interval=0.2,
             what="every message at the sink")
