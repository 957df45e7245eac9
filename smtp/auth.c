/*
 * auth.c - the SMTP AUTH command (RFC 4954): when it is allowed, the 334
 * challenge/response dialogue, 235/535/454 replies. The SASL work is a
 * service (struct smtp_auth_ops, server/ runs it off the loop); the
 * guard against guessing is a hook: HOOK_AUTH runs before the exchange
 * (an address locked out), and again with the name once the credentials
 * are judged (a locked account stays locked, right password or not; a
 * failure is counted and its 535 delayed).
 *
 * While a step runs elsewhere the SASL object goes with it and comes back
 * in the answer: the session holds it only between steps. AUTH data is a
 * password in base64: the engine keeps no copy (the service copies what
 * it needs and wipes it; the reader wipes its buffer).
 */
#include "smtp/smtp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 4954 4: a client response line may be 12288 octets. */
#define AUTH_LINE_MAX 12288

static void end_exchange(struct smtp_session *s)
{
	if (s->auth) {
		s->cfg->auth->free(s->cfg->auth_ctx, s->auth);
		s->auth = NULL;
	}
	s->reader.max_line = s->cfg->max_command_line;
	if (s->state == SMTP_S_AUTH_INPUT || s->state == SMTP_S_WAIT)
		smtp__enter(s, SMTP_S_COMMAND);
}

int smtp__check_auth(struct smtp_session *s, const struct smtp_cmd *cmd, enum smtp_reply_id *id)
{
	if (s->cfg->mode == HOOK_MODE_MX || !s->cfg->auth)
		*id = SMTP_R_AUTH_NOT_ENABLED;
	else if (!smtp__tls_active(s))
		*id = SMTP_R_AUTH_NEEDS_TLS;
	else if (s->account)
		*id = SMTP_R_AUTH_ALREADY;
	else if (s->tx.active)
		*id = SMTP_R_AUTH_IN_TRANSACTION;
	else
		return 0;
	return -1;
}

static void dispatch(struct smtp_session *s, const char *mech, const char *input)
{
	struct smtp_auth_answer ans;
	memset(&ans, 0, sizeof(ans));
	void *a = s->auth;
	s->auth = NULL;
	struct smtp_token tok = { .route = s->route, .sid = s->id, .seq = s->seq + 1 };
	if (s->cfg->auth->step(s->cfg->auth_ctx, a, mech, input, tok, &ans)) {
		ans.auth = a;
		smtp__auth_done(s, &ans);
		return;
	}
	/* Taken by the work; the answer brings it back. */
	smtp__wait(s, SMTP_W_AUTH);
}

static void set_names(struct smtp_session *s, const char *attempted, const char *typed)
{
	free(s->auth_attempted);
	free(s->auth_typed);
	s->auth_attempted = str_dup(attempted);
	s->auth_typed = str_dup(typed);
}

void smtp__proceed_auth(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	if (!s->auth) {
		s->auth = s->cfg->auth->open(s->cfg->auth_ctx, s->peer.local_ip, s->peer.local_port,
		                             s->peer.client_ip, s->peer.client_port,
		                             s->tls ? (unsigned)s->tls->bits : 0);
		if (!s->auth) {
			smtp__error(s, HOOK_NPHASES, SMTP_R_AUTH_TEMPFAIL, NULL);
			return;
		}
	}
	if (!s->cfg->auth->offered(s->cfg->auth_ctx, s->auth, cmd->mech)) {
		smtp__error(s, HOOK_NPHASES, SMTP_R_AUTH_MECH, NULL);
		return;
	}
	free(s->auth_mech);
	s->auth_mech = str_dup(cmd->mech);
	set_names(s, NULL, NULL);
	dispatch(s, cmd->mech, cmd->initial);
}

void smtp__auth_abort(struct smtp_session *s)
{
	end_exchange(s);
}

void smtp__auth_line(struct smtp_session *s, char *line, size_t len)
{
	if (strcmp(line, "*") == 0) {
		end_exchange(s);
		smtp__error(s, HOOK_NPHASES, SMTP_R_AUTH_CANCELLED, NULL);
		return;
	}
	dispatch(s, NULL, line);
	explicit_bzero(line, len);
}

/* ---- the answer ------------------------------------------------------------------------- */


static void accepted_checked(struct smtp_session *s, const struct hook_verdict *v)
{
	s->auth_outcome = 0;
	if (v->result != HOOK_OK) {
		log_warn("event=auth sid=%s client=%s user=%s result=locked rule=%s", s->sid,
		         s->peer.client_ip, log_q(s->auth_typed ? s->auth_typed : s->auth_attempted),
		         v->rule ? v->rule : "-");
		free(s->account);
		s->account = NULL;
		end_exchange(s);
		smtp__refuse(s, HOOK_AUTH, v);
		return;
	}
	/* The one name of the account, whichever way it was spelled: the
	 * sender map, rate limits, trace store and logs all key on it. */
	s->account = str_dup(s->auth_attempted);
	log_info("event=auth sid=%s client=%s mech=%s user=%s result=ok%s", s->sid,
	         s->peer.client_ip, s->auth_mech ? s->auth_mech : "-", log_q(s->account),
	         s->auth_cached ? " cache=hit" : "");
	smtp__enter(s, SMTP_S_COMMAND);
	smtp__observe_ok(s, HOOK_AUTH, s->account);
	smtp__send(s, 235, "2.7.0", "Authentication successful");
}

static void refused_checked(struct smtp_session *s, const struct hook_verdict *v)
{
	s->auth_outcome = 0;
	if (v->result != HOOK_OK && !(v->rule && strcmp(v->rule, "auth_failed") == 0)) {
		/* A lockout answers now. */
		log_warn("event=auth sid=%s client=%s user=%s result=locked rule=%s", s->sid,
		         s->peer.client_ip, log_q(s->auth_typed), v->rule ? v->rule : "-");
		smtp__refuse(s, HOOK_AUTH, v);
		return;
	}
	/* The failure reply waits (so that guessing passwords is slow), and
	 * says nothing the refusal did not. */
	struct hook_verdict fail;
	if (v->result == HOOK_OK) {
		const struct smtp_reply_def *d = smtp_reply_def(SMTP_R_AUTH_FAILED);
		memset(&fail, 0, sizeof(fail));
		hook_verdict_set(&fail, d->code, d->enh, d->rule, "%s", d->text);
		v = &fail;
	}
	s->refusal = *v;
	struct hook_view view;
	smtp__view(s, HOOK_AUTH, s->auth_attempted, &view);
	hook_session_observe(s->hooks, HOOK_AUTH, &view, v);
	smtp__wait(s, SMTP_W_AUTH_DELAY);
	s->io->set_timer(s->c, v->delay_ms);
}

void smtp__auth_delay_done(struct smtp_session *s)
{
	/* Sent as the verdict said, and counted as an error; not observed
	 * again (that was done when the failure was judged). */
	struct hook_verdict v = s->refusal;
	smtp__enter(s, SMTP_S_COMMAND);
	smtp__wait_client(s, smtp__idle_timeout(s));
	smtp__send(s, v.code, v.enh, "%s", v.text);
	log_info("event=reject sid=%s client=%s code=%d enh=%s rule=%s reason=%s", s->sid,
	         s->peer.client_ip, v.code, v.enh ? v.enh : "-", v.rule ? v.rule : "-",
	         log_q(v.text));
	if (++s->errors >= s->cfg->max_errors) {
		const struct smtp_reply_def *d = smtp_reply_def(SMTP_R_TOO_MANY_ERRORS);
		smtp__send(s, d->code, d->enh, d->text, s->cfg->hostname);
		smtp__close(s, true);
	}
}

void smtp__auth_done(struct smtp_session *s, const struct smtp_auth_answer *a)
{
	s->auth = a->auth;
	switch (a->result) {
	case SMTP_AUTH_OK:
		set_names(s, a->account, a->typed);
		free(s->auth_mech);
		s->auth_mech = str_dup(a->mech);
		s->auth_cached = a->cached;
		end_exchange(s);
		s->auth_outcome = 1;
		smtp__phase(s, HOOK_AUTH, s->auth_attempted, accepted_checked);
		break;
	case SMTP_AUTH_CONTINUE:
		smtp__enter(s, SMTP_S_AUTH_INPUT);
		s->reader.max_line = AUTH_LINE_MAX;
		smtp__send(s, 334, NULL, "%s", a->challenge ? a->challenge : "");
		break;
	case SMTP_AUTH_TEMPFAIL:
		log_warn("event=auth sid=%s client=%s result=tempfail reason=%s", s->sid,
		         s->peer.client_ip, log_q(a->error));
		end_exchange(s);
		smtp__error(s, HOOK_NPHASES, SMTP_R_AUTH_TEMPFAIL, NULL);
		break;
	case SMTP_AUTH_MALFORMED:
		end_exchange(s);
		smtp__error(s, HOOK_NPHASES, SMTP_R_AUTH_MALFORMED, NULL);
		break;
	default:
		set_names(s, a->attempted, a->typed);
		/* This line is what fail2ban matches (etc/fail2ban): keep its
		 * shape. Everything the client chose comes after client=. */
		log_info("event=auth sid=%s client=%s mech=%s user=%s result=fail reason=%s", s->sid,
		         s->peer.client_ip, a->mech ? a->mech : "-", log_q(a->typed), log_q(a->error));
		/* A fresh SASL object for the next attempt. */
		end_exchange(s);
		s->auth_outcome = -1;
		smtp__phase(s, HOOK_AUTH, s->auth_attempted, refused_checked);
		break;
	}
}
