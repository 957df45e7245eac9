"""The fail2ban filter shipped in etc/ matches the line posternd really
logs for a failed AUTH, and only that line."""

import base64
import os
import re

from conftest import SRCDIR, wait_for

FILTER = os.path.join(SRCDIR, "etc", "fail2ban", "filter.d", "postern.conf")


def failregex():
    with open(FILTER) as f:
        text = f.read()
    line = re.search(r"^failregex\s*=\s*(.+)$", text, re.M).group(1).strip()
    # fail2ban's <HOST> tag, as fail2ban expands it for an address.
    return re.compile(line.replace("<HOST>", r"(?P<host>[0-9A-Fa-f.:]+)"))


def test_filter_matches_failed_auth_only(postern):
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    tok = base64.b64encode(b"\0alice\0wrong-password").decode()
    code, _ = c.cmd("AUTH PLAIN " + tok)
    assert code == 535
    tok = base64.b64encode(b"\0bob\0bob-secret").decode()
    code, _ = c.cmd("AUTH PLAIN " + tok)
    assert code == 235
    c.close()
    wait_for(lambda: "result=ok" in postern.logtext(), 5, what="the auth log lines")
    rx = failregex()
    hits = [m for m in map(rx.search, postern.logtext().splitlines()) if m]
    assert len(hits) == 1, hits
    assert hits[0].group("host") == "127.0.0.1"
