"""IPv6 clients are counted by network. One subscriber has a /64 and can
pick any of its 2^64 addresses, so the per-address counters (concurrent
connections, connections per minute, the AUTH failure budget and the
(address, account) lockout) key an IPv6 client on its network of
policy { ipv6_prefix } bits (64 by default). Real connections come from
addresses of two /64 networks that the test adds to the loopback device
(root only), to a listener on [::1]."""

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import OPEN_CLIENTS, POSTERND, USERS, RawClient, free_port
from test_policy import FAST_AUTH, enh, wait_log


class V6Client(RawClient):
    """A RawClient over IPv6 from a chosen source address."""

    def __init__(self, p, source, timeout=10):
        OPEN_CLIENTS.append(self)
        self.p = p
        self.sock = socket.create_connection(("::1", p.v6_port), timeout=timeout,
                                             source_address=(source, 0))
        self.buf = b""


@pytest.fixture
def nets():
    """Three addresses in one /64 and one in the next, on lo for the test."""
    if os.geteuid() != 0:
        pytest.skip("adding IPv6 addresses to lo needs root")
    if not shutil.which("ip"):
        pytest.skip("no ip(8) to add IPv6 addresses to lo")
    base = f"2001:db8:{int.from_bytes(os.urandom(2), 'big'):x}"
    n1 = [f"{base}:1::a", f"{base}:1::b", f"{base}:1:ffff:ffff:ffff:c"]
    n2 = [f"{base}:2::a"]
    added = []
    try:
        for a in n1 + n2:
            subprocess.run(["ip", "-6", "addr", "add", f"{a}/128", "dev", "lo", "nodad"],
                           check=True, capture_output=True)
            added.append(a)
        yield n1, n2
    finally:
        for a in added:
            subprocess.run(["ip", "-6", "addr", "del", f"{a}/128", "dev", "lo"],
                           capture_output=True)


def v6_postern(make_postern, policy):
    port = free_port()
    p = make_postern(policy=policy,
                     extra=f'listen v6 {{ mode = "submission" address = "[::1]:{port}" }}')
    p.v6_port = port
    return p


def greeted(p, source):
    c = V6Client(p, source)
    code, lines = c.reply()
    return c, code, lines


def tls_session(p, source):
    c, code, lines = greeted(p, source)
    assert code == 220, lines
    assert c.cmd("EHLO client.test")[0] == 250
    assert c.cmd("STARTTLS")[0] == 220
    c.starttls()
    assert c.cmd("EHLO client.test")[0] == 250
    return c


def auth(c, user, password):
    tok = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return c.cmd("AUTH PLAIN " + tok)


def wait_greeting(p, src, tries=20):
    """The server counts a closed connection out when it sees the close."""
    for _ in range(tries):
        c, code, lines = greeted(p, src)
        if code == 220:
            return c
        c.close()
        time.sleep(0.1)
    raise AssertionError(f"no place for {src}: {lines}")


def test_connections_counted_per_network(make_postern, nets):
    """max_connections_per_ip = 2: two addresses of a /64 fill it, a third
    gets 421 4.7.0; the next /64 is another client."""
    n1, n2 = nets
    p = v6_postern(make_postern, "max_connections_per_ip = 2")
    held = []
    for src in n1[:2]:
        c, code, lines = greeted(p, src)
        assert code == 220, (src, lines)
        held.append(c)
    c, code, lines = greeted(p, n1[2])
    assert (code, enh(lines)) == (421, "4.7.0"), lines
    assert c.closed()
    c.close()
    c, code, lines = greeted(p, n2[0])
    assert code == 220, lines
    c.close()
    # (The start-up probes from 127.0.0.1 may meet the limit too.)
    wait_log(p, rf"event=reject .*client={re.escape(n1[2])} .*rule=max_connections_per_ip")
    # A place freed by one address is free for another of the network.
    held.pop().close()
    c = wait_greeting(p, n1[2])
    c.close()
    for h in held:
        h.close()


def test_connection_rate_per_network(make_postern, nets):
    """connections_per_ip_per_minute = 3 over the /64's addresses."""
    n1, n2 = nets
    p = v6_postern(make_postern, "connections_per_ip_per_minute = 3")
    for src in n1:
        c, code, lines = greeted(p, src)
        assert code == 220, (src, lines)
        assert c.cmd("QUIT")[0] == 221
        c.close()
    c, code, lines = greeted(p, n1[0])
    assert (code, enh(lines)) == (421, "4.7.0"), lines
    c.close()
    c, code, lines = greeted(p, n2[0])
    assert code == 220, lines
    c.close()


def test_auth_budget_per_network(make_postern, nets):
    """auth_ip_budget = 3: one failure from each of three addresses of the
    /64 spends it; the network's next AUTH gets 421 4.7.0, the next /64
    logs in."""
    n1, n2 = nets
    p = v6_postern(make_postern, f"auth_ip_budget = 3 {FAST_AUTH}")
    for src, user in zip(n1, ("alice", "bob", "mallory")):
        c = tls_session(p, src)
        code, lines = auth(c, user, "wrong-password")
        assert (code, enh(lines)) == (535, "5.7.8"), lines
        c.close()
    c = tls_session(p, n1[0])
    code, lines = auth(c, "alice", USERS["alice"])
    assert (code, enh(lines)) == (421, "4.7.0"), lines
    c.close()
    c = tls_session(p, n2[0])
    code, lines = auth(c, "alice", USERS["alice"])
    assert code == 235, lines
    c.close()
    line = wait_log(p, r"event=auth_lockout .*scope=ip")
    assert f"client={n1[2]}" in line, line


def test_lockout_per_network(make_postern, nets):
    """auth_max_failures = 2 for (network, alice): guesses from two
    addresses lock alice for the whole /64, not elsewhere."""
    n1, n2 = nets
    p = v6_postern(make_postern, f"auth_max_failures = 2 {FAST_AUTH}")
    for src in n1[:2]:
        c = tls_session(p, src)
        code, lines = auth(c, "alice", "wrong-password")
        assert code == 535, lines
        c.close()
    c = tls_session(p, n1[2])
    code, lines = auth(c, "alice", USERS["alice"])
    assert (code, enh(lines)) == (454, "4.7.0"), lines
    c.close()
    c = tls_session(p, n2[0])
    code, lines = auth(c, "alice", USERS["alice"])
    assert code == 235, lines
    c.close()


def test_prefix_128_counts_addresses(make_postern, nets):
    """ipv6_prefix = 128: every address is its own client again."""
    n1, _ = nets
    p = v6_postern(make_postern, "ipv6_prefix = 128 max_connections_per_ip = 1")
    held = []
    for src in n1:
        c, code, lines = greeted(p, src)
        assert code == 220, (src, lines)
        held.append(c)
    for c in held:
        c.close()


@pytest.mark.parametrize("value", ["0", "129", "-1"])
def test_ipv6_prefix_checked(tmp_path, value):
    """posternd -t refuses a prefix length outside 1..128, naming the line."""
    conf = tmp_path / "postern.conf"
    conf.write_text('hostname = "mx.test"\n'
                    'listen submission { address = "127.0.0.1:2525" }\n'
                    f"policy {{\n\tipv6_prefix = {value}\n}}\n")
    r = subprocess.run([POSTERND, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0, r.stdout + r.stderr
    assert f"{conf}:4:" in r.stderr and "ipv6_prefix" in r.stderr, r.stderr


def test_reload_keeps_the_prefix(make_postern):
    """The counters outlive a SIGHUP, and a connection is counted out under
    the key it was counted in: a new prefix waits for a restart, and the
    reload says so."""
    p = make_postern()
    with open(p.conf) as f:
        text = f.read()
    with open(p.conf, "w") as f:
        f.write(text.replace("policy { ", "policy { ipv6_prefix = 48 ", 1))
    p.proc.send_signal(signal.SIGHUP)
    line = wait_log(p, r"event=reload ipv6_prefix=")
    assert "ipv6_prefix=48" in line and "keeping /64" in line, line
