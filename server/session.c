/*
 * session.c - the SMTP state machine: greeting, the command table (one row
 * per verb: when it is allowed, then the step that does the work), EHLO,
 * MAIL, RCPT and the small verbs, STARTTLS, timeouts and shutdown. AUTH is
 * in session_auth.c, DATA/BDAT in session_data.c.
 *
 * Replies go through session_send()/session_error() only; they are
 * buffered and leave in one write per batch of pipelined commands.
 */
#include "server/session.h"
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CMD_NEED_HELO 0x1   /* refused before HELO/EHLO */

struct smtp_command {
	enum smtp_verb verb;
	unsigned flags;
	void (*proceed)(struct session *s, struct smtp_cmd *cmd);
};

static const struct conf *session_conf(const struct session *s)
{
	return s->w->d->conf;
}

double session_now(void)
{
	return (double)uv_hrtime() / 1e9;
}

void tx_reset(struct smtp_tx *tx)
{
	if (tx->spool)
		relay_spool_abort(tx->spool);
	free(tx->from);
	for (size_t i = 0; i < tx->nrcpts; i++)
		free(tx->rcpts[i]);
	free(tx->rcpts);
	free(tx->ret);
	free(tx->envid);
	buf_free(&tx->body);
	if (tx->scan)
		trace_scan_free(tx->scan);
	buf_free(&tx->scanned);
	buf_free(&tx->headers);
	memset(tx, 0, sizeof(*tx));
}

void session_free_state(struct session *s)
{
	tx_reset(&s->tx);
	free(s->helo);
	s->helo = NULL;
	free(s->account);
	s->account = NULL;
	free(s->auth_mech);
	s->auth_mech = NULL;
	free(s->client_name);
	s->client_name = NULL;
	free(s->dnsbl_zone);
	s->dnsbl_zone = NULL;
	free(s->dnsbl_txt);
	s->dnsbl_txt = NULL;
	/* A SASL step still running on a worker thread owns the session
	 * object; its completion frees it (session_auth.c). */
	if (s->auth && !s->auth_inflight)
		auth_session_free(s->auth);
	s->auth = NULL;
}

static void session_vreject(struct session *s, int code, const char *enh, const char *fmt,
                           va_list ap)
{
	char text[512];
	vsnprintf(text, sizeof(text), fmt, ap);
	session_send(s, code, enh, "%s", text);
	log_info("event=reject sid=%s client=%s code=%d enh=%s reason=%s", s->sid, s->client_ip,
	         code, enh ? enh : "-", log_q(text));
}

void session_reject(struct session *s, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	session_vreject(s, code, enh, fmt, ap);
	va_end(ap);
}

void session_error(struct session *s, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	session_vreject(s, code, enh, fmt, ap);
	va_end(ap);
	if (++s->errors >= session_conf(s)->max_errors) {
		session_send(s, 421, "4.7.0", "%s Error: too many errors", session_conf(s)->hostname);
		log_info("event=reject sid=%s client=%s code=421 rule=max_errors", s->sid, s->client_ip);
		session_close(s, true);
	}
}

void session_trace_reject(struct session *s, const char *command, const char *rule, int code,
                          const char *enh, const char *text, const char *rcpt)
{
	struct trace_store *ts = s->w->d->trace;
	if (!ts)
		return;
	struct trace_reject r = {
		.time = time(NULL), .sid = s->sid, .listener = s->l->conf->name,
		.client_ip = s->client_ip, .helo = s->helo, .account = s->account,
		.command = command, .mail_from = s->tx.active ? s->tx.from : NULL, .rcpt = rcpt,
		.rule = rule, .code = code, .enh = enh, .text = text,
	};
	trace_store_reject(ts, &r);
}

/* Under stress (Postfix's stress-adaptive timeouts): this loop's share of
 * max_connections is mostly in use, so clients that dawdle give way. */
static bool session_stressed(const struct session *s)
{
	const struct conf *c = session_conf(s);
	if (!c->stress_threshold || !c->max_connections)
		return false;
	uint64_t busy = (uint64_t)s->w->nsessions * s->w->d->nworkers * 100;
	return busy >= (uint64_t)c->max_connections * c->stress_threshold;
}

unsigned session_idle_timeout(const struct session *s)
{
	const struct conf *c = session_conf(s);
	return session_stressed(s) && c->stress_idle_timeout < c->idle_timeout
	               ? c->stress_idle_timeout : c->idle_timeout;
}

unsigned session_data_timeout(const struct session *s)
{
	const struct conf *c = session_conf(s);
	return session_stressed(s) && c->stress_data_timeout < c->data_timeout
	               ? c->stress_data_timeout : c->data_timeout;
}

static bool session_expired(const struct session *s)
{
	unsigned life = session_conf(s)->session_lifetime;
	return life && uv_now(s->tcp.loop) - s->started_ms >= (uint64_t)life * 1000;
}

void session_wait_client(struct session *s, unsigned seconds)
{
	uint64_t ms = (uint64_t)seconds * 1000;
	unsigned life = session_conf(s)->session_lifetime;
	if (life) {
		/* Past the lifetime the timer fires at once, however busy the
		 * client keeps us: session_timeout ends it. */
		uint64_t age = uv_now(s->tcp.loop) - s->started_ms;
		uint64_t left = age >= (uint64_t)life * 1000 ? 0 : (uint64_t)life * 1000 - age;
		if (left < ms)
			ms = left;
	}
	s->data_bytes = 0;
	session_set_timeout_ms(s, ms);
}

void session_greet(struct session *s)
{
	s->state = SS_COMMAND;
	session_send(s, 220, NULL, "%s ESMTP Postern", session_conf(s)->hostname);
	session_wait_client(s, session_idle_timeout(s));
}

void session_tls_ready(struct session *s)
{
	if (s->refusal_code) {
		/* Refused at connect (conn.c): the reply can be read now. */
		s->state = SS_CLOSING;
		session_send(s, s->refusal_code, s->refusal_enh, "%s %s", session_conf(s)->hostname,
		             s->refusal_text);
		session_close(s, true);
		return;
	}
	if (s->l->conf->mode == CONF_MODE_SMTPS) {
		session_greet(s);
		return;
	}
	/* RFC 3207 4.2: the client starts again with EHLO. */
	s->state = SS_COMMAND;
	session_wait_client(s, session_idle_timeout(s));
}

static bool session_tls_active(const struct session *s)
{
	return s->tls && s->tls_ready;
}

static bool session_offers_auth(const struct session *s)
{
	return s->l->conf->mode != CONF_MODE_MX && session_tls_active(s) && !s->account &&
	       s->w->d->auth_mechs[0] != '\0';
}

/* ---- the small verbs ---------------------------------------------------- */

static void session_set_helo(struct session *s, const char *domain, bool esmtp)
{
	free(s->helo);
	s->helo = str_dup(domain);
	s->esmtp = esmtp;
	tx_reset(&s->tx);
}

static void proceed_helo(struct session *s, struct smtp_cmd *cmd)
{
	session_set_helo(s, cmd->domain, false);
	session_send(s, 250, NULL, "%s", session_conf(s)->hostname);
}

static void proceed_ehlo(struct session *s, struct smtp_cmd *cmd)
{
	const struct conf *c = session_conf(s);
	struct buf b;
	buf_init(&b);
	session_set_helo(s, cmd->domain, true);
	buf_printf(&b, "%s\nPIPELINING\nSIZE %llu\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\nCHUNKING",
	           c->hostname, (unsigned long long)c->max_message_size);
	if (!s->tls && s->l->conf->mode != CONF_MODE_SMTPS)
		buf_puts(&b, "\nSTARTTLS");
	if (session_offers_auth(s))
		buf_printf(&b, "\nAUTH %s", s->w->d->auth_mechs);
	session_send(s, 250, NULL, "%s", b.data);
	buf_free(&b);
}

static void proceed_rset(struct session *s, struct smtp_cmd *cmd)
{
	tx_reset(&s->tx);
	session_send(s, 250, "2.0.0", "Ok");
}

static void proceed_noop(struct session *s, struct smtp_cmd *cmd)
{
	session_send(s, 250, "2.0.0", "Ok");
}

static void proceed_quit(struct session *s, struct smtp_cmd *cmd)
{
	session_send(s, 221, "2.0.0", "Bye");
	session_close(s, true);
}

static void proceed_vrfy(struct session *s, struct smtp_cmd *cmd)
{
	/* RFC 5321 3.5.3: 252 when we will not verify but will try delivery. */
	session_send(s, 252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

static void proceed_expn(struct session *s, struct smtp_cmd *cmd)
{
	session_error(s, 502, "5.5.1", "EXPN not supported");
}

static void proceed_help(struct session *s, struct smtp_cmd *cmd)
{
	session_send(s, 214, "2.0.0", "Postern: see RFC 5321 and https://www.rfc-editor.org/rfc/rfc5321");
}

static void proceed_starttls(struct session *s, struct smtp_cmd *cmd)
{
	if (s->tls) {
		session_error(s, 503, "5.5.1", "TLS already active");
		return;
	}
	if (s->l->conf->mode == CONF_MODE_SMTPS) {
		session_error(s, 502, "5.5.1", "STARTTLS not available");
		return;
	}
	session_send(s, 220, "2.0.0", "Ready to start TLS");
	session_flush(s);
	if (uv_is_closing((uv_handle_t *)&s->tcp))
		return;   /* the peer went away while we wrote */
	/* CVE-2011-0411: anything pipelined after STARTTLS arrived in
	 * plaintext and must not be taken as if it came over TLS. */
	if (smtp_reader_pending(&s->reader)) {
		log_info("event=starttls_injection sid=%s client=%s discarded=%zu", s->sid,
		         s->client_ip, smtp_reader_pending(&s->reader));
		smtp_reader_discard(&s->reader);
	}
	/* RFC 3207 4.2: forget everything learnt before TLS. */
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	tx_reset(&s->tx);
	if (session_start_tls(s) < 0) {
		log_err("event=tls_error sid=%s error=\"cannot create TLS engine\"", s->sid);
		session_close(s, false);
	}
}

/* ---- MAIL and RCPT ------------------------------------------------------ */

static void session_policy_view(const struct session *s, struct policy_session *ps)
{
	ps->tls = session_tls_active(s);
	ps->authenticated = s->account != NULL;
	ps->account = s->account;
	ps->client_ip = s->client_ip;
}

static void proceed_mail(struct session *s, struct smtp_cmd *cmd)
{
	const struct conf *c = session_conf(s);
	struct policy_session ps;
	struct policy_verdict v;
	if (s->tx.active) {
		session_error(s, 503, "5.5.1", "Error: nested MAIL command");
		return;
	}
	if (cmd->ret || cmd->envid) {
		/* DSN (RFC 3461) is not advertised: its parameters are unknown to
		 * this server (RFC 5321 4.1.1.11), and RET=FULL would have a bounce
		 * carry a whole message back to a sender nobody checked. */
		session_error(s, 555, "5.5.4", "%s parameter not supported", cmd->ret ? "RET" : "ENVID");
		return;
	}
	if (session_dnsbl_refuse(s))
		return;
	session_policy_view(s, &ps);
	const struct policy_conf *pc = session_policy(s);
	policy_check_mail(pc, &ps, cmd->path, &v);
	if (v.code == 0 && v.rule) /* accepted by an exception: say which */
		log_info("event=policy sid=%s client=%s rule=%s", s->sid, s->client_ip, v.rule);
	if (v.code == 0)
		policy_check_rate_message(pc, s->w->d->pstate, &ps, session_now(), &v);
	if (v.code) {
		session_trace_reject(s, "MAIL", v.rule, v.code, v.enh, v.text, NULL);
		session_error(s, v.code, v.enh, "%s", v.text);
		return;
	}
	if (cmd->has_size && cmd->size > c->max_message_size) {
		static const char text[] = "Message size exceeds fixed maximum message size";
		session_trace_reject(s, "MAIL", "max_size", 552, "5.3.4", text, NULL);
		session_error(s, 552, "5.3.4", "%s", text);
		return;
	}
	if (cmd->body == SMTP_BODY_BINARYMIME) {
		/* Not advertised: an unrecognised parameter value (RFC 3030 3). */
		session_error(s, 555, "5.5.4", "BODY=BINARYMIME not supported");
		return;
	}
	struct smtp_tx *tx = &s->tx;
	tx_reset(tx); /* a refused BDAT may have left marks */
	tx->active = true;
	id_queue(tx->qid);
	tx->from = str_dup(cmd->path);
	tx->smtputf8 = cmd->smtputf8;
	tx->eightbit = cmd->body == SMTP_BODY_8BITMIME;
	tx->ret = str_dup(cmd->ret);
	tx->envid = str_dup(cmd->envid);
	log_info("event=mail sid=%s qid=%s from=%s size=%llu", s->sid, tx->qid, log_q(tx->from),
	         (unsigned long long)cmd->size);
	session_send(s, 250, "2.1.0", "Ok");
}

static void proceed_rcpt(struct session *s, struct smtp_cmd *cmd)
{
	struct smtp_tx *tx = &s->tx;
	struct policy_session ps;
	struct policy_verdict v;
	if (!tx->active) {
		session_error(s, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	if (cmd->non_ascii && !tx->smtputf8) {
		session_error(s, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
		return;
	}
	if (cmd->notify || cmd->orcpt) {
		session_error(s, 555, "5.5.4", "%s parameter not supported",
		              cmd->notify ? "NOTIFY" : "ORCPT");
		return;
	}
	session_policy_view(s, &ps);
	const struct policy_conf *pc = session_policy(s);
	policy_check_rcpt(pc, &ps, cmd->path, tx->nrcpts, &v);
	if (v.code == 0)
		policy_check_rate_rcpt(pc, s->w->d->pstate, &ps, session_now(), &v);
	if (v.code) {
		session_trace_reject(s, "RCPT", v.rule, v.code, v.enh, v.text, cmd->path);
		/* RFC 5321 4.5.3.1.10: "too many recipients" asks the client to
		 * send the rest in another transaction; it is not the client's
		 * error and must not end a pipelined session. */
		if (v.code == 452 && strcmp(v.enh, "4.5.3") == 0)
			session_reject(s, v.code, v.enh, "<%s>: %s", cmd->path, v.text);
		else
			session_error(s, v.code, v.enh, "<%s>: %s", cmd->path, v.text);
		return;
	}
	if (tx->nrcpts == tx->rcpt_cap) {
		tx->rcpt_cap = tx->rcpt_cap ? tx->rcpt_cap * 2 : 4;
		tx->rcpts = xrealloc(tx->rcpts, tx->rcpt_cap * sizeof(char *));
	}
	tx->rcpts[tx->nrcpts++] = str_dup(cmd->path);
	log_info("event=rcpt sid=%s qid=%s to=%s", s->sid, tx->qid, log_q(cmd->path));
	session_send(s, 250, "2.1.5", "Ok");
}

/* ---- the command table ---------------------------------------------------- */

static const struct smtp_command commands[] = {
	{ SMTP_VERB_HELO, 0, proceed_helo },
	{ SMTP_VERB_EHLO, 0, proceed_ehlo },
	{ SMTP_VERB_MAIL, CMD_NEED_HELO, proceed_mail },
	{ SMTP_VERB_RCPT, CMD_NEED_HELO, proceed_rcpt },
	{ SMTP_VERB_DATA, CMD_NEED_HELO, session_cmd_data },
	/* BDAT checks for itself: its chunk must be read even when refused. */
	{ SMTP_VERB_BDAT, 0, session_cmd_bdat },
	{ SMTP_VERB_RSET, 0, proceed_rset },
	{ SMTP_VERB_NOOP, 0, proceed_noop },
	{ SMTP_VERB_QUIT, 0, proceed_quit },
	{ SMTP_VERB_VRFY, 0, proceed_vrfy },
	{ SMTP_VERB_EXPN, 0, proceed_expn },
	{ SMTP_VERB_HELP, 0, proceed_help },
	{ SMTP_VERB_STARTTLS, CMD_NEED_HELO, proceed_starttls },
	{ SMTP_VERB_AUTH, CMD_NEED_HELO, session_cmd_auth },
};

static void session_parse_error(struct session *s, int err, enum smtp_verb verb)
{
	switch (err) {
	case SMTP_PARSE_UNKNOWN_VERB:
		session_error(s, 500, "5.5.2", "Error: command not recognized");
		break;
	case SMTP_PARSE_BAD_PATH:
		session_error(s, 501, verb == SMTP_VERB_MAIL ? "5.1.7" : "5.1.3",
		              "Bad address syntax");
		break;
	case SMTP_PARSE_UNKNOWN_PARAM:
		session_error(s, 555, "5.5.4", "Unsupported option");
		break;
	case SMTP_PARSE_NON_ASCII:
		session_error(s, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
		break;
	default:
		session_error(s, 501, "5.5.4", "Syntax error in parameters or arguments");
		break;
	}
}

static void session_command(struct session *s, char *line, size_t len)
{
	struct smtp_cmd cmd;
	/* Logged before the parser cuts the line up; never an AUTH payload. */
	bool auth = len >= 4 && strncasecmp(line, "AUTH", 4) == 0 && (len == 4 || line[4] == ' ');
	if (!auth)
		log_debug("event=command sid=%s cmd=%s", s->sid, log_qn(line, len > 200 ? 200 : len));
	int err = smtp_parse(line, len, &cmd);
	if (auth)
		log_debug("event=command sid=%s cmd=\"AUTH\" mech=%s arg=\"********\"", s->sid,
		          log_q(cmd.mech));
	if (err == SMTP_PARSE_OK || cmd.verb == SMTP_VERB_BDAT) {
		for (size_t i = 0; i < ARRAY_LEN(commands); i++) {
			const struct smtp_command *row = &commands[i];
			if (row->verb != cmd.verb)
				continue;
			if (err != SMTP_PARSE_OK) {
				/* A BDAT we cannot parse has no size we could skip. */
				session_parse_error(s, err, cmd.verb);
				session_close(s, true);
				return;
			}
			if ((row->flags & CMD_NEED_HELO) && !s->helo) {
				session_error(s, 503, "5.5.1", "Error: send HELO/EHLO first");
				return;
			}
			row->proceed(s, &cmd);
			return;
		}
	}
	session_parse_error(s, err, cmd.verb);
}

/* ---- input ------------------------------------------------------------------ */

void session_process(struct session *s)
{
	for (;;) {
		if (s->state == SS_DATA || s->state == SS_BDAT) {
			if (!session_data_input(s))
				break;
			continue;
		}
		if (s->state != SS_COMMAND && s->state != SS_AUTH_INPUT)
			break;
		if (s->close_after_flush)
			break;
		if (s->shutting_down && s->state == SS_COMMAND && !s->tx.bdat_started) {
			session_shutdown(s);
			break;
		}
		if (s->state == SS_COMMAND && session_dns_hold(s))
			break;
		char *line;
		size_t len;
		int rc = smtp_reader_next(&s->reader, &line, &len);
		if (rc == SMTP_LINE_NONE)
			break;
		/* The idle timer runs from one command line to the next, not from
		 * byte to byte: one byte every few seconds must not hold a
		 * connection forever. */
		session_wait_client(s, session_idle_timeout(s));
		if (rc != SMTP_LINE_OK && s->state == SS_AUTH_INPUT)
			session_auth_abort(s); /* a broken response ends the exchange */
		if (rc == SMTP_LINE_TOO_LONG) {
			session_error(s, 500, "5.5.2", "Error: line too long");
			continue;
		}
		if (rc == SMTP_LINE_BARE_LF) {
			/* SMTP smuggling: never accept a line end other than CRLF. */
			session_error(s, 500, "5.5.2", "Error: bare CR or LF received (RFC 5321 2.3.8)");
			continue;
		}
		if (s->state == SS_AUTH_INPUT)
			session_auth_input(s, line, len);
		else
			session_command(s, line, len);
	}
	/* Completions (AUTH, commit, refusals) come back here with nothing
	 * buffered: a pending shutdown must not wait for the client. */
	if (s->shutting_down && s->state == SS_COMMAND && !s->close_after_flush &&
	    !s->tx.bdat_started)
		session_shutdown(s);
}

void session_input(struct session *s, const char *data, size_t len)
{
	smtp_reader_push(&s->reader, data, len);
	if (s->state == SS_DATA || s->state == SS_BDAT) {
		/* The data timer restarts on progress only: limits { data_progress }
		 * more bytes of the message, not any byte. */
		s->data_bytes += len;
		if (s->data_bytes >= session_conf(s)->data_progress)
			session_wait_client(s, session_data_timeout(s));
	}
	session_process(s);
}

void session_timeout(struct session *s)
{
	if (s->close_after_flush) {
		/* The last reply was never taken. */
		session_close(s, false);
		return;
	}
	switch (s->state) {
	case SS_AUTH_WAIT:
	case SS_SPOOL_WAIT:
	case SS_COMMIT_WAIT:
		/* Our own work is slow, not the client: wait for it. */
		session_set_timeout(s, 5);
		return;

	case SS_HANDSHAKE:
		log_info("event=timeout sid=%s client=%s phase=tls_handshake", s->sid, s->client_ip);
		session_close(s, false);
		return;
	case SS_CLOSING:
		session_close(s, false);
		return;
	default:
		if (session_expired(s)) {
			log_info("event=timeout sid=%s client=%s phase=lifetime", s->sid, s->client_ip);
			session_send(s, 421, "4.4.2", "%s Error: connection open too long",
			             session_conf(s)->hostname);
		} else {
			log_info("event=timeout sid=%s client=%s phase=%s", s->sid, s->client_ip,
			         s->state == SS_DATA || s->state == SS_BDAT ? "data" : "command");
			session_send(s, 421, "4.4.2", "%s Error: timeout exceeded",
			             session_conf(s)->hostname);
		}
		session_close(s, true);
	}
}

void session_shutdown(struct session *s)
{
	switch (s->state) {
	case SS_DATA:
	case SS_BDAT:
	case SS_COMMIT_WAIT:
	case SS_AUTH_WAIT:
	case SS_SPOOL_WAIT:
		/* Let the message in flight finish; the stop timer bounds this. */
		s->shutting_down = true;
		return;
	case SS_HANDSHAKE:
	case SS_CLOSING:
		session_close(s, false);
		return;
	default:
		if (s->close_after_flush)
			return;
		session_send(s, 421, "4.3.2", "%s Service shutting down", session_conf(s)->hostname);
		session_close(s, true);
	}
}
