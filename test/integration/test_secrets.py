"""AUTH secrets do not outlive the exchange. After logins that succeed,
fail, are cancelled, are malformed, are answered from the credential
cache, or whose client leaves while Cyrus still works, the memory of the
running posternd (every writable mapping, read through /proc/PID/mem,
which a parent process may read) holds neither the AUTH data as the
client sent it (base64) nor the passwords decoded from it.

What the test cannot ask of posternd: the sasldb's own pages, which
Berkeley DB reads into memory it frees without wiping, hold every stored
password; so the decoded needles are wrong passwords (never stored) and
the PLAIN credential whole (user and password with their NULs, a form the
database never has)."""

import base64
import os
import re
import socket
import time

import pytest

from conftest import USERS, own_sasldb, wait_for
from test_policy import session

MAX_REGION = 1 << 30   # sanitizer shadow and reserved ranges are not heap


def b64(data):
    return base64.b64encode(data).decode()


def regions(pid):
    """(start, end, name) of every readable and writable mapping."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if not parts[1].startswith("rw") or end - start > MAX_REGION:
                continue
            out.append((start, end, parts[5] if len(parts) > 5 else "[anon]"))
    return out


def find_in_memory(pid, needles):
    """{needle: [(region, offset), ...]} over the process's writable memory."""
    found = {n: [] for n in needles}
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for start, end, name in regions(pid):
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue        # a guard page, or a mapping gone meanwhile
            for n in needles:
                for m in re.finditer(re.escape(n), data):
                    found[n].append((name, hex(start + m.start())))
    return found


def pad(c):
    """A command longer than any AUTH line, so that buffers reused for the
    next read (the loop's read buffer) are written over."""
    code, _ = c.cmd("NOOP " + "x" * 480)
    assert code == 250


def unique(tag):
    return f"{tag}-{os.urandom(8).hex()}"


def test_auth_data_leaves_no_copy(make_postern, workdir):
    db = own_sasldb(workdir, {"alice": USERS["alice"], "dora": "dora-cached-pass"})
    p = make_postern(sasldb=db, policy='auth_delay_max = "1s"')
    try:
        open(f"/proc/{p.proc.pid}/mem", "rb").close()
    except OSError as e:
        pytest.skip(f"cannot read posternd's memory: {e}")
    b64_needles, raw_needles = [], []
    time.sleep(0.3)     # the start-up probes have come and gone
    disconnects = lambda: len(re.findall(r"event=disconnect ", p.logtext()))
    before = disconnects()

    def plain_blob(user, password):
        blob = f"\0{user}\0{password}".encode()
        raw_needles.append(blob)
        b64_needles.append(b64(blob).encode())
        return b64(blob)

    # A success through Cyrus, and one answered from memory (the second).
    for _ in range(2):
        c = session(p)
        assert c.cmd("AUTH PLAIN " + plain_blob("dora", "dora-cached-pass"))[0] == 235
        pad(c)
        c.close()
    assert "cache=hit" in p.logtext()
    # Failures: PLAIN with and without an initial response, and LOGIN.
    c = session(p)
    wrong = [unique("wrong-ir"), unique("wrong-resp"), unique("wrong-login")]
    raw_needles.extend(w.encode() for w in wrong)
    assert c.cmd("AUTH PLAIN " + plain_blob("alice", wrong[0]))[0] == 535
    assert c.cmd("AUTH PLAIN")[0] == 334
    assert c.cmd(plain_blob("alice", wrong[1]))[0] == 535
    assert c.cmd("AUTH LOGIN " + b64(b"alice"))[0] == 334
    b64_needles.append(b64(wrong[2].encode()).encode())
    assert c.cmd(b64(wrong[2].encode()))[0] == 535
    # Undecodable: the part before the bad character was decoded already.
    malformed = unique("malformed")
    raw_needles.append(malformed.encode())
    assert c.cmd("AUTH PLAIN")[0] == 334
    line = plain_blob("alice", malformed) + "*"
    b64_needles.append(line.encode())
    assert c.cmd(line)[0] == 501
    # An AUTH line that comes in pieces behind other input: the line
    # reader's buffer grows (and moves) while it holds the first piece.
    split = unique("split")
    raw_needles.append(split.encode())
    tok = plain_blob("alice", split + "-" + "y" * 300)
    c.send("NOOP\r\nAUTH PLAIN " + tok[:40])
    assert c.reply()[0] == 250
    time.sleep(0.2)
    c.send(tok[40:] + "\r\n")
    assert c.reply()[0] == 535
    # Refused by the parser (not base64): never reaches the AUTH code.
    unparsed = unique("unparsed")
    raw_needles.append(unparsed.encode())
    bad = plain_blob("alice", unparsed)
    b64_needles.append((bad + "!").encode())
    assert c.cmd("AUTH PLAIN " + bad + "!")[0] == 501
    # Cancelled after the user name.
    assert c.cmd("AUTH LOGIN")[0] == 334
    assert c.cmd(b64(b"alice"))[0] == 334
    assert c.cmd("*")[0] == 501
    pad(c)
    c.close()
    # The client leaves while the exchange runs on a worker.
    gone = unique("gone")
    raw_needles.append(gone.encode())
    c = session(p)
    c.send("AUTH PLAIN " + plain_blob("alice", gone) + "\r\n")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    c.close()
    wait_for(lambda: disconnects() >= before + 4, what="every session's end")
    time.sleep(1.5)     # the worker's answer to the client that left
    found = find_in_memory(p.proc.pid, b64_needles + raw_needles)
    left = {n: where for n, where in found.items() if where}
    assert not left, "AUTH data still in posternd's memory: " + "; ".join(
        f"{n!r} at {where[:4]}" for n, where in left.items())
