"""One account, several spellings. The sasldb entry alice of the realm
mx.test (the configured hostname) logs in as `alice` and as
`alice@mx.test`, by PLAIN, LOGIN or from the credential cache; Postern
knows it under one name, `alice`, for the per-account rate limits, the
failed-AUTH lockout, the sender map, the trace store and the logs. A
failed guess counts for the account the typed name would be, so that
neither a known nor an unknown user can be guessed at under a second
spelling once the first is locked."""

import base64
import json
import re

from conftest import USERS, own_sasldb
from test_policy import FAST_AUTH, assert_stats, auth_fail, enh, mail, plain, send_message, \
    session, wait_log

PASSWORD = USERS["alice"]


def b64(s):
    return base64.b64encode(s.encode()).decode()


def login_plain(c, user, password=PASSWORD, authzid=""):
    return c.cmd("AUTH PLAIN " + b64(f"{authzid}\0{user}\0{password}"))


def login_login(c, user, password=PASSWORD):
    code, lines = c.cmd("AUTH LOGIN")
    assert code == 334, lines
    code, lines = c.cmd(b64(user))
    assert code == 334, lines
    return c.cmd(b64(password))


def logged_in(p, user, mech="PLAIN", source="127.0.0.1"):
    c = session(p, source=source)
    code, lines = (login_plain if mech == "PLAIN" else login_login)(c, user)
    assert code == 235, (user, mech, lines)
    return c


def one_message(c, subject):
    code, lines = send_message(c, "alice@mx.test", ["rcpt@example.net"],
                               f"From: alice@mx.test\r\nSubject: {subject}\r\n\r\nx\r\n.\r\n")
    assert code == 250, lines
    return re.search(r"queued as (\S+)", lines[-1]).group(1)


def test_one_name_in_the_log(postern):
    """Both spellings, by PLAIN and by LOGIN, log in as user="alice"."""
    for user, mech in (("alice", "PLAIN"), ("alice@mx.test", "PLAIN"),
                       ("alice@mx.test", "LOGIN")):
        logged_in(postern, user, mech).close()
    oks = re.findall(r'event=auth .* mech=(\w+) user=("[^"]*") result=ok', postern.logtext())
    assert oks == [("PLAIN", '"alice"'), ("PLAIN", '"alice"'), ("LOGIN", '"alice"')], oks


def test_message_rate_counts_every_spelling(make_postern):
    """messages_per_hour = 3 is three messages of alice's, however she
    spells her name (before: three per spelling)."""
    p = make_postern(policy="messages_per_hour = 3")
    for user, mech in (("alice", "PLAIN"), ("alice@mx.test", "PLAIN"),
                       ("alice@mx.test", "LOGIN")):
        c = logged_in(p, user, mech)
        one_message(c, f"as {user}")
        c.close()
    for user in ("alice@mx.test", "alice"):
        c = logged_in(p, user)
        code, lines = mail(c, "alice@mx.test")
        assert (code, enh(lines)) == (450, "4.7.1"), (user, lines)
        c.close()
    assert_stats(p, message_rate=2)


def test_lockout_holds_for_every_spelling(make_postern):
    """Three failures as alice lock (address, alice): the other spelling is
    locked too, with the right password and with a wrong one (before: five
    more guesses were answered under alice@mx.test)."""
    p = make_postern(policy=f'auth_max_failures = 3 auth_lockout = "60s" {FAST_AUTH}')
    c = session(p)
    for _ in range(3):
        auth_fail(c, "alice")
    for password in (PASSWORD, "another-guess"):
        code, lines = login_plain(c, "alice@mx.test", password)
        assert (code, enh(lines)) == (454, "4.7.0"), lines
    code, lines = login_login(c, "alice@mx.test", "a-third-guess")
    assert (code, enh(lines)) == (454, "4.7.0"), lines
    c.close()
    line = wait_log(p, r"event=auth_lockout ")
    assert "scope=pair" in line and 'user="alice"' in line, line
    assert_stats(p, auth_failed=3, auth_locked=3)


def test_failures_under_both_spellings_add_up(make_postern):
    """Guesses spread over the spellings count for one account."""
    p = make_postern(policy=f'auth_max_failures = 3 auth_lockout = "60s" {FAST_AUTH}')
    c = session(p)
    for user in ("alice", "alice@mx.test", "alice@mx.test"):
        auth_fail(c, user)
    code, lines = login_plain(c, "alice")
    assert (code, enh(lines)) == (454, "4.7.0"), lines
    c.close()
    # The account elsewhere, and another account here, are not affected.
    logged_in(p, "alice@mx.test", source="127.0.0.2").close()
    c = session(p)
    code, lines = login_plain(c, "bob", USERS["bob"])
    assert code == 235, lines
    c.close()


def test_unknown_user_sprayed_under_spellings(make_postern):
    """An unknown name is one name too: mallory, mallory@mx.test and
    mallory@MX.TEST are three guesses at one account, then 454."""
    p = make_postern(policy=f'auth_max_failures = 3 auth_lockout = "60s" {FAST_AUTH}')
    c = session(p)
    for user in ("mallory", "mallory@mx.test", "mallory@MX.TEST"):
        auth_fail(c, user)
    code, lines = login_plain(c, "mallory@Mx.Test", "one-more")
    assert (code, enh(lines)) == (454, "4.7.0"), lines
    c.close()
    line = wait_log(p, r"event=auth_lockout .*scope=pair")
    assert 'user="mallory"' in line, line


def test_sender_map_applies_to_every_spelling(make_postern):
    """The map's `alice @mx.test` line is alice's under either spelling
    (before: alice@mx.test, having no line, owned only itself)."""
    p = make_postern()
    c = logged_in(p, "alice@mx.test")
    code, lines = mail(c, "info@mx.test")
    assert code == 250, lines
    code, lines = mail(c, "carol@example.org")
    assert (code, enh(lines)) == (553, "5.7.1"), lines
    assert lines[-1].endswith("not owned by alice"), lines
    c.close()


def test_trace_finds_every_spelling(postern):
    """`postern trace --account alice` finds alice's mail whichever way she
    logged in, and the records name her alice (before: half of it)."""
    qids = []
    for user, mech in (("alice", "PLAIN"), ("alice@mx.test", "PLAIN"),
                       ("alice@mx.test", "LOGIN")):
        c = logged_in(postern, user, mech)
        qids.append(one_message(c, f"traced as {user}"))
        c.close()
    postern.sink.wait_messages(3)
    r = postern.postern("trace", "-c", postern.conf, "--json", "--account", "alice")
    assert r.returncode == 0, r.stdout + r.stderr
    found = json.loads(r.stdout)
    assert sorted(m["qid"] for m in found) == sorted(qids), found
    assert {m["account"] for m in found} == {"alice"}, found
    assert len(re.findall(r'event=queued .*user="alice"', postern.logtext())) == 3


def test_cache_gives_the_same_account(make_postern, workdir):
    """A login the credential cache answers is alice too."""
    db = own_sasldb(workdir, {"alice": "cached-pass"})
    p = make_postern(sasldb=db, policy="messages_per_hour = 2")
    for _ in range(2):
        c = session(p)
        code, lines = login_plain(c, "alice@mx.test", "cached-pass")
        assert code == 235, lines
        one_message(c, "cached")
        c.close()
    assert re.search(r'user="alice" result=ok cache=hit', p.logtext()), p.logtext()[-2000:]
    c = session(p)
    code, lines = login_plain(c, "alice", "cached-pass")
    assert code == 235, lines
    code, lines = mail(c, "alice@mx.test")
    assert (code, enh(lines)) == (450, "4.7.1"), lines
    c.close()


def test_authorization_id_cannot_pick_an_identity(postern):
    """PLAIN's authzid may only repeat the authentication id: alice's
    password does not make her bob, nor another spelling of herself."""
    c = session(postern)
    for authzid in ("bob", "bob@mx.test", "alice@mx.test"):
        code, lines = login_plain(c, "alice", authzid=authzid)
        assert (code, enh(lines)) == (535, "5.7.8"), (authzid, lines)
    code, lines = login_plain(c, "alice", authzid="alice")
    assert code == 235, lines
    code, lines = mail(c, "carol@example.org")
    assert (code, enh(lines)) == (553, "5.7.1"), lines
    assert lines[-1].endswith("not owned by alice"), lines
    c.close()
