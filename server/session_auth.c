/*
 * session_auth.c - the SMTP AUTH command (RFC 4954): checks, the 334
 * challenge/response dialogue, 235/535/454 replies. The SASL work itself
 * (auth/) runs on the libuv thread pool because password backends block;
 * its completion finds the session by id and, if the session is gone,
 * frees the SASL object it was given.
 *
 * AUTH data is a password in base64: every copy made here (the work's
 * input and challenge) is wiped when it is freed, on every path, and so
 * is the client's line in the reader's buffer once it has been handed on.
 */
#include "server/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* RFC 4954 4: a client response line may be 12288 octets. */
#define AUTH_LINE_MAX 12288

struct auth_work {
	uv_work_t req;
	struct worker *w;
	uint64_t sid;
	struct auth_session *auth;  /* borrowed from the session while in flight */
	char *mech;                 /* set for the first step only */
	char *input;                /* base64 text, "=" or NULL */
	struct buf challenge;
	int result;
};

static void auth_work_run(uv_work_t *req)
{
	struct auth_work *aw = req->data;
	if (aw->mech)
		aw->result = auth_start(aw->auth, aw->mech, aw->input, &aw->challenge);
	else
		aw->result = auth_step(aw->auth, aw->input, &aw->challenge);
}

static void wipe_str(char *p)
{
	if (p)
		explicit_bzero(p, strlen(p));
}

static void auth_work_free(struct auth_work *aw)
{
	free(aw->mech);
	wipe_str(aw->input);
	free(aw->input);
	if (aw->challenge.data)
		explicit_bzero(aw->challenge.data, aw->challenge.cap);
	buf_free(&aw->challenge);
	free(aw);
}

/* Refuses an exchange for a locked (address, account) pair or address.
 * account (the one name of the account, auth_account_name) and typed
 * (the name as the client spelled it) are NULL before the client said
 * who it is. */
static bool session_auth_refused(struct session *s, const char *account, const char *typed)
{
	struct policy_verdict v;
	policy_auth_check(s->w->d->pstate->guard, session_policy(s), s->client_ip, account, typed,
	                  session_now(), &v);
	if (v.code == 0)
		return false;
	log_warn("event=auth sid=%s client=%s user=%s result=locked rule=%s", s->sid, s->client_ip,
	         log_q(typed ? typed : account), v.rule);
	session_trace_reject(s, "AUTH", v.rule, v.code, v.enh, v.text, NULL);
	session_error(s, v.code, v.enh, "%s", v.text);
	if (v.code == 421)
		session_close(s, true);
	return true;
}

static bool session_auth_locked(struct session *s, const char *account, const char *typed)
{
	if (!session_auth_refused(s, account, typed))
		return false;
	auth_session_free(s->auth);
	s->auth = NULL;
	if (s->state != SS_CLOSING && !s->close_after_flush)
		s->state = SS_COMMAND;
	return true;
}

/* challenge: the 334 text for AUTH_CONTINUE, else unused. */
static void session_auth_result(struct session *s, int result, const char *challenge)
{
	const char *user, *typed;
	switch (result) {
	case AUTH_OK:
		/* A locked account stays locked, right password or not, and under
		 * any spelling: otherwise the lockout would still let an attacker
		 * test guesses. */
		typed = auth_attempted_user(s->auth);
		if (session_auth_locked(s, auth_username(s->auth), typed))
			break;
		policy_auth_succeeded(s->w->d->pstate->guard, s->client_ip, auth_username(s->auth),
		                      typed);
		/* The one name of the account, whichever way it was spelled: the
		 * sender map, rate limits, trace store and logs all key on it. */
		s->account = str_dup(auth_username(s->auth));
		s->auth_mech = str_dup(auth_mech(s->auth));
		log_info("event=auth sid=%s client=%s mech=%s user=%s result=ok%s", s->sid,
		         s->client_ip, s->auth_mech, log_q(s->account),
		         auth_cached(s->auth) ? " cache=hit" : "");
		s->state = SS_COMMAND;
		session_send(s, 235, "2.7.0", "Authentication successful");
		break;
	case AUTH_CONTINUE:
		s->state = SS_AUTH_INPUT;
		s->reader.max_line = AUTH_LINE_MAX;
		session_send(s, 334, NULL, "%s", challenge ? challenge : "");
		break;
	case AUTH_TEMPFAIL:
		s->state = SS_COMMAND;
		user = auth_error(s->auth);
		log_warn("event=auth sid=%s client=%s result=tempfail reason=%s", s->sid,
		         s->client_ip, log_q(user));
		session_error(s, 454, "4.7.0", "Temporary authentication failure");
		break;
	default: {
		const char *why = auth_error(s->auth);
		if (auth_malformed(s->auth)) {
			/* RFC 4954 4: an undecodable response is a syntax error. */
			auth_session_free(s->auth);
			s->auth = NULL;
			s->state = SS_COMMAND;
			session_error(s, 501, "5.5.2", "Cannot decode the response");
			break;
		}
		/* Counted for the account the name would be, had Cyrus taken it
		 * (the same rule), and for the name as typed. */
		user = auth_attempted_account(s->auth);
		typed = auth_attempted_user(s->auth);
		if (user && session_auth_locked(s, user, typed))
			break;
		struct trace_reject tr = {
			.time = time(NULL), .sid = s->sid, .listener = s->l->conf->name,
			.client_ip = s->client_ip, .helo = s->helo, .account = user, .command = "AUTH",
			.rule = "auth_failed", .code = 535, .enh = "5.7.8", .text = why,
		};
		if (s->w->d->trace)
			trace_store_reject(s->w->d->trace, &tr);
		/* This line is what fail2ban matches (etc/fail2ban): keep its
		 * shape. Everything the client chose comes after client=. */
		log_info("event=auth sid=%s client=%s mech=%s user=%s result=fail reason=%s",
		         s->sid, s->client_ip, auth_mech(s->auth) ? auth_mech(s->auth) : "-",
		         log_q(typed), log_q(why));
		/* The delay grows with the failures of this (address, account). */
		s->auth_delay_ms = policy_auth_failed(s->w->d->pstate->guard, session_policy(s),
		                                      s->client_ip, user ? user : "", typed,
		                                      session_now());
		/* A fresh SASL object for the next attempt. */
		auth_session_free(s->auth);
		s->auth = NULL;
		s->state = SS_AUTH_DELAY;
		break;
	}
	}
	if (s->state != SS_AUTH_INPUT)
		s->reader.max_line = s->w->d->conf->max_command_line;
}

static void auth_delay_done(uv_timer_t *t)
{
	struct session *s = t->data;
	if (s->close_after_flush || s->state != SS_AUTH_DELAY)
		return;
	s->state = SS_COMMAND;
	session_error(s, 535, "5.7.8", "Authentication credentials invalid");
	session_wait_client(s, session_idle_timeout(s));
	session_resume(s);
	session_process(s);
	session_flush(s);
}

static void auth_work_done(uv_work_t *req, int status)
{
	struct auth_work *aw = req->data;
	struct session *s = worker_find_session(aw->w, aw->sid);
	if (!s) {
		auth_session_free(aw->auth);
		auth_work_free(aw);
		return;
	}
	s->auth_inflight = false;
	if (status == UV_ECANCELED)
		aw->result = AUTH_TEMPFAIL;
	session_auth_result(s, aw->result, aw->challenge.data);
	auth_work_free(aw);
	if (s->state == SS_AUTH_DELAY) {
		/* The failure reply waits, so that guessing passwords is slow. */
		uv_timer_start(&s->timer, auth_delay_done, s->auth_delay_ms, 0);
		session_flush(s);
		return;
	}
	session_wait_client(s, session_idle_timeout(s));
	session_resume(s);
	session_process(s);
	session_flush(s);
}

static void session_auth_dispatch(struct session *s, const char *mech, const char *input)
{
	/* A login seen before, with the sasldb unchanged, is answered here:
	 * no worker, no Berkeley DB. Anything else goes to Cyrus. */
	if (mech ? auth_start_cached(s->auth, mech, input) : auth_step_cached(s->auth, input)) {
		session_auth_result(s, AUTH_OK, NULL);
		return;
	}
	struct auth_work *aw = xcalloc(1, sizeof(*aw));
	aw->req.data = aw;
	aw->w = s->w;
	aw->sid = s->id;
	aw->auth = s->auth;
	aw->mech = str_dup(mech);
	aw->input = str_dup(input);
	buf_init(&aw->challenge);
	s->state = SS_AUTH_WAIT;
	s->auth_inflight = true;
	session_pause(s);
	if (uv_queue_work(&s->w->loop, &aw->req, auth_work_run, auth_work_done) < 0) {
		s->auth_inflight = false;
		auth_work_free(aw);
		s->state = SS_COMMAND;
		session_error(s, 454, "4.7.0", "Temporary authentication failure");
		session_resume(s);
	}
}

static void session_ipport(char *out, size_t len, const char *ip, unsigned port)
{
	snprintf(out, len, "%s;%u", ip, port);
}

static void session_auth_begin(struct session *s, struct smtp_cmd *cmd)
{
	if (s->l->conf->mode == CONF_MODE_MX) {
		session_error(s, 503, "5.5.1", "Error: authentication not enabled");
		return;
	}
	if (!s->tls || !s->tls_ready) {
		session_error(s, 538, "5.7.11", "Encryption required for requested authentication mechanism");
		return;
	}
	if (s->account) {
		session_error(s, 503, "5.5.1", "Error: already authenticated");
		return;
	}
	if (s->tx.active) {
		session_error(s, 503, "5.5.1", "Error: AUTH not permitted during a mail transaction");
		return;
	}
	if (!s->auth) {
		char local[96], remote[96];
		session_ipport(local, sizeof(local), s->local_ip, s->local_port);
		session_ipport(remote, sizeof(remote), s->client_ip, s->client_port);
		s->auth = auth_session_new(s->w->d->conf->hostname, local, remote,
		                           (unsigned)tls_cipher_bits(s->tls), NULL);
		if (!s->auth) {
			session_error(s, 454, "4.7.0", "Temporary authentication failure");
			return;
		}
	}
	if (!auth_mech_offered(s->auth, cmd->mech)) {
		session_error(s, 504, "5.5.4", "Unrecognized authentication type");
		return;
	}
	if (session_auth_refused(s, NULL, NULL))
		return;
	session_auth_dispatch(s, cmd->mech, cmd->initial);
}

void session_cmd_auth(struct session *s, struct smtp_cmd *cmd)
{
	session_auth_begin(s, cmd);
	/* Refused or handed on (copied for the worker, or answered from the
	 * cache): the initial response is no longer needed where it came in. */
	wipe_str(cmd->initial);
}

void session_auth_abort(struct session *s)
{
	s->state = SS_COMMAND;
	s->reader.max_line = s->w->d->conf->max_command_line;
	auth_session_free(s->auth);
	s->auth = NULL;
}

void session_auth_input(struct session *s, char *line, size_t len)
{
	if (strcmp(line, "*") == 0) {
		session_auth_abort(s);
		session_error(s, 501, "5.0.0", "Authentication cancelled");
		return;
	}
	session_auth_dispatch(s, NULL, line);
	explicit_bzero(line, len);
}
