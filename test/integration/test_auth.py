"""SMTP AUTH (RFC 4954) as users see it: PLAIN, LOGIN and SCRAM-SHA-256
dialogues, the replies to wrong, cancelled and malformed attempts, the
fail delay, what the log says (and never says), and real clients (msmtp,
curl, smtplib) submitting through the gate."""

import base64
import hashlib
import hmac
import os
import re
import smtplib
import subprocess
import threading
import time
import warnings

from conftest import USERS, own_sasldb, saslpasswd2

MSG = b"Subject: auth test\r\nFrom: alice@mx.test\r\n\r\nbody line\r\n"


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def plain_token(user, password, authzid=""):
    return b64(f"{authzid}\0{user}\0{password}")


def enh(lines):
    """The enhanced status code of the last reply line ("2.7.0")."""
    parts = lines[-1][4:].split()
    return parts[0] if parts else ""


def auth_log_lines(p):
    return [line for line in p.logtext().splitlines() if "event=auth " in line]


def deliver_one(c, subject):
    """Sends a message on an authenticated RawClient and checks 250."""
    code, lines = c.cmd("MAIL FROM:<alice@mx.test>")
    assert code == 250, lines
    code, lines = c.cmd("RCPT TO:<rcpt@example.net>")
    assert code == 250, lines
    code, lines = c.cmd("DATA")
    assert code == 354, lines
    c.send(f"Subject: {subject}\r\n\r\nhello\r\n.\r\n")
    code, lines = c.reply()
    assert code == 250 and enh(lines) == "2.0.0", lines


# ---- PLAIN ------------------------------------------------------------------

def test_plain_with_initial_response(postern):
    c = postern.raw("smtps")
    assert c.reply()[0] == 220
    code, lines = c.cmd("EHLO client.test")
    assert code == 250
    auth = [line for line in lines if line[4:].upper().startswith("AUTH")]
    assert auth, lines
    mechs = auth[0][4:].upper().split()[1:]
    assert {"PLAIN", "LOGIN", "SCRAM-SHA-256"} <= set(mechs), auth
    code, lines = c.cmd("AUTH PLAIN " + plain_token("alice", USERS["alice"]))
    assert code == 235 and enh(lines) == "2.7.0", lines
    deliver_one(c, "plain-ir")
    assert c.cmd("QUIT")[0] == 221
    c.close()
    m = postern.sink.wait_messages(1)[0]
    assert b"Subject: plain-ir" in m
    assert b"with ESMTPSA" in m
    assert any('mech=PLAIN user="alice" result=ok' in line for line in auth_log_lines(postern))


def test_plain_without_initial_response(postern):
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("AUTH PLAIN")
    # RFC 4954 4: an empty challenge is "334 " (or "334").
    assert code == 334, lines
    assert lines[-1].rstrip() == "334", lines
    code, lines = c.cmd(plain_token("alice", USERS["alice"]))
    assert code == 235 and enh(lines) == "2.7.0", lines
    deliver_one(c, "plain-noir")
    c.close()
    assert b"Subject: plain-noir" in postern.sink.wait_messages(1)[0]


def test_plain_user_of_other_realm(postern):
    """carol@example.org lives in realm example.org, not the hostname."""
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("AUTH PLAIN " + plain_token("carol@example.org", USERS["carol@example.org"]))
    assert code == 235 and enh(lines) == "2.7.0", lines
    code, lines = c.cmd("MAIL FROM:<carol@example.org>")
    assert code == 250, lines
    c.close()
    assert any('user="carol@example.org" result=ok' in line for line in auth_log_lines(postern))


# ---- LOGIN ------------------------------------------------------------------

def test_login_dialogue(postern):
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("AUTH LOGIN")
    assert (code, lines[-1]) == (334, "334 VXNlcm5hbWU6"), lines   # "Username:"
    code, lines = c.cmd(b64("bob"))
    assert (code, lines[-1]) == (334, "334 UGFzc3dvcmQ6"), lines   # "Password:"
    code, lines = c.cmd(b64(USERS["bob"]))
    assert code == 235 and enh(lines) == "2.7.0", lines
    deliver_one(c, "login")
    c.close()
    assert b"Subject: login" in postern.sink.wait_messages(1)[0]
    assert any('mech=LOGIN user="bob" result=ok' in line for line in auth_log_lines(postern))


def test_smtplib_login_mechanism(postern):
    with postern.smtps() as s:
        s.ehlo("client.test")
        s.user, s.password = "bob", USERS["bob"]
        code, resp = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        assert code == 235, resp
        assert s.sendmail("bob@mx.test", ["x@example.net"], MSG) == {}
    with postern.smtps() as s:
        # smtplib's default: the user name as the initial response.
        s.ehlo("client.test")
        s.user, s.password = "alice", USERS["alice"]
        code, resp = s.auth("LOGIN", s.auth_login)
        assert code == 235, resp
    assert b"Subject: auth test" in postern.sink.wait_messages(1)[0]


# ---- SCRAM-SHA-256 (RFC 5802, RFC 7677) -----------------------------------

def _hmac(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def scram_login(c, user, password, tamper_proof=False):
    """Runs a SCRAM-SHA-256 exchange on a RawClient after EHLO. Returns the
    final (code, lines); asserts the server signature on the way."""
    cnonce = b64(os.urandom(18))
    first_bare = f"n={user},r={cnonce}"
    code, lines = c.cmd("AUTH SCRAM-SHA-256 " + b64("n,," + first_bare))
    assert code == 334, lines
    server_first = base64.b64decode(lines[-1][4:]).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(cnonce) and len(attrs["r"]) > len(cnonce), server_first
    salt = base64.b64decode(attrs["s"])
    iterations = int(attrs["i"])
    assert iterations >= 4096, server_first      # RFC 7677 minimum
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    stored_key = hashlib.sha256(client_key).digest()
    final_no_proof = f"c={b64('n,,')},r={attrs['r']}"
    assert final_no_proof.startswith("c=biws,")
    auth_message = f"{first_bare},{server_first},{final_no_proof}".encode()
    client_sig = _hmac(stored_key, auth_message)
    proof = bytes(a ^ b for a, b in zip(client_key, client_sig))
    if tamper_proof:
        proof = bytes([proof[0] ^ 1]) + proof[1:]
    code, lines = c.cmd(b64(f"{final_no_proof},p={b64(proof)}"))
    if tamper_proof:
        return code, lines
    # RFC 4954: the server-final message travels in a 334 challenge.
    assert code == 334, lines
    server_final = base64.b64decode(lines[-1][4:]).decode()
    server_sig = _hmac(_hmac(salted, b"Server Key"), auth_message)
    assert server_final == "v=" + b64(server_sig), server_final
    return c.cmd("")


def test_scram_sha256(postern):
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = scram_login(c, "alice", USERS["alice"])
    assert code == 235 and enh(lines) == "2.7.0", lines
    deliver_one(c, "scram")
    c.close()
    assert b"Subject: scram" in postern.sink.wait_messages(1)[0]
    assert any('mech=SCRAM-SHA-256 user="alice" result=ok' in line
               for line in auth_log_lines(postern))


def test_scram_wrong_proof_refused(postern):
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = scram_login(c, "alice", USERS["alice"], tamper_proof=True)
    assert code == 535 and enh(lines) == "5.7.8", lines
    code, lines = c.cmd("MAIL FROM:<alice@mx.test>")
    assert code == 530, lines
    c.close()


# ---- failures ----------------------------------------------------------------

def test_wrong_password_delayed_and_logged(postern):
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    t0 = time.monotonic()
    code, lines = c.cmd("AUTH PLAIN " + plain_token("alice", "not-the-password"))
    elapsed = time.monotonic() - t0
    assert code == 535 and enh(lines) == "5.7.8", lines
    assert elapsed >= 0.9, f"failure answered after {elapsed:.2f}s, fail_delay is 1s"
    # Not authenticated: MAIL is refused.
    code, lines = c.cmd("MAIL FROM:<alice@mx.test>")
    assert code == 530 and enh(lines) == "5.7.0", lines
    c.close()
    fails = [line for line in auth_log_lines(postern) if "result=fail" in line]
    assert fails, postern.logtext()
    assert re.search(r'event=auth .*user="alice" result=fail', fails[0]), fails


def test_failed_auth_log_names_mechanism(postern):
    """The fail line (what fail2ban reads) says which mechanism was tried,
    as the success line does."""
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("AUTH LOGIN")[0] == 334
    assert c.cmd(b64("bob"))[0] == 334
    assert c.cmd(b64("wrong"))[0] == 535
    c.close()
    fails = [line for line in auth_log_lines(postern) if "result=fail" in line]
    assert len(fails) == 1 and 'user="bob"' in fails[0], fails
    assert "mech=LOGIN" in fails[0], fails[0]


def test_unknown_user(postern):
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("AUTH PLAIN " + plain_token("mallory", "whatever"))
    assert code == 535 and enh(lines) == "5.7.8", lines
    c.close()
    assert any('user="mallory" result=fail' in line for line in auth_log_lines(postern))


def test_retry_after_failure_on_same_connection(postern):
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("AUTH LOGIN")
    assert code == 334
    assert c.cmd(b64("alice"))[0] == 334
    code, lines = c.cmd(b64("wrong"))
    assert code == 535 and enh(lines) == "5.7.8", lines
    code, lines = c.cmd("AUTH PLAIN " + plain_token("alice", USERS["alice"]))
    assert code == 235 and enh(lines) == "2.7.0", lines
    deliver_one(c, "retry")
    c.close()
    assert b"Subject: retry" in postern.sink.wait_messages(1)[0]


def test_cancel_with_star(postern):
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("AUTH LOGIN")[0] == 334
    code, lines = c.cmd("*")
    assert code == 501 and enh(lines).startswith("5."), lines
    # The session goes on: a new AUTH works.
    code, lines = c.cmd("AUTH PLAIN " + plain_token("alice", USERS["alice"]))
    assert code == 235, lines
    c.close()


def test_bad_base64_initial_response(postern):
    """RFC 4954 4: a response that cannot be base64-decoded gets 501."""
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("AUTH PLAIN !!!notbase64!!!")
    assert code in (501, 535), lines
    if code == 535:
        warnings.warn("bad base64 initial response answered 535, RFC 4954 says 501")
    # Still usable afterwards.
    code, lines = c.cmd("AUTH PLAIN " + plain_token("alice", USERS["alice"]))
    assert code == 235, lines
    c.close()


def test_bad_base64_response(postern):
    """Same, in a continuation line after a 334."""
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("AUTH PLAIN")[0] == 334
    code, lines = c.cmd("%%%% not base64 %%%%")
    assert code in (501, 535), lines
    if code == 535:
        warnings.warn("bad base64 AUTH response answered 535, RFC 4954 says 501")
    code, lines = c.cmd("AUTH PLAIN " + plain_token("alice", USERS["alice"]))
    assert code == 235, lines
    c.close()


def test_unknown_mechanism(postern):
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("AUTH CRAM-SHA-999")
    assert code == 504 and enh(lines) == "5.5.4", lines
    code, lines = c.cmd("AUTH PLAIN " + plain_token("alice", USERS["alice"]))
    assert code == 235, lines
    c.close()


def test_auth_twice(postern):
    c = postern.raw("smtps")
    c.reply()
    c.login("alice")
    code, lines = c.cmd("AUTH PLAIN " + plain_token("bob", USERS["bob"]))
    assert code == 503 and enh(lines) == "5.5.1", lines
    c.close()
    # The identity stays alice's.
    oks = [line for line in auth_log_lines(postern) if "result=ok" in line]
    assert len(oks) == 1 and 'user="alice"' in oks[0], oks


def test_auth_during_transaction(postern):
    c = postern.raw("smtps")
    c.reply()
    c.login("alice")
    assert c.cmd("MAIL FROM:<alice@mx.test>")[0] == 250
    code, lines = c.cmd("AUTH PLAIN " + plain_token("alice", USERS["alice"]))
    assert code == 503 and enh(lines).startswith("5.5."), lines
    # The transaction is untouched.
    assert c.cmd("RCPT TO:<rcpt@example.net>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: tx\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    c.close()
    postern.sink.wait_messages(1)


def test_passwords_never_logged(postern):
    """Successful and failed logins with every mechanism, at debug level."""
    secrets = [USERS["alice"], USERS["bob"], "wrong-secret-xyzzy"]
    c = postern.raw("smtps")
    c.reply()
    c.login("alice")
    c.close()
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("AUTH PLAIN " + plain_token("alice", "wrong-secret-xyzzy"))[0] == 535
    assert c.cmd("AUTH LOGIN")[0] == 334
    assert c.cmd(b64("bob"))[0] == 334
    assert c.cmd(b64(USERS["bob"]))[0] == 235
    c.close()
    c = postern.raw("smtps")
    c.reply()
    c.cmd("EHLO client.test")
    assert scram_login(c, "alice", USERS["alice"])[0] == 235
    c.close()
    time.sleep(0.2)
    log = postern.logtext()
    assert "level=debug" in log or "event=" in log
    for secret in secrets:
        assert secret not in log, f"{secret!r} appears in the log"
        assert b64(secret) not in log
    for tok in (plain_token("alice", USERS["alice"]), plain_token("alice", "wrong-secret-xyzzy")):
        assert tok not in log, "an AUTH PLAIN payload appears in the log"
    assert b64(USERS["bob"]) not in log


# ---- real clients ---------------------------------------------------------------

def _msmtp(postern, port, starttls, tmp_path, subject):
    msg = tmp_path / "msg.txt"
    msg.write_bytes(f"From: alice@mx.test\r\nTo: rcpt@example.net\r\nSubject: {subject}\r\n\r\n"
                    "sent by msmtp\r\n".encode())
    args = ["msmtp", "--file=/dev/null", "--host=127.0.0.1", f"--port={port}", "--tls=on",
            f"--tls-starttls={'on' if starttls else 'off'}",
            f"--tls-trust-file={postern.pki.ca}", "--auth=plain", "--user=alice",
            f"--passwordeval=echo {USERS['alice']}", "--from=alice@mx.test", "rcpt@example.net"]
    with open(msg, "rb") as f:
        out = subprocess.run(args, stdin=f, capture_output=True, text=True, timeout=30,
                             env={**os.environ, "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stdout + out.stderr


def test_msmtp_smtps(postern, tmp_path):
    _msmtp(postern, postern.ports["smtps"], False, tmp_path, "msmtp smtps")
    m = postern.sink.wait_messages(1)[0]
    assert b"Subject: msmtp smtps" in m and b"sent by msmtp" in m
    assert b"rcpt=<rcpt@example.net>" in m


def test_msmtp_submission_starttls(postern, tmp_path):
    _msmtp(postern, postern.ports["submission"], True, tmp_path, "msmtp starttls")
    m = postern.sink.wait_messages(1)[0]
    assert b"Subject: msmtp starttls" in m
    assert b"with ESMTPSA" in m


def test_curl_smtps(postern, tmp_path):
    msg = tmp_path / "msg.txt"
    msg.write_bytes(b"From: alice@mx.test\r\nSubject: via curl\r\n\r\nsent by curl\r\n")
    out = subprocess.run(
        ["curl", "-sS", "--url", f"smtps://127.0.0.1:{postern.ports['smtps']}",
         "--cacert", postern.pki.ca, "--user", f"alice:{USERS['alice']}",
         "--mail-from", "alice@mx.test", "--mail-rcpt", "x@example.net",
         "--upload-file", str(msg)],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    m = postern.sink.wait_messages(1)[0]
    assert b"Subject: via curl" in m and b"rcpt=<x@example.net>" in m


def test_parallel_logins(postern):
    n = 20
    results = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        try:
            c = postern.raw("smtps", timeout=20)
            c.reply()
            c.cmd("EHLO client.test")
            user = ("alice", "bob")[i % 2]
            barrier.wait(10)
            code, lines = c.cmd("AUTH PLAIN " + plain_token(user, USERS[user]))
            results[i] = code
            c.cmd("QUIT")
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = repr(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [235] * n, results
    oks = [line for line in auth_log_lines(postern) if "result=ok" in line]
    assert len(oks) == n


# ---- the credential cache ---------------------------------------------------

def smtplib_login(p, user, password):
    """235 or 535, through Python's smtplib on implicit TLS."""
    c = p.smtps()
    try:
        c.login(user, password)
        return 235
    except smtplib.SMTPAuthenticationError as e:
        return e.smtp_code
    finally:
        c.close()


def cache_hits(p, user):
    return sum(1 for line in auth_log_lines(p) if f'user="{user}" result=ok cache=hit' in line)


def test_repeat_login_answered_from_cache(make_postern, sink, workdir):
    db = own_sasldb(workdir, {"alice": "first-pass"})
    p = make_postern(sasldb=db, downstream=f"smtp://127.0.0.1:{sink.port}")
    assert smtplib_login(p, "alice", "first-pass") == 235
    assert cache_hits(p, "alice") == 0
    # The second login, and a message sent on it, as any other.
    c = p.smtps()
    c.login("alice", "first-pass")
    c.sendmail("alice@mx.test", ["rcpt@example.net"], MSG)
    c.quit()
    assert b"with ESMTPSA" in sink.wait_messages(1)[0]
    assert cache_hits(p, "alice") == 1
    # A wrong password is never answered from memory.
    assert smtplib_login(p, "alice", "first-pasS") == 535
    assert any('user="alice" result=fail' in line for line in auth_log_lines(p))


def test_password_change_takes_effect_at_once(make_postern, workdir):
    db = own_sasldb(workdir, {"alice": "old-pass", "bob": "bob-pass"})
    p = make_postern(sasldb=db)
    for _ in range(2):
        assert smtplib_login(p, "alice", "old-pass") == 235
        assert smtplib_login(p, "bob", "bob-pass") == 235
    assert cache_hits(p, "alice") == 1 and cache_hits(p, "bob") == 1
    saslpasswd2(db, "alice", "new-pass")
    assert smtplib_login(p, "alice", "old-pass") == 535
    assert smtplib_login(p, "alice", "new-pass") == 235
    saslpasswd2(db, "bob")
    assert smtplib_login(p, "bob", "bob-pass") == 535
    assert cache_hits(p, "alice") == 1 and cache_hits(p, "bob") == 1


def test_credential_cache_can_be_turned_off(make_postern, workdir):
    db = own_sasldb(workdir, {"alice": "a-pass"})
    p = make_postern(sasldb=db, sasl_extra="credential_cache = false")
    for _ in range(3):
        assert smtplib_login(p, "alice", "a-pass") == 235
    assert cache_hits(p, "alice") == 0
    assert len([line for line in auth_log_lines(p) if 'user="alice" result=ok' in line]) == 3
