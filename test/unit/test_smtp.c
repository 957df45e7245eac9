/*
 * test_smtp.c - the SMTP engine driven through whole dialogues with a fake
 * transport, fake SASL and queue, and a scripted hook (smtp_fake.c): no
 * socket, no loop, no libuv. Greeting, EHLO, STARTTLS and the plaintext
 * it must drop, AUTH (now and later, right and wrong, with its delay),
 * pipelining and the one write for the replies before the 354, DATA and
 * BDAT to the queue, every kind of refusal (the engine's, a hook's, a
 * pending one), the error limit, timeouts, the stop, stale answers.
 */
#include "test/unit/smtp_fake.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOOD_PLAIN "AGFsaWNlAHNlY3JldA=="
#define BAD_PLAIN "AGFsaWNlAHdyb25n"

static void expect(struct fake *f, const char *want)
{
	const char *got = fake_replies(f);
	ck_assert_msg(strcmp(got, want) == 0, "replies:\n%s\nwanted:\n%s", got, want);
}

/* Greeted, EHLO, STARTTLS done, EHLO again: a submission session ready
 * for AUTH. */
static struct fake *submission_ready(void)
{
	struct fake *f = fake_new(HOOK_MODE_SUBMISSION);
	fake_start(f);
	expect(f, "220 mx.test ESMTP Postern");
	fake_send(f, "EHLO client.test\r\n");
	expect(f, "250-mx.test\n250-PIPELINING\n250-SIZE 10000\n250-8BITMIME\n"
	          "250-ENHANCEDSTATUSCODES\n250-SMTPUTF8\n250-CHUNKING\n250 STARTTLS");
	fake_send(f, "STARTTLS\r\n");
	expect(f, "220 2.0.0 Ready to start TLS");
	ck_assert_int_eq(f->tls_started, 1);
	fake_tls(f);
	expect(f, "");
	fake_send(f, "EHLO client.test\r\n");
	expect(f, "250-mx.test\n250-PIPELINING\n250-SIZE 10000\n250-8BITMIME\n"
	          "250-ENHANCEDSTATUSCODES\n250-SMTPUTF8\n250-CHUNKING\n250 AUTH PLAIN");
	return f;
}

static struct fake *logged_in(void)
{
	struct fake *f = submission_ready();
	fake_send(f, "AUTH PLAIN " GOOD_PLAIN "\r\n");
	expect(f, "235 2.7.0 Authentication successful");
	return f;
}

START_TEST(test_whole_submission)
{
	struct fake *f = logged_in();
	f->stage_head = true;
	/* Pipelined: the replies wait for the 354, and leave in one flush. */
	unsigned flushes = f->flushes;
	fake_send(f, "MAIL FROM:<alice@mx.test>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n");
	expect(f, "");
	ck_assert_uint_eq(f->flushes, flushes);
	ck_assert_uint_gt(fake_unflushed(f), 0);
	ck_assert(!f->reading);
	ck_assert(fake_complete(f));   /* the queue file exists */
	expect(f, "250 2.1.0 Ok\n250 2.1.5 Ok\n354 End data with <CR><LF>.<CR><LF>");
	ck_assert_uint_eq(f->flushes, flushes + 1);
	ck_assert(f->reading);
	fake_send(f, "Subject: hi\r\n\r\n..dotted\r\nbody\r\n.\r\n");
	expect(f, "");                 /* the commit runs */
	ck_assert(fake_complete(f));
	const char *r = fake_replies(f);
	ck_assert_msg(strncmp(r, "250 2.0.0 Ok: queued as ", 24) == 0, "%s", r);
	ck_assert_str_eq(f->message.data, "Received: from fake\r\nSubject: hi\r\n\r\n.dotted\r\nbody\r\n");
	ck_assert_uint_eq(f->files_committed, 1);
	ck_assert_uint_eq(f->observed_ok[HOOK_COMMIT], 1);
	ck_assert_uint_eq(f->observed_ok[HOOK_MAIL], 1);
	ck_assert_uint_eq(f->observed_ok[HOOK_RCPT], 1);
	fake_send(f, "QUIT\r\n");
	expect(f, "221 2.0.0 Bye");
	ck_assert(f->closed);
	fake_free(f);
}
END_TEST

START_TEST(test_starttls_drops_pipelined_plaintext)
{
	struct fake *f = fake_new(HOOK_MODE_SUBMISSION);
	fake_start(f);
	expect(f, "220 mx.test ESMTP Postern");
	fake_send(f, "EHLO c\r\n");
	fake_replies(f);
	/* CVE-2011-0411: the MAIL came in plaintext with the STARTTLS. */
	fake_send(f, "STARTTLS\r\nMAIL FROM:<x@y.example>\r\n");
	expect(f, "220 2.0.0 Ready to start TLS");
	fake_tls(f);
	fake_send(f, "RCPT TO:<a@b.example>\r\n");
	expect(f, "503 5.5.1 Error: send HELO/EHLO first");
	fake_send(f, "EHLO c\r\nRCPT TO:<a@b.example>\r\n");
	const char *r = fake_replies(f);
	ck_assert_msg(strstr(r, "503 5.5.1 Error: need MAIL command"), "%s", r);
	ck_assert_msg(!strstr(r, "STARTTLS"), "%s", r);
	fake_send(f, "STARTTLS\r\n");
	expect(f, "503 5.5.1 TLS already active");
	fake_free(f);
}
END_TEST

START_TEST(test_auth_paths)
{
	struct fake *f = submission_ready();
	/* Before TLS is the transport's test; here: mechanism, AUTH later,
	 * wrong password with the hook's delay, cancel, malformed. */
	fake_send(f, "AUTH CRAM-MD5\r\n");
	expect(f, "504 5.5.4 Unrecognized authentication type");
	fake_rule(f, (struct fake_rule){ .phase = HOOK_AUTH, .code = 535, .enh = "5.7.8",
	                                 .rule = "auth_failed", .text = "Authentication credentials invalid",
	                                 .delay_ms = 1500, .auth_outcome = -1 });
	fake_send(f, "AUTH PLAIN " BAD_PLAIN "\r\n");
	expect(f, "");                   /* the reply waits out the delay */
	ck_assert_uint_eq(f->timer_ms, 1500);
	ck_assert(!f->reading);
	fake_timer(f);
	expect(f, "535 5.7.8 Authentication credentials invalid");
	ck_assert(f->reading);
	ck_assert_uint_eq(f->nseen, 1);
	ck_assert_str_eq(f->seen[0].rule, "auth_failed");
	f->nrules = 0;
	fake_send(f, "AUTH PLAIN\r\n");
	expect(f, "334 ");
	fake_send(f, "*\r\n");
	expect(f, "501 5.0.0 Authentication cancelled");
	fake_send(f, "AUTH PLAIN =\r\n");
	expect(f, "501 5.5.2 Cannot decode the response");
	/* A step that answers later: reading stops meanwhile. */
	f->auth_async = true;
	fake_send(f, "AUTH PLAIN " GOOD_PLAIN "\r\nNOOP\r\n");
	expect(f, "");
	ck_assert(!f->reading);
	ck_assert(fake_complete(f));
	expect(f, "235 2.7.0 Authentication successful\n250 2.0.0 Ok");
	fake_send(f, "AUTH PLAIN " GOOD_PLAIN "\r\n");
	expect(f, "503 5.5.1 Error: already authenticated");
	fake_free(f);
}
END_TEST

START_TEST(test_auth_on_mx_and_before_tls)
{
	struct fake *f = fake_new(HOOK_MODE_MX);
	fake_start(f);
	fake_send(f, "EHLO peer\r\nAUTH PLAIN " GOOD_PLAIN "\r\n");
	const char *r = fake_replies(f);
	ck_assert_msg(strstr(r, "503 5.5.1 Error: authentication not enabled"), "%s", r);
	fake_free(f);
	f = fake_new(HOOK_MODE_SUBMISSION);
	fake_start(f);
	fake_send(f, "EHLO c\r\nAUTH PLAIN " GOOD_PLAIN "\r\n");
	r = fake_replies(f);
	ck_assert_msg(strstr(r, "538 5.7.11"), "%s", r);
	fake_free(f);
}
END_TEST

START_TEST(test_hook_refusals_and_error_limit)
{
	struct fake *f = logged_in();
	fake_rule(f, (struct fake_rule){ .phase = HOOK_RCPT, .arg = "bad@example.net", .code = 550,
	                                 .enh = "5.7.1", .rule = "relay_denied",
	                                 .text = "Relay access denied" });
	fake_rule(f, (struct fake_rule){ .phase = HOOK_RCPT, .arg = "many@example.net", .code = 452,
	                                 .enh = "4.5.3", .rule = "max_recipients",
	                                 .text = "Too many recipients", .not_an_error = true });
	fake_send(f, "MAIL FROM:<alice@mx.test>\r\nRCPT TO:<bad@example.net>\r\n");
	expect(f, "250 2.1.0 Ok\n550 5.7.1 <bad@example.net>: Relay access denied");
	ck_assert_uint_eq(f->nseen, 1);
	ck_assert_int_eq(f->seen_phase[0], HOOK_RCPT);
	/* 452 4.5.3 does not count: twelve of them end nothing. */
	for (int i = 0; i < 12; i++)
		fake_send(f, "RCPT TO:<many@example.net>\r\n");
	const char *r = fake_replies(f);
	ck_assert_msg(!strstr(r, "421"), "%s", r);
	ck_assert(!f->closed);
	/* Errors do: the 550 was one, the tenth closes. */
	for (int i = 0; i < 8; i++)
		fake_send(f, "BOGUS\r\n");
	ck_assert(!f->closed);
	fake_send(f, "BOGUS\r\n");
	r = fake_replies(f);
	ck_assert_msg(strstr(r, "421 4.7.0 mx.test Error: too many errors"), "%s", r);
	ck_assert(f->closed);
	fake_free(f);
}
END_TEST

START_TEST(test_pending_check_holds_the_pipeline)
{
	struct fake *f = logged_in();
	fake_rule(f, (struct fake_rule){ .phase = HOOK_MAIL, .pending = true });
	fake_send(f, "MAIL FROM:<alice@mx.test>\r\nRCPT TO:<b@example.net>\r\nNOOP\r\n");
	expect(f, "");
	ck_assert(!f->reading);
	fake_wake(f);
	expect(f, "250 2.1.0 Ok\n250 2.1.5 Ok\n250 2.0.0 Ok");
	ck_assert(f->reading);
	/* A wake for a session that waits for nothing changes nothing. */
	fake_wake(f);
	expect(f, "");
	fake_free(f);
}
END_TEST

START_TEST(test_pending_refusal)
{
	struct fake *f = logged_in();
	fake_rule(f, (struct fake_rule){ .phase = HOOK_MAIL, .pending = true, .code = 554,
	                                 .enh = "5.7.1", .rule = "dnsbl", .text = "listed" });
	fake_send(f, "MAIL FROM:<alice@mx.test>\r\nRCPT TO:<b@example.net>\r\n");
	expect(f, "");
	fake_wake(f);
	expect(f, "554 5.7.1 listed\n503 5.5.1 Error: need MAIL command");
	fake_free(f);
}
END_TEST

START_TEST(test_content_refusals)
{
	static const struct {
		const char *body;
		const char *reply;
	} cases[] = {
		{ "a\nb\r\n.\r\n", "554 5.6.0 Message contains bare CR or LF (RFC 5321 2.3.8)" },
		{ "a\r\n\0.\r\n.\r\n", "554 5.6.0 Message contains NUL (RFC 2045 2.7; BINARYMIME is not offered)" },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct fake *f = logged_in();
		fake_send(f, "MAIL FROM:<alice@mx.test>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
		fake_complete(f);
		fake_replies(f);
		size_t n = strlen(cases[i].body);
		if (i == 1)
			n = 10;
		fake_sendn(f, cases[i].body, n);
		expect(f, cases[i].reply);
		ck_assert_uint_eq(f->files_aborted, 1);
		ck_assert_uint_eq(f->files_committed, 0);
		fake_send(f, "NOOP\r\n");
		expect(f, "250 2.0.0 Ok");
		fake_free(f);
	}
}
END_TEST

START_TEST(test_eom_refusal)
{
	struct fake *f = logged_in();
	fake_rule(f, (struct fake_rule){ .phase = HOOK_EOM, .code = 553, .enh = "5.7.1",
	                                 .rule = "header_from_mismatch", .text = "not yours" });
	fake_send(f, "MAIL FROM:<alice@mx.test>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
	fake_complete(f);
	fake_replies(f);
	fake_send(f, "From: ceo@bank.example\r\n\r\nx\r\n.\r\n");
	expect(f, "553 5.7.1 not yours");
	ck_assert_uint_eq(f->files_committed, 0);
	ck_assert_uint_eq(f->files_aborted, 1);
	fake_free(f);
}
END_TEST

START_TEST(test_bdat)
{
	struct fake *f = logged_in();
	fake_send(f, "MAIL FROM:<alice@mx.test>\r\nRCPT TO:<b@example.net>\r\nBDAT 6\r\nSubj: ");
	expect(f, "");
	fake_complete(f);
	expect(f, "250 2.1.0 Ok\n250 2.1.5 Ok\n250 2.0.0 6 octets received");
	fake_send(f, "BDAT 7 LAST\r\nx\r\n\r\nhi");
	fake_complete(f);
	const char *r = fake_replies(f);
	ck_assert_msg(strncmp(r, "250 2.0.0 Ok: queued as ", 24) == 0, "%s", r);
	ck_assert_str_eq(f->message.data, "Subj: x\r\n\r\nhi");
	/* A bare LF in a chunk: refused, and the rest of the chunk skipped. */
	fake_send(f, "MAIL FROM:<alice@mx.test>\r\nRCPT TO:<b@example.net>\r\nBDAT 4 LAST\r\n");
	fake_complete(f);
	fake_replies(f);
	fake_send(f, "a\nb\n");
	expect(f, "554 5.6.0 Message contains bare CR or LF (RFC 5321 2.3.8)");
	fake_send(f, "BDAT 2\r\nxy");
	expect(f, "503 5.5.1 Error: a previous chunk failed; send RSET");
	fake_send(f, "RSET\r\nNOOP\r\n");
	expect(f, "250 2.0.0 Ok\n250 2.0.0 Ok");
	/* BDAT without MAIL: its chunk is read and dropped. */
	fake_send(f, "BDAT 6\r\nQUIT\r\nNOOP\r\n");
	expect(f, "503 5.5.1 Error: need MAIL command\n250 2.0.0 Ok");
	fake_free(f);
}
END_TEST

START_TEST(test_queue_failures)
{
	struct fake *f = logged_in();
	f->queue_fail_open = true;
	fake_send(f, "MAIL FROM:<alice@mx.test>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
	fake_complete(f);
	expect(f, "250 2.1.0 Ok\n250 2.1.5 Ok\n451 4.3.0 Error: queue file write error");
	f->queue_fail_open = false;
	f->queue_fail_commit = true;
	fake_send(f, "DATA\r\n");
	fake_complete(f);
	fake_replies(f);
	fake_send(f, "x\r\n.\r\n");
	fake_complete(f);
	expect(f, "451 4.3.0 Error: queue file write error");
	ck_assert_uint_eq(f->nseen, 1);
	ck_assert_str_eq(f->seen[0].rule, "queue_error");
	fake_free(f);
}
END_TEST

START_TEST(test_engine_refusals)
{
	struct fake *f = logged_in();
	f->cfg.max_errors = 100;
	static const struct {
		const char *cmd, *reply;
	} cases[] = {
		{ "RCPT TO:<a@b.example>", "503 5.5.1 Error: need MAIL command" },
		{ "DATA", "503 5.5.1 Error: need MAIL command" },
		{ "MAIL FROM:<alice@mx.test> SIZE=20000", "552 5.3.4 Message size exceeds fixed maximum message size" },
		{ "MAIL FROM:<alice@mx.test> RET=FULL", "555 5.5.4 RET parameter not supported" },
		{ "MAIL FROM:<alice@mx.test> BODY=BINARYMIME", "555 5.5.4 BODY=BINARYMIME not supported" },
		{ "MAIL FROM:<bad", "501 5.1.7 Bad address syntax" },
		{ "MAIL FROM:<alice@mx.test>", "250 2.1.0 Ok" },
		{ "MAIL FROM:<alice@mx.test>", "503 5.5.1 Error: nested MAIL command" },
		{ "RCPT TO:<a@b.example> NOTIFY=NEVER", "555 5.5.4 NOTIFY parameter not supported" },
		{ "DATA", "554 5.5.1 Error: no valid recipients" },
		{ "EXPN x", "502 5.5.1 EXPN not supported" },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char line[256];
		snprintf(line, sizeof(line), "%s\r\n", cases[i].cmd);
		fake_send(f, line);
		expect(f, cases[i].reply);
	}
	ck_assert_uint_eq(f->nseen, 1);
	ck_assert_str_eq(f->seen[0].rule, "max_size");
	fake_free(f);
}
END_TEST

START_TEST(test_timeouts_and_lifetime)
{
	struct fake *f = submission_ready();
	ck_assert_uint_eq(f->timer_ms, 300 * 1000);
	fake_timer(f);
	expect(f, "421 4.4.2 mx.test Error: timeout exceeded");
	ck_assert(f->closed);
	fake_free(f);
	/* Busy, but past its lifetime: the timer fires at once. */
	f = submission_ready();
	f->now += 3600 * 1000;
	fake_send(f, "NOOP\r\n");
	expect(f, "250 2.0.0 Ok");
	ck_assert_uint_eq(f->timer_ms, 0);
	fake_timer(f);
	expect(f, "421 4.4.2 mx.test Error: connection open too long");
	fake_free(f);
}
END_TEST

START_TEST(test_shutdown)
{
	struct fake *f = logged_in();
	fake_send(f, "MAIL FROM:<alice@mx.test>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
	fake_complete(f);
	fake_replies(f);
	smtp_session_shutdown(f->s);   /* a message in flight finishes */
	ck_assert(!f->closed);
	fake_send(f, "x\r\n.\r\n");
	fake_complete(f);
	const char *r = fake_replies(f);
	ck_assert_msg(strstr(r, "250 2.0.0 Ok: queued as ") && strstr(r, "421 4.3.2"), "%s", r);
	ck_assert(f->closed);
	fake_free(f);
	f = submission_ready();
	smtp_session_shutdown(f->s);
	expect(f, "421 4.3.2 mx.test Service shutting down");
	ck_assert(f->closed);
	fake_free(f);
}
END_TEST

START_TEST(test_stale_answers_dropped)
{
	struct fake *f = logged_in();
	fake_send(f, "MAIL FROM:<alice@mx.test>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
	ck_assert_uint_eq(f->npending, 1);
	struct fake_pending p = f->pending[0];
	struct smtp_done d = { .kind = SMTP_DONE_QUEUE_OPEN, .file = &f->message };
	/* Another wait's number, another kind: not taken. */
	ck_assert(!smtp_session_complete(f->s, p.tok.seq + 1, &d));
	d.kind = SMTP_DONE_QUEUE_COMMIT;
	ck_assert(!smtp_session_complete(f->s, p.tok.seq, &d));
	expect(f, "");
	ck_assert(fake_complete(f));
	const char *r = fake_replies(f);
	ck_assert_msg(strstr(r, "354 "), "%s", r);
	fake_free(f);
}
END_TEST

START_TEST(test_smtps_refused_at_connect)
{
	struct fake *f = fake_new(HOOK_MODE_SMTPS);
	fake_rule(f, (struct fake_rule){ .phase = HOOK_CONNECT, .code = 421, .enh = "4.7.0",
	                                 .rule = "max_connections_per_ip", .text = "Too many" });
	fake_start(f);
	/* No plaintext: the refusal is counted now, sent inside TLS. */
	expect(f, "");
	ck_assert_int_eq(f->tls_started, 2);
	ck_assert_uint_eq(f->nseen, 1);
	fake_tls(f);
	expect(f, "421 4.7.0 mx.test Too many");
	ck_assert(f->closed);
	fake_free(f);
	/* Too many such handshakes at once: closed without a word. */
	f = fake_new(HOOK_MODE_SMTPS);
	f->tls_refuse = true;
	fake_rule(f, (struct fake_rule){ .phase = HOOK_CONNECT, .code = 421, .enh = "4.7.0",
	                                 .rule = "max_connections_per_ip", .text = "Too many" });
	fake_start(f);
	expect(f, "");
	ck_assert(f->closed);
	fake_free(f);
}
END_TEST

START_TEST(test_line_errors)
{
	struct fake *f = submission_ready();
	fake_send(f, "NOOP\n");
	expect(f, "500 5.5.2 Error: bare CR or LF received (RFC 5321 2.3.8)");
	char longline[600];
	memset(longline, 'a', sizeof(longline));
	memcpy(longline, "NOOP ", 5);
	fake_sendn(f, longline, sizeof(longline));
	expect(f, "500 5.5.2 Error: line too long");
	fake_send(f, "\r\nNOOP\r\n");
	expect(f, "250 2.0.0 Ok");
	fake_free(f);
}
END_TEST

int main(void)
{
	log_open("test_smtp", false, LOG_LEVEL_ERR);
	Suite *s = suite_create("smtp");
	TCase *tc = tcase_create("dialogues");
	tcase_add_test(tc, test_whole_submission);
	tcase_add_test(tc, test_starttls_drops_pipelined_plaintext);
	tcase_add_test(tc, test_auth_paths);
	tcase_add_test(tc, test_auth_on_mx_and_before_tls);
	tcase_add_test(tc, test_hook_refusals_and_error_limit);
	tcase_add_test(tc, test_pending_check_holds_the_pipeline);
	tcase_add_test(tc, test_pending_refusal);
	tcase_add_test(tc, test_content_refusals);
	tcase_add_test(tc, test_eom_refusal);
	tcase_add_test(tc, test_bdat);
	tcase_add_test(tc, test_queue_failures);
	tcase_add_test(tc, test_engine_refusals);
	tcase_add_test(tc, test_timeouts_and_lifetime);
	tcase_add_test(tc, test_shutdown);
	tcase_add_test(tc, test_stale_answers_dropped);
	tcase_add_test(tc, test_smtps_refused_at_connect);
	tcase_add_test(tc, test_line_errors);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
