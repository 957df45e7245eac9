"""The policy layer seen from real clients (smtplib, swaks) and byte-exact
sessions: who may use which MAIL FROM (sender map: aliases, domains,
patterns, '=', '*', shared addresses, the default rule, the null sender),
the header From check, relay denial on mx and the trusted-network
exception, per-account message and recipient rates (reached, then
recovered), per-address connection limits, failed-AUTH lockouts (per
address and account, per address) and their expiry, SIGHUP reloads of the
sender map, and the refusals as `postern stats` counts them by rule."""

import base64
import json
import re
import select
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import DEFAULT_SENDER_MAP, USERS, own_sasldb, wait_for

# A map exercising every kind of target.
MAP = """# account  addresses it may use
alice  @mx.test, <>
alice  info@example.org          # an alias
alice  *.sales@example.org       # a pattern
alice  team@example.net          # shared with bob
bob    @mx.test, <>
bob    @example.org              # a whole domain
bob    team@example.net
carol@example.org  =
*      noreply@example.org       # every account
"""

FAST_AUTH = 'auth_delay_max = "1s"'


# ---- helpers ----------------------------------------------------------------------

def plain(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def enh(lines):
    parts = lines[-1][4:].split()
    return parts[0] if parts else ""


def session(p, mode="smtps", user=None, source="127.0.0.1", helo="client.test"):
    """A RawClient past the greeting and EHLO (and STARTTLS on submission
    and mx), logged in as user when given."""
    c = p.raw(mode, source=source)
    code, lines = c.reply()
    assert code == 220, lines
    assert c.cmd("EHLO " + helo)[0] == 250
    if mode != "smtps":
        code, lines = c.cmd("STARTTLS")
        assert code == 220, lines
        c.starttls()
        assert c.cmd("EHLO " + helo)[0] == 250
    if user:
        code, lines = c.cmd("AUTH PLAIN " + plain(user, USERS[user]))
        assert code == 235, lines
    return c


def mail(c, sender):
    """MAIL FROM on a RawClient; RSET after an accepted one. (code, lines)."""
    code, lines = c.cmd(f"MAIL FROM:<{sender}>")
    if code == 250:
        assert c.cmd("RSET")[0] == 250
    return code, lines


def assert_owned(c, sender):
    code, lines = mail(c, sender)
    assert code == 250, (sender, lines)


def assert_not_owned(c, sender, account):
    code, lines = mail(c, sender)
    assert (code, enh(lines)) == (553, "5.7.1"), (sender, lines)
    assert f"not owned by {account}" in lines[-1], lines


def send_message(c, sender, rcpts, body):
    """A whole transaction on a RawClient: the reply to the end of DATA."""
    code, lines = c.cmd(f"MAIL FROM:<{sender}>")
    assert code == 250, lines
    for r in rcpts:
        code, lines = c.cmd(f"RCPT TO:<{r}>")
        assert code == 250, lines
    code, lines = c.cmd("DATA")
    assert code == 354, lines
    c.send(body)
    return c.reply()


def smtps_login(p, user):
    s = p.smtps()
    s.ehlo("client.test")
    s.login(user, USERS[user])
    return s


def msg(sender, subject, to="rcpt@example.net"):
    return (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\n"
            "policy test\r\n").encode()


def rejected_by_rule(p):
    r = p.postern("stats", "-c", p.conf, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return {e["key"]: e["count"] for e in json.loads(r.stdout)["rejected_by_rule"]}


def assert_stats(p, **expected):
    """Waits until `postern stats` counts at least the expected refusals per
    rule, then checks the counts are exactly those."""
    def reached():
        got = rejected_by_rule(p)
        return got if all(got.get(k, 0) >= n for k, n in expected.items()) else None
    try:
        got = wait_for(reached, 10, interval=0.2, what=f"refusals {expected} in postern stats")
    except AssertionError:
        raise AssertionError(f"postern stats rejected_by_rule is {rejected_by_rule(p)}, "
                             f"expected at least {expected}")
    assert {k: got.get(k, 0) for k in expected} == expected, got


def wait_log(p, pattern, timeout=10, after=0):
    """Waits for a log line matching pattern, past offset `after`."""
    rx = re.compile(pattern)

    def found():
        for line in p.logtext()[after:].splitlines():
            if rx.search(line):
                return line
        return None
    try:
        return wait_for(found, timeout, what=f"log line {pattern!r}")
    except AssertionError:
        raise AssertionError(f"no log line matching {pattern!r} in:\n{p.logtext()[after:][-3000:]}")


def swaks(*args):
    return subprocess.run(["swaks", "--timeout", "10", "--ehlo", "client.test", *args],
                          capture_output=True, text=True, timeout=60)


def auth_fail(c, user, password="wrong-password"):
    code, lines = c.cmd("AUTH PLAIN " + plain(user, password))
    assert (code, enh(lines)) == (535, "5.7.8"), (user, lines)


# ---- sender ownership ---------------------------------------------------------------

def test_sender_mismatch_smtplib(make_postern, sink):
    """553 5.7.1 at MAIL for an address alice does not own; her own works on
    the same connection afterwards."""
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
    with smtps_login(p, "alice") as s:
        with pytest.raises(smtplib.SMTPSenderRefused) as ei:
            s.sendmail("carol@example.org", ["rcpt@example.net"], msg("carol@example.org", "forged"))
        assert ei.value.smtp_code == 553, ei.value
        assert ei.value.smtp_error.startswith(b"5.7.1"), ei.value
        assert b"not owned by alice" in ei.value.smtp_error, ei.value
        assert s.sendmail("alice@mx.test", ["rcpt@example.net"], msg("alice@mx.test", "own")) == {}
    m = sink.wait_messages(1)
    time.sleep(0.3)
    assert len(sink.messages()) == 1 and b"Subject: own" in m[0]
    assert_stats(p, sender_mismatch=1)


def test_sender_mismatch_swaks_submission(make_postern, sink):
    """The same refusal for a real client on submission after STARTTLS."""
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
    port = str(p.ports["submission"])
    r = swaks("--server", "127.0.0.1", "--port", port, "--tls", "--auth", "PLAIN",
              "--auth-user", "bob", "--auth-password", USERS["bob"],
              "--from", "carol@example.org", "--to", "rcpt@example.net")
    assert r.returncode == 23, r.stdout + r.stderr     # swaks: MAIL FROM refused
    assert re.search(r"<~?\*+ +553 5\.7\.1 .*not owned by bob", r.stdout), r.stdout
    r = swaks("--server", "127.0.0.1", "--port", port, "--tls", "--auth", "PLAIN",
              "--auth-user", "bob", "--auth-password", USERS["bob"],
              "--from", "bob@mx.test", "--to", "rcpt@example.net",
              "--header", "Subject: swaks own")
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"Subject: swaks own" in sink.wait_messages(1)[0]
    assert_stats(p, sender_mismatch=1)


def test_alias_allowed(make_postern, sink):
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}", sender_map=MAP)
    with smtps_login(p, "alice") as s:
        assert s.sendmail("info@example.org", ["rcpt@example.net"],
                          msg("info@example.org", "alias")) == {}
        assert s.sendmail("Info@Example.ORG", ["rcpt@example.net"],
                          msg("info@example.org", "alias case")) == {}
        with pytest.raises(smtplib.SMTPSenderRefused) as ei:
            s.sendmail("info2@example.org", ["rcpt@example.net"], msg("info2@example.org", "x"))
        assert ei.value.smtp_code == 553
    msgs = sink.wait_messages(2)
    assert any(b"from=<info@example.org>" in m for m in msgs), msgs
    # carol has no such alias.
    c = session(p, user="carol@example.org")
    assert_not_owned(c, "info@example.org", "carol@example.org")
    c.close()


def test_domain_rule(make_postern):
    p = make_postern(sender_map=MAP)
    c = session(p, user="bob")
    for sender in ("anyone@example.org", "bob@example.org", "X.Y@EXAMPLE.org"):
        assert_owned(c, sender)
    # The domain only: not its subdomains, not a longer name.
    for sender in ("bob@sub.example.org", "bob@example.org.evil.test", "bob@example.net"):
        assert_not_owned(c, sender, "bob")
    c.close()


def test_pattern_rule(make_postern):
    p = make_postern(sender_map=MAP)
    c = session(p, user="alice")
    for sender in ("john.sales@example.org", "a.b.sales@example.org", "JOHN.SALES@example.org"):
        assert_owned(c, sender)
    for sender in ("sales@example.org", "john.support@example.org",
                   "john.sales@example.org.evil.test", "john.sales@example.net"):
        assert_not_owned(c, sender, "alice")
    c.close()


def test_self_and_star_rules(make_postern):
    """'=': carol@example.org owns her own name (any case); '*': rules for
    every account, after the account's own."""
    p = make_postern(sender_map=MAP)
    c = session(p, user="carol@example.org")
    assert_owned(c, "carol@example.org")
    assert_owned(c, "Carol@Example.Org")
    assert_owned(c, "noreply@example.org")
    for sender in ("carol2@example.org", "carol@example.net", "info@example.org"):
        assert_not_owned(c, sender, "carol@example.org")
    c.close()
    for user in ("alice", "bob"):
        c = session(p, user=user)
        assert_owned(c, "noreply@example.org")
        c.close()


def test_send_as_shared_address(make_postern, sink):
    """team@example.net is granted to alice and bob, not to carol."""
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}", sender_map=MAP)
    for user in ("alice", "bob"):
        with smtps_login(p, user) as s:
            assert s.sendmail("team@example.net", ["rcpt@example.net"],
                              msg("team@example.net", f"team via {user}")) == {}
    msgs = sink.wait_messages(2)
    assert sum(b"from=<team@example.net>" in m for m in msgs) == 2, msgs
    c = session(p, user="carol@example.org")
    assert_not_owned(c, "team@example.net", "carol@example.org")
    c.close()


def test_null_sender(make_postern):
    """<> only where the map lists it: alice (<> in her line) yes, carol
    (= only) no: 553 5.7.1."""
    p = make_postern(sender_map=MAP)
    c = session(p, user="alice")
    code, lines = mail(c, "")
    assert code == 250, lines
    c.close()
    c = session(p, user="carol@example.org")
    code, lines = mail(c, "")
    assert (code, enh(lines)) == (553, "5.7.1"), lines
    assert "null sender" in lines[-1].lower(), lines
    c.close()
    assert_stats(p, null_sender=1)


def test_default_rule_without_entry(make_postern):
    """No line for an account: an account named like an address owns
    exactly that address (never <>); one that is not an address owns
    nothing."""
    p = make_postern(sender_map="alice @mx.test\n")
    c = session(p, user="carol@example.org")
    assert_owned(c, "carol@example.org")
    for sender in ("carol2@example.org", "other@example.org"):
        assert_not_owned(c, sender, "carol@example.org")
    code, lines = mail(c, "")
    assert (code, enh(lines)) == (553, "5.7.1"), lines
    c.close()
    c = session(p, user="bob")
    assert_not_owned(c, "bob@mx.test", "bob")
    c.close()


def test_entry_replaces_default(make_postern):
    """A line for carol@example.org without '=' takes her own address away."""
    p = make_postern(sender_map="carol@example.org  info@example.org\n")
    c = session(p, user="carol@example.org")
    assert_owned(c, "info@example.org")
    assert_not_owned(c, "carol@example.org", "carol@example.org")
    c.close()


# ---- header From ----------------------------------------------------------------------

def test_header_from_checked(make_postern, sink):
    """check_header_from: every mailbox of every From field must be the
    account's; refused at the end of DATA with 553 5.7.1 (550 5.6.0 when
    there is no From at all)."""
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}", policy="check_header_from = true")
    c = session(p, user="alice")
    ok = 'From: "Alice" <alice@mx.test>\r\nSubject: hf ok\r\n\r\nhello\r\n.\r\n'
    code, lines = send_message(c, "alice@mx.test", ["rcpt@example.net"], ok)
    assert code == 250, lines
    bad = [
        "From: carol@example.org\r\nSubject: hf forged\r\n\r\nx\r\n.\r\n",
        "From: alice@mx.test, evil@example.net\r\nSubject: hf second\r\n\r\nx\r\n.\r\n",
        'From: "Alice"\r\n <evil@example.net>\r\nSubject: hf folded\r\n\r\nx\r\n.\r\n',
    ]
    for body in bad:
        code, lines = send_message(c, "alice@mx.test", ["rcpt@example.net"], body)
        assert (code, enh(lines)) == (553, "5.7.1"), (body, lines)
        assert "not owned by alice" in lines[-1], lines
    code, lines = send_message(c, "alice@mx.test", ["rcpt@example.net"],
                               "Subject: hf none\r\n\r\nx\r\n.\r\n")
    assert (code, enh(lines)) == (550, "5.6.0"), lines
    # RFC 5322 3.6: one From field; a second one is refused even when both
    # name the account (a reader may show either).
    def pad_to(n):
        """Header lines (under the line limit) of exactly n bytes."""
        out = ""
        while n - len(out) > 900:
            out += "X-Pad: " + "p" * 891 + "\r\n"
        rest = n - len(out)
        return out + "X-P:" + "p" * (rest - 6) + "\r\n"
    pad = pad_to(70 * 1024)
    two = [
        "From: alice@mx.test\r\nFrom: evil@example.net\r\nSubject: hf two\r\n\r\nx\r\n.\r\n",
        "From: alice@mx.test\r\nSubject: hf two same\r\nFrom: alice@mx.test\r\n\r\nx\r\n.\r\n",
    ]
    for body in two:
        code, lines = send_message(c, "alice@mx.test", ["rcpt@example.net"], body)
        assert (code, enh(lines)) == (554, "5.6.0"), (body[:60], lines)
    # A header section longer than the checker keeps is refused whole: a
    # second From after 64 KiB of headers, or a From straddling the cap,
    # was relayed unchecked.
    cap = 64 * 1024
    straddle = pad_to(cap - 20) + "From: carol@example.org <ceo@bank.example>\r\n"
    big = [
        "From: alice@mx.test\r\n" + pad + "From: carol@example.org <ceo@bank.example>\r\n\r\nx\r\n.\r\n",
        pad + "From: carol@example.org <ceo@bank.example>\r\n\r\nx\r\n.\r\n",
        straddle + "\r\nx\r\n.\r\n",
    ]
    for body in big:
        code, lines = send_message(c, "alice@mx.test", ["rcpt@example.net"], body)
        assert (code, enh(lines)) == (552, "5.3.4"), (len(body), lines)
    # The session goes on.
    assert c.cmd("NOOP")[0] == 250
    c.close()
    msgs = sink.wait_messages(1)
    time.sleep(0.5)
    msgs = sink.messages()
    assert len(msgs) == 1 and b"Subject: hf ok" in msgs[0], msgs
    assert_stats(p, header_from_mismatch=3, header_from_missing=1, header_from_multiple=2,
                 header_too_big=3)


def test_header_from_not_checked_by_default(postern):
    c = session(postern, user="alice")
    code, lines = send_message(c, "alice@mx.test", ["rcpt@example.net"],
                               "From: carol@example.org\r\nSubject: unchecked\r\n\r\nx\r\n.\r\n")
    assert code == 250, lines
    c.close()
    assert b"Subject: unchecked" in postern.sink.wait_messages(1)[0]


# ---- relay ---------------------------------------------------------------------------

def test_relay_denied_on_mx_swaks(postern):
    r = swaks("--server", "127.0.0.1", "--port", str(postern.ports["mx"]), "--tls",
              "--from", "peer@example.net", "--to", "someone@elsewhere.example")
    assert r.returncode == 24, r.stdout + r.stderr     # swaks: RCPT TO refused
    assert re.search(r"<~?\*+ +550 5\.7\.1 .*Relay access denied", r.stdout), r.stdout
    # A local recipient is fine.
    r = swaks("--server", "127.0.0.1", "--port", str(postern.ports["mx"]), "--tls",
              "--from", "peer@example.net", "--to", "alice@example.org",
              "--header", "Subject: inbound")
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"Subject: inbound" in postern.sink.wait_messages(1)[0]
    assert_stats(postern, relay_denied=1)


def test_relay_denied_on_mx_smtplib(postern):
    with smtplib.SMTP("127.0.0.1", postern.ports["mx"], timeout=10) as s:
        s.ehlo("peer.test")
        s.starttls(context=postern.tls_context())
        s.ehlo("peer.test")
        assert s.mail("peer@example.net")[0] == 250
        code, text = s.rcpt("someone@elsewhere.example")
        assert code == 550 and text.startswith(b"5.7.1"), (code, text)
        code, text = s.rcpt("someone@Example.ORG")
        assert code == 250, (code, text)
        # RFC 5321 4.5.1: postmaster always.
        assert s.rcpt("postmaster")[0] == 250
        assert s.rset()[0] == 250
        # Even with an address the MX accepts as sender.
        assert s.mail("alice@example.org")[0] == 250
        code, text = s.rcpt("victim@example.net")
        assert code == 550 and text.startswith(b"5.7.1"), (code, text)
    assert_stats(postern, relay_denied=2)


ROUTED = ["victim%evil.example@example.org", "evil.example!victim@example.org",
          '"victim@evil.example"@example.org', '"victim%evil.example"@mx.test']


def test_untrusted_routing_refused_on_mx(postern):
    """'%', '!' and '@' in a local part (sender-specified routing, quoted or
    not) get 550 5.7.1 on mx, each one recorded as rule untrusted_routing;
    the message goes on with the plain local recipient only."""
    c = session(postern, "mx", helo="peer.test")
    assert c.cmd("MAIL FROM:<peer@example.net>")[0] == 250
    for rcpt in ROUTED:
        code, lines = c.cmd(f"RCPT TO:<{rcpt}>")
        assert (code, enh(lines)) == (550, "5.7.1"), (rcpt, lines)
    code, lines = c.cmd('RCPT TO:<"first last"@example.org>')
    assert code == 250, lines
    assert c.cmd("DATA")[0] == 354
    c.send("From: peer@example.net\r\nSubject: routed\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    c.close()
    m = postern.sink.wait_messages(1)
    env = m[0].split(b"\r\n\r\n", 1)[0]
    assert b"evil.example" not in env, env
    time.sleep(0.3)
    assert len(postern.sink.messages()) == 1
    assert_stats(postern, untrusted_routing=len(ROUTED))


def test_untrusted_routing_swaks(postern):
    """A real client's view: swaks stops at the refused RCPT."""
    r = swaks("--server", "127.0.0.1", "--port", str(postern.ports["mx"]), "--tls",
              "--from", "peer@example.net", "--to", "victim%evil.example@example.org")
    assert r.returncode == 24, r.stdout + r.stderr     # swaks: RCPT TO refused
    assert re.search(r"<~?\*+ +550 5\.7\.1 .*routing", r.stdout), r.stdout
    assert_stats(postern, untrusted_routing=1)


def test_untrusted_routing_allowed_when_configured(make_postern):
    """policy { allow_untrusted_routing = true } accepts them (a downstream
    that knows better); other domains are still refused."""
    p = make_postern(policy="allow_untrusted_routing = true")
    c = session(p, "mx", helo="peer.test")
    assert c.cmd("MAIL FROM:<peer@example.net>")[0] == 250
    for rcpt in ROUTED:
        code, lines = c.cmd(f"RCPT TO:<{rcpt}>")
        assert code == 250, (rcpt, lines)
    code, lines = c.cmd("RCPT TO:<victim%evil.example@elsewhere.example>")
    assert (code, enh(lines)) == (550, "5.7.1"), lines
    c.close()
    assert_stats(p, untrusted_routing=0, relay_denied=1)


# ---- trusted networks -------------------------------------------------------------------

def test_trusted_network_relays_on_submission(make_postern, sink):
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}",
                     policy='trusted_networks = { "127.0.0.2/32" }')
    port = p.ports["submission"]
    with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0)) as s:
        s.ehlo("trusted.test")
        # TLS first, trusted or not.
        code, text = s.mail("app@example.net")
        assert code == 530 and text.startswith(b"5.7.0"), (code, text)
        s.rset()
        s.starttls(context=p.tls_context())
        s.ehlo("trusted.test")
        assert s.sendmail("app@example.net", ["rcpt@example.net"],
                          msg("app@example.net", "from trusted")) == {}
    assert b"Subject: from trusted" in sink.wait_messages(1)[0]
    wait_log(p, r"event=policy .*client=127\.0\.0\.2 rule=trusted_network")
    # 127.0.0.1 is not trusted.
    with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=("127.0.0.1", 0)) as s:
        s.ehlo("untrusted.test")
        s.starttls(context=p.tls_context())
        s.ehlo("untrusted.test")
        code, text = s.mail("app@example.net")
        assert code == 530 and text.startswith(b"5.7.0"), (code, text)
    assert_stats(p, auth_required=1)


def test_trusted_network_never_relays_on_mx(make_postern):
    p = make_postern(policy='trusted_networks = { "127.0.0.2/32" }')
    c = session(p, "mx", source="127.0.0.2", helo="trusted.test")
    assert c.cmd("MAIL FROM:<app@example.net>")[0] == 250
    code, lines = c.cmd("RCPT TO:<rcpt@example.net>")
    assert (code, enh(lines)) == (550, "5.7.1"), lines
    code, lines = c.cmd("RCPT TO:<alice@example.org>")
    assert code == 250, lines
    c.close()
    assert_stats(p, relay_denied=1)


# ---- rates ------------------------------------------------------------------------------------

def test_message_rate_reached(make_postern):
    """messages_per_hour per account, at MAIL: 450 4.7.1, across
    connections; other accounts keep their own budget."""
    p = make_postern(policy="messages_per_hour = 2")
    c = session(p, user="alice")
    assert_owned(c, "alice@mx.test")
    assert_owned(c, "alice@mx.test")
    code, lines = mail(c, "alice@mx.test")
    assert (code, enh(lines)) == (450, "4.7.1"), lines
    c.close()
    c = session(p, user="alice")
    code, lines = mail(c, "alice@mx.test")
    assert (code, enh(lines)) == (450, "4.7.1"), lines
    c.close()
    c = session(p, user="bob")
    assert_owned(c, "bob@mx.test")
    c.close()
    assert_stats(p, message_rate=2)


def pipeline(c, lines_out, expect=250):
    """Sends lines at once, then reads one reply per line; all must be expect."""
    c.send("".join(l + "\r\n" for l in lines_out))
    for l in lines_out:
        code, lines = c.reply()
        assert code == expect, (l, lines)


def test_message_rate_recovers(make_postern, sink):
    """!limit alice messages_per_hour=3600: a bucket of 3600 refilling one
    message a second. Spend it all (MAIL counts), get 450 4.7.1, and a
    second later alice may send again; the listener's number (2) still
    applies to bob."""
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}", policy="messages_per_hour = 2",
                     sender_map=DEFAULT_SENDER_MAP + "!limit alice messages_per_hour=3600\n")
    c = session(p, user="alice")
    t0 = time.monotonic()
    accepted = 0
    for _ in range(7):
        pipeline(c, ["MAIL FROM:<alice@mx.test>", "RSET"] * 500)
        accepted += 500
    while True:
        code, lines = c.cmd("MAIL FROM:<alice@mx.test>")
        if code != 250:
            break
        assert c.cmd("RSET")[0] == 250
        accepted += 1
        assert accepted < 3700, "no limit after 3700 messages"
    elapsed = time.monotonic() - t0
    assert (code, enh(lines)) == (450, "4.7.1"), lines
    assert 3600 <= accepted <= 3600 + elapsed + 2, (accepted, elapsed)
    time.sleep(1.3)
    code, lines = send_message(c, "alice@mx.test", ["rcpt@example.net"],
                               "From: alice@mx.test\r\nSubject: after refill\r\n\r\nx\r\n.\r\n")
    assert code == 250, lines
    c.close()
    assert b"Subject: after refill" in sink.wait_messages(1)[0]
    c = session(p, user="bob")
    assert_owned(c, "bob@mx.test")
    assert_owned(c, "bob@mx.test")
    code, lines = mail(c, "bob@mx.test")
    assert (code, enh(lines)) == (450, "4.7.1"), lines
    c.close()


def test_recipient_rate_reached(make_postern, sink):
    """recipients_per_hour per account, at RCPT, across messages: 450 4.7.1;
    the recipients accepted before still get the message."""
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}", policy="recipients_per_hour = 3")
    c = session(p, user="alice")
    code, lines = send_message(c, "alice@mx.test", ["r1@example.net", "r2@example.net"],
                               "From: alice@mx.test\r\nSubject: rr1\r\n\r\nx\r\n.\r\n")
    assert code == 250, lines
    assert c.cmd("MAIL FROM:<alice@mx.test>")[0] == 250
    assert c.cmd("RCPT TO:<r3@example.net>")[0] == 250
    code, lines = c.cmd("RCPT TO:<r4@example.net>")
    assert (code, enh(lines)) == (450, "4.7.1"), lines
    assert c.cmd("DATA")[0] == 354
    c.send("From: alice@mx.test\r\nSubject: rr2\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    c.close()
    msgs = sink.wait_messages(2)
    env = b"".join(m.split(b"\r\n", 1)[0] for m in msgs)
    assert b"r3@example.net" in env and b"r4@example.net" not in env, env
    c = session(p, user="bob")
    assert c.cmd("MAIL FROM:<bob@mx.test>")[0] == 250
    assert c.cmd("RCPT TO:<r4@example.net>")[0] == 250
    c.close()
    assert_stats(p, recipient_rate=1)


def test_recipients_per_message_limit(make_postern):
    """!limit recipients_per_message: 452 4.5.3 past it, per message."""
    p = make_postern(sender_map=DEFAULT_SENDER_MAP + "!limit alice recipients_per_message=2\n")
    c = session(p, user="alice")
    assert c.cmd("MAIL FROM:<alice@mx.test>")[0] == 250
    assert c.cmd("RCPT TO:<r1@example.net>")[0] == 250
    assert c.cmd("RCPT TO:<r2@example.net>")[0] == 250
    code, lines = c.cmd("RCPT TO:<r3@example.net>")
    assert (code, enh(lines)) == (452, "4.5.3"), lines
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("MAIL FROM:<alice@mx.test>")[0] == 250
    assert c.cmd("RCPT TO:<r3@example.net>")[0] == 250
    c.close()


def test_recipient_rate_recovers(make_postern):
    """recipients_per_hour=3600: spend the bucket, 450 4.7.1, one recipient
    more a second later."""
    p = make_postern(sender_map=DEFAULT_SENDER_MAP +
                     "!limit alice recipients_per_hour=3600 recipients_per_message=0\n")
    c = session(p, user="alice")
    assert c.cmd("MAIL FROM:<alice@mx.test>")[0] == 250
    t0 = time.monotonic()
    accepted = 0
    for i in range(7):
        pipeline(c, [f"RCPT TO:<r{i}-{j}@example.net>" for j in range(500)])
        accepted += 500
    while True:
        code, lines = c.cmd(f"RCPT TO:<tail{accepted}@example.net>")
        if code != 250:
            break
        accepted += 1
        assert accepted < 3700, "no limit after 3700 recipients"
    elapsed = time.monotonic() - t0
    assert (code, enh(lines)) == (450, "4.7.1"), lines
    assert 3600 <= accepted <= 3600 + elapsed + 2, (accepted, elapsed)
    time.sleep(1.3)
    code, lines = c.cmd("RCPT TO:<late@example.net>")
    assert code == 250, lines
    assert c.cmd("RSET")[0] == 250
    c.close()


# ---- connections ------------------------------------------------------------------------

def greeted(p, mode, source):
    c = p.raw(mode, source=source)
    code, lines = c.reply()
    assert code == 220, lines
    return c


def test_max_connections_per_ip(make_postern):
    """max_connections_per_ip counts every listener: the 4th concurrent
    connection from 127.0.0.1 gets 421 4.7.0 (on smtps inside TLS, once the
    handshake is done: a plaintext reply would be garbage to a TLS client,
    and a silent close made swaks die with "exit -13"), 127.0.0.2 is not
    affected, and a closed connection frees its place."""
    p = make_postern(policy="max_connections_per_ip = 3")
    time.sleep(0.3)  # the start-up port probes have been counted out
    held = [greeted(p, "submission", "127.0.0.1"), greeted(p, "mx", "127.0.0.1"),
            greeted(p, "smtps", "127.0.0.1")]
    for mode in ("submission", "mx"):
        c = p.raw(mode, source="127.0.0.1")
        code, lines = c.reply()
        assert (code, enh(lines)) == (421, "4.7.0"), (mode, lines)
        assert c.closed(), mode
        c.close()
    # smtps: the refusal inside TLS ...
    c = p.raw("smtps", source="127.0.0.1")
    code, lines = c.reply()
    assert (code, enh(lines)) == (421, "4.7.0"), lines
    assert c.closed()
    c.close()
    # ... with swaks too, which used to die on the silent close
    out = subprocess.run(["swaks", "--server", f"127.0.0.1:{p.ports['smtps']}", "--tlsc",
                          "--quit-after", "CONNECT", "--local-interface", "127.0.0.1"],
                         capture_output=True, text=True, timeout=30)
    assert "<~* 421 4.7.0" in out.stdout, out.stdout + out.stderr   # ~: inside TLS
    # never a plaintext reply; a client that starts no handshake is closed
    # after a short handshake timeout.
    with socket.create_connection(("127.0.0.1", p.ports["smtps"]), timeout=15,
                                  source_address=("127.0.0.1", 0)) as raw:
        data = b""
        t0 = time.time()
        try:
            while True:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        assert data == b"", data
        assert time.time() - t0 < 10
    # Another address is not affected.
    c = session(p, "smtps", user="alice", source="127.0.0.2")
    assert_owned(c, "alice@mx.test")
    c.close()
    # A place freed.
    held.pop(0).close()

    time.sleep(0.5)
    c = greeted(p, "submission", "127.0.0.1")
    c.close()
    for h in held:
        h.close()
    assert_stats(p, max_connections_per_ip=5)


def test_refused_smtps_handshakes_are_bounded(make_postern):
    """Each refused smtps connection costs a handshake and a descriptor
    while its 421 waits: beyond 64 at once per loop they are closed without
    a reply, and that is logged (once per interval, with a count)."""
    p = make_postern(policy="max_connections_per_ip = 1")
    time.sleep(0.3)
    held = greeted(p, "submission", "127.0.0.1")
    t0 = time.time()
    socks = [socket.create_connection(("127.0.0.1", p.ports["smtps"]), timeout=5)
             for _ in range(2 * 64 + 20)]   # two loops
    wait_for(lambda: "event=reject_dropped" in p.logtext(), 4, what="the dropped refusals")
    # Those closed at once, before the 5 s handshake timeout of the others.
    closed, pending = 0, list(socks)
    while pending and time.time() - t0 < 4:
        ready, _, _ = select.select(pending, [], [], 0.2)
        for s in ready:
            try:
                closed += s.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            pending.remove(s)
    for s in socks:
        s.close()
    assert closed >= 20, closed
    held.close()
    # and the loops are fine afterwards, once the held place is free
    def greets():
        c = p.raw("submission", source="127.0.0.1")
        ok = c.reply()[0] == 220
        c.close()
        return ok
    wait_for(greets, 10, interval=0.2, what="a greeting")


def test_connections_per_ip_per_minute(make_postern):
    """connections_per_ip_per_minute: past the burst, 421 4.7.0 at connect
    (and the refused attempts spend too); other addresses are not affected.
    127.0.0.2: the start-up probes come from 127.0.0.1."""
    p = make_postern(policy="connections_per_ip_per_minute = 4")
    for _ in range(4):
        c = greeted(p, "submission", "127.0.0.2")
        assert c.cmd("QUIT")[0] == 221
        c.close()
    for _ in range(2):
        c = p.raw("submission", source="127.0.0.2")
        code, lines = c.reply()
        assert (code, enh(lines)) == (421, "4.7.0"), lines
        assert c.closed()
        c.close()
    c = greeted(p, "submission", "127.0.0.3")
    c.close()
    assert_stats(p, connection_rate=2)


# ---- failed AUTH ------------------------------------------------------------------------------

def test_auth_lockout_and_recovery(make_postern):
    """auth_max_failures = 3 for (127.0.0.1, alice): then 454 4.7.0 even with
    the right password; alice from 127.0.0.2 and bob from 127.0.0.1 are not
    affected; after auth_lockout alice logs in from 127.0.0.1 again."""
    p = make_postern(policy=f'auth_max_failures = 3 auth_lockout = "3s" {FAST_AUTH}')
    c = session(p, source="127.0.0.1")
    for _ in range(3):
        auth_fail(c, "alice")
    t_locked = time.monotonic()     # the lockout started at most ~1 s before
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", USERS["alice"]))
    assert (code, enh(lines)) == (454, "4.7.0"), lines
    code, lines = c.cmd("MAIL FROM:<alice@mx.test>")
    assert code == 530, lines
    c.close()
    line = wait_log(p, r"event=auth_lockout ")
    assert re.search(r"event=auth_lockout .*client=127\.0\.0\.1\b", line), line
    assert "scope=pair" in line and 'user="alice"' in line, line
    # A fresh connection from the same address: still locked.
    c = session(p, source="127.0.0.1")
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", USERS["alice"]))
    assert (code, enh(lines)) == (454, "4.7.0"), lines
    c.close()
    # alice elsewhere, and bob here, are fine.
    c = session(p, user="alice", source="127.0.0.2")
    assert_owned(c, "alice@mx.test")
    c.close()
    c = session(p, user="bob", source="127.0.0.1")
    c.close()
    # The lockout ends 3 s after it started.
    remaining = t_locked + 2.3 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    c = session(p, source="127.0.0.1")
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", USERS["alice"]))
    assert code == 235, lines
    assert_owned(c, "alice@mx.test")
    c.close()
    assert_stats(p, auth_failed=3, auth_locked=2)


def test_lockout_holds_for_a_remembered_password(make_postern, workdir):
    """A login the credential cache remembers still meets the lockout: the
    right password, answered from memory, gets 454 4.7.0 while the
    (address, account) pair is locked."""
    db = own_sasldb(workdir, {"alice": "alice-pass"})
    p = make_postern(sasldb=db, policy=f'auth_max_failures = 3 auth_lockout = "60s" {FAST_AUTH}')
    for _ in range(2):
        c = session(p, source="127.0.0.1")
        code, lines = c.cmd("AUTH PLAIN " + plain("alice", "alice-pass"))
        assert code == 235, lines
        c.close()
    assert len(re.findall(r'user="alice" result=ok cache=hit', p.logtext())) == 1
    c = session(p, source="127.0.0.1")
    for _ in range(3):
        auth_fail(c, "alice")
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", "alice-pass"))
    assert (code, enh(lines)) == (454, "4.7.0"), lines
    c.close()
    assert len(re.findall(r'user="alice" result=ok', p.logtext())) == 2


def test_auth_ip_budget(make_postern):
    """auth_ip_budget = 4 failures from one address over any accounts: the
    next AUTH gets 421 4.7.0 and the connection closes; new connections
    from that address too; another address is not affected."""
    p = make_postern(policy=f"auth_ip_budget = 4 {FAST_AUTH}")
    c = session(p, source="127.0.0.1")
    for user in ("alice", "bob", "carol@example.org", "mallory"):
        auth_fail(c, user)
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", USERS["alice"]))
    assert (code, enh(lines)) == (421, "4.7.0"), lines
    assert c.closed()
    c.close()
    line = wait_log(p, r"event=auth_lockout .*scope=ip")
    assert re.search(r"client=127\.0\.0\.1\b", line), line
    c = session(p, source="127.0.0.1")
    code, lines = c.cmd("AUTH PLAIN " + plain("bob", USERS["bob"]))
    assert (code, enh(lines)) == (421, "4.7.0"), lines
    assert c.closed()
    c.close()
    c = session(p, user="alice", source="127.0.0.2")
    assert_owned(c, "alice@mx.test")
    c.close()
    assert_stats(p, auth_failed=4, auth_ip_locked=2)


# ---- SIGHUP ---------------------------------------------------------------------------------

def rewrite_map(p, text):
    with open(p.sender_map, "w") as f:
        f.write(text)


def test_sighup_reloads_sender_map(make_postern, sink):
    """A new map after SIGHUP applies to new connections and to those open
    before the reload, which are not dropped."""
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
    before = session(p, user="alice")
    assert_not_owned(before, "info@example.org", "alice")
    rewrite_map(p, DEFAULT_SENDER_MAP + "alice info@example.org\n")
    mark = len(p.logtext())
    p.proc.send_signal(signal.SIGHUP)
    wait_log(p, r"event=reload policy=updated", after=mark)
    after = session(p, user="alice")
    assert_owned(after, "info@example.org")
    after.close()
    code, lines = send_message(before, "info@example.org", ["rcpt@example.net"],
                               "From: info@example.org\r\nSubject: after reload\r\n\r\nx\r\n.\r\n")
    assert code == 250, lines
    assert before.cmd("QUIT")[0] == 221
    before.close()
    assert b"Subject: after reload" in sink.wait_messages(1)[0]
    assert p.proc.poll() is None
    wait_log(p, r"event=reload_done", after=mark)


def test_sighup_broken_map_keeps_old_policy(make_postern):
    """A map with a bad line: event=reload_error naming it, the running
    policy stays whole (not half of the new file), the daemon serves on, and
    a fixed map reloads afterwards."""
    good = DEFAULT_SENDER_MAP + "alice info@example.org\n"
    p = make_postern(sender_map=good)
    open_conn = session(p, user="alice")
    # The broken map would take info@ away, and carol's lines come after
    # the bad one.
    rewrite_map(p, "alice @mx.test, <>\nbob @mx.test\nalice\ncarol@example.org =\n")
    mark = len(p.logtext())
    p.proc.send_signal(signal.SIGHUP)
    line = wait_log(p, r"event=reload_error", after=mark)
    assert p.sender_map in line and ":3:" in line and "missing target" in line, line
    assert "event=reload policy=updated" not in p.logtext()[mark:]
    assert p.proc.poll() is None
    assert_owned(open_conn, "info@example.org")
    open_conn.close()
    c = session(p, user="alice")
    assert_owned(c, "info@example.org")
    c.close()
    c = session(p, user="bob")
    assert_owned(c, "bob@mx.test")
    code, lines = mail(c, "")
    assert code == 250, lines     # the old map's <> for bob
    c.close()
    # Fixed: the next SIGHUP loads it.
    rewrite_map(p, DEFAULT_SENDER_MAP)
    mark = len(p.logtext())
    p.proc.send_signal(signal.SIGHUP)
    wait_log(p, r"event=reload policy=updated", after=mark)
    c = session(p, user="alice")
    assert_not_owned(c, "info@example.org", "alice")
    c.close()


def test_sighup_reloads_policy_section(make_postern, sink):
    """The policy section of the configuration is reloaded too: turning on
    check_header_from."""
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
    body = "From: carol@example.org\r\nSubject: hf\r\n\r\nx\r\n.\r\n"
    c = session(p, user="alice")
    assert send_message(c, "alice@mx.test", ["rcpt@example.net"], body)[0] == 250
    c.close()
    with open(p.conf) as f:
        conf = f.read()
    assert "policy { " in conf
    with open(p.conf, "w") as f:
        f.write(conf.replace("policy { ", "policy { check_header_from = true ", 1))
    mark = len(p.logtext())
    p.proc.send_signal(signal.SIGHUP)
    wait_log(p, r"event=reload policy=updated", after=mark)
    c = session(p, user="alice")
    code, lines = send_message(c, "alice@mx.test", ["rcpt@example.net"], body)
    assert (code, enh(lines)) == (553, "5.7.1"), lines
    c.close()
    sink.wait_messages(1)


# ---- per-listener numbers ---------------------------------------------------------

def test_listener_overrides_policy_numbers(make_postern):
    """A listener's own max_recipients / messages_per_hour win over the
    global ones; the other listeners keep the global numbers."""
    p = make_postern(listen_extra={"submission": "max_recipients = 2 messages_per_hour = 1"})
    # smtps: the global numbers (20 recipients, no hourly limit)
    c = session(p, "smtps", user="alice")
    for n in range(2):
        assert c.cmd("MAIL FROM:<alice@mx.test>")[0] == 250
        for i in range(3):
            assert c.cmd(f"RCPT TO:<r{i}@example.net>")[0] == 250
        assert c.cmd("RSET")[0] == 250
    c.close()
    # submission: 2 recipients per message, 1 message per hour
    c = session(p, "submission", user="bob")
    assert c.cmd("MAIL FROM:<bob@mx.test>")[0] == 250
    assert c.cmd("RCPT TO:<a@example.net>")[0] == 250
    assert c.cmd("RCPT TO:<b@example.net>")[0] == 250
    code, lines = c.cmd("RCPT TO:<c@example.net>")
    assert code == 452 and enh(lines) == "4.5.3", lines
    assert c.cmd("RSET")[0] == 250
    code, lines = c.cmd("MAIL FROM:<bob@mx.test>")
    assert code == 450 and enh(lines) == "4.7.1", lines
    c.close()
