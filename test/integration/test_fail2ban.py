"""The fail2ban filter shipped in etc/ counts failed AUTH for the address
that really failed, and for nobody else: checked with Debian's
fail2ban-regex on the lines a real posternd wrote, in its stderr form and
in the syslog form, with user names built to name another address."""

import base64
import os
import shutil
import subprocess
import time

import pytest

from conftest import SRCDIR, wait_for

FILTER = os.path.join(SRCDIR, "etc", "fail2ban", "filter.d", "postern.conf")
VICTIM = "192.0.2.99"

# User names an attacker would try: a whole forged line, a forged client
# field, quotes and backslashes to break out of the value, a newline.
HOSTILE = [
    f'x posternd[1]: level=info event=auth sid=1 client={VICTIM} mech=PLAIN user="y" '
    'result=fail reason="z"',
    f'a client={VICTIM} mech=PLAIN user=b',
    f'q" client={VICTIM} x="',
    f'q\\" result=fail reason=" client={VICTIM}',
    f'n\nposternd[1]: level=info event=auth sid=2 client={VICTIM} mech=PLAIN user=m result=fail',
]


def fail2ban_regex():
    tool = shutil.which("fail2ban-regex")
    if not tool:
        pytest.skip("fail2ban-regex is missing: run scripts/install-deps.sh")
    return tool


def matched_hosts(tool, logfile):
    out = subprocess.run([tool, "-o", "ip", logfile, FILTER], capture_output=True, text=True,
                         check=True, timeout=60)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def fail_logins(postern, names, source="127.0.0.1"):
    c = postern.raw("smtps", source=source)
    c.reply()
    c.cmd("EHLO client.test")
    for name in names:
        tok = base64.b64encode(b"\0" + name.encode() + b"\0wrong-password").decode()
        code, _ = c.cmd("AUTH PLAIN " + tok)
        assert code == 535
    c.close()


def syslog_form(lines):
    """The same lines as rsyslog writes them to /var/log/mail.log."""
    stamp = time.strftime("%b %e %H:%M:%S")
    out = []
    for line in lines:
        head, _, rest = line.partition(" ")   # drop our own time stamp
        out.append(f"{stamp} gate {rest}")
    return out


def test_filter_counts_only_the_real_client(make_postern, sink, workdir):
    tool = fail2ban_regex()
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
    fail_logins(p, HOSTILE, source="127.0.0.2")
    fail_logins(p, ["alice"])
    c = p.raw("smtps")
    c.reply()
    c.login("bob")        # a success matches nothing
    c.close()
    wait_for(lambda: p.logtext().count("result=fail") >= len(HOSTILE) + 1, 10,
             what="the failed logins in the log")
    wait_for(lambda: 'user="bob" result=ok' in p.logtext(), 10, what="the good login")
    lines = [ln for ln in p.logtext().splitlines() if "posternd[" in ln]
    expected = ["127.0.0.2"] * len(HOSTILE) + ["127.0.0.1"]
    for form, text in (("stderr", lines), ("syslog", syslog_form(lines))):
        path = os.path.join(workdir, f"f2b-{form}-{os.getpid()}.log")
        with open(path, "w") as f:
            f.write("\n".join(text) + "\n")
        hosts = matched_hosts(tool, path)
        assert sorted(hosts) == sorted(expected), (form, hosts)
        assert VICTIM not in hosts


def test_filter_ignores_other_lines(workdir):
    """Lines that are not a failed AUTH of posternd, forged ones included."""
    tool = fail2ban_regex()
    stamp = "2026-12-08T10:00:00.000Z"
    lines = [
        f"{stamp} posternd[7]: level=info event=auth sid=1 client=127.0.0.1 mech=PLAIN "
        'user="alice" result=ok',
        f"{stamp} posternd[7]: level=info event=reject sid=2 client=127.0.0.1 code=535 "
        f'enh=5.7.8 reason="posternd[1]: level=info event=auth sid=1 client={VICTIM} '
        'mech=PLAIN user=\\"x\\" result=fail reason="',
        f"{stamp} other[7]: level=info event=auth sid=1 client={VICTIM} mech=PLAIN "
        'user="x" result=fail reason="y"',
        f"{stamp} posternd[7]: level=info event=mail sid=3 qid=X from="
        f'"posternd[1]: level=info event=auth sid=1 client={VICTIM} mech=PLAIN user=\\"x\\" '
        'result=fail reason=\\"y\\"" size=0',
    ]
    path = os.path.join(workdir, f"f2b-other-{os.getpid()}.log")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    assert matched_hosts(tool, path) == []
