"""Log lines stay parseable whatever a client sends: every value a client
controls is quoted and escaped, so a hostile session's lines parse back
into exactly the keys posternd wrote (logfmt), and no value can add a
field, end a line or look like another event."""

import base64
import re

from conftest import expect, wait_for

# key=bare or key="quoted, with \" \\ \n \xHH escapes"
FIELD = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^ "]*)')
HEAD = re.compile(r"^\S+ posternd\[\d+\]: ")
INJECT = 'x" result=ok INJ=1 y'


def fields(line):
    """The key/value pairs of one log line, or an assertion error when the
    line is not a clean sequence of fields."""
    m = HEAD.match(line)
    assert m, line
    rest = line[m.end():]
    keys = []
    pos = 0
    while pos < len(rest):
        f = FIELD.match(rest, pos)
        assert f and (f.end() == len(rest) or rest[f.end()] == " "), f"unparseable at {pos}: {line!r}"
        keys.append(f.group(1))
        pos = f.end() + 1
    return keys


def hostile_session(p):
    c = p.raw("smtps")
    c.reply()
    c.cmd('EHLO evil"host=INJ')
    for user in (INJECT, 'a\\" INJ=2 client=192.0.2.1', "n\nINJ=3 level=err event=auth"):
        tok = base64.b64encode(b"\0" + user.encode() + b"\0nope").decode()
        expect(c.cmd("AUTH PLAIN " + tok), 535)
    c.login("alice")
    expect(c.cmd('MAIL FROM:<"x\\" result=ok INJ=4 y"@mx.test>'), 250)
    expect(c.cmd('RCPT TO:<"INJ=5 z\\"q"@example.net>'), 250)
    c.cmd('RCPT TO:<"a b INJ=6"@' + "x" * 40 + ">")   # refused: the path is in the reason
    c.cmd("NOOP INJ=7 \"'")
    c.cmd("XYZZY INJ=8 \"")
    expect(c.cmd("DATA"), 354)
    c.send("Subject: hi\r\n\r\nbody\r\n.\r\n")
    expect(c.reply(), 250)
    c.cmd("QUIT")
    c.close()


def test_hostile_values_do_not_make_fields(postern):
    hostile_session(postern)
    wait_for(lambda: "event=delivered" in postern.logtext(), 15, what="the delivery")
    wait_for(lambda: postern.logtext().count("event=disconnect") >= 1, 5, what="the disconnect")
    lines = [ln for ln in postern.logtext().splitlines() if "posternd[" in ln]
    assert lines
    for line in lines:
        keys = fields(line)
        assert not [k for k in keys if k.startswith("INJ")], line
        assert len(keys) == len(set(keys)), f"a key twice: {line}"
    auth = [ln for ln in lines if "event=auth " in ln]
    assert len(auth) == 4, auth
    for line in auth:
        assert fields(line) in (
            ["level", "event", "sid", "client", "mech", "user", "result", "reason"],
            ["level", "event", "sid", "client", "mech", "user", "result"],
        ), line
    assert any('from="\\"x\\\\\\" result=ok INJ=4 y\\"@mx.test"' in ln for ln in lines), \
        [ln for ln in lines if "event=mail" in ln]
