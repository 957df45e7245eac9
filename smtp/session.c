/*
 * session.c - the engine's session: its states and the one function that
 * changes them, the input loop, phases and the waits they may leave the
 * session in, the answers that end those waits, refusals, timeouts and
 * the stop. The verbs are in commands.c, mail.c, auth.c and data.c.
 *
 * Every wait ends the same way: the answer is matched to the wait by its
 * sequence number (a stale one is dropped), the step goes on, and
 * smtp__continue() reads on, runs buffered commands and flushes.
 *
 * Ownership: see smtp.h and smtp_int.h.
 */
#include "smtp/smtp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long our own slow work may take before the timer looks again. */
#define OWN_WORK_RECHECK 5
/* A refused smtps client gets its 421 inside TLS, within this. */
#define REFUSAL_HANDSHAKE_TIMEOUT 5

double smtp__now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool smtp__tls_active(const struct smtp_session *s)
{
	return s->tls != NULL;
}

/* ---- states --------------------------------------------------------------------- */

static bool state_reads(enum smtp_state st)
{
	switch (st) {
	case SMTP_S_HANDSHAKE:
	case SMTP_S_COMMAND:
	case SMTP_S_AUTH_INPUT:
	case SMTP_S_DATA:
	case SMTP_S_BDAT:
		return true;
	default:
		return false;
	}
}

void smtp__enter(struct smtp_session *s, enum smtp_state state)
{
	if (s->state == SMTP_S_CLOSING)
		return;          /* closing is final */
	s->state = state;
	if (state != SMTP_S_WAIT)
		s->wait = SMTP_W_NONE;
	bool reads = state_reads(state);
	if (reads != s->reading) {
		s->reading = reads;
		if (reads)
			s->io->resume(s->c);
		else
			s->io->pause(s->c);
	}
}

struct smtp_token smtp__wait(struct smtp_session *s, enum smtp_wait w)
{
	if (s->state != SMTP_S_WAIT)
		s->wait_from = s->state;
	smtp__enter(s, SMTP_S_WAIT);
	s->wait = w;
	s->seq++;
	return (struct smtp_token){ .route = s->route, .sid = s->id, .seq = s->seq };
}

/* ---- timers ---------------------------------------------------------------------- */

/* Under stress (Postfix's stress-adaptive timeouts): this loop's share of
 * max_connections is mostly in use, so clients that dawdle give way. */
static bool stressed(const struct smtp_session *s)
{
	const struct smtp_config *c = s->cfg;
	if (!c->stress_threshold || !c->max_connections)
		return false;
	uint64_t busy = (uint64_t)s->io->sessions(s->c) * (c->nloops ? c->nloops : 1) * 100;
	return busy >= (uint64_t)c->max_connections * c->stress_threshold;
}

unsigned smtp__idle_timeout(const struct smtp_session *s)
{
	const struct smtp_config *c = s->cfg;
	return stressed(s) && c->stress_idle_timeout < c->idle_timeout ? c->stress_idle_timeout
	                                                                 : c->idle_timeout;
}

unsigned smtp__data_timeout(const struct smtp_session *s)
{
	const struct smtp_config *c = s->cfg;
	return stressed(s) && c->stress_data_timeout < c->data_timeout ? c->stress_data_timeout
	                                                                 : c->data_timeout;
}

void smtp__set_timer(struct smtp_session *s, unsigned seconds)
{
	s->io->set_timer(s->c, (uint64_t)seconds * 1000);
}

static bool expired(const struct smtp_session *s)
{
	unsigned life = s->cfg->session_lifetime;
	return life && s->io->now_ms(s->c) - s->started_ms >= (uint64_t)life * 1000;
}

/* A wait on the client: never past the session's lifetime, however busy
 * the client keeps us (the timer then fires at once and ends it). */
void smtp__wait_client(struct smtp_session *s, unsigned seconds)
{
	uint64_t ms = (uint64_t)seconds * 1000;
	unsigned life = s->cfg->session_lifetime;
	if (life) {
		uint64_t age = s->io->now_ms(s->c) - s->started_ms;
		uint64_t left = age >= (uint64_t)life * 1000 ? 0 : (uint64_t)life * 1000 - age;
		if (left < ms)
			ms = left;
	}
	s->data_bytes = 0;
	s->io->set_timer(s->c, ms);
}

/* ---- replies ----------------------------------------------------------------------- */

void smtp__send(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
	struct buf b;
	buf_init(&b);
	va_list ap;
	va_start(ap, fmt);
	reply_vappend(&b, code, enh, fmt, ap);
	va_end(ap);
	s->io->send(s->c, b.data, b.len);
	buf_free(&b);
}

void smtp__close(struct smtp_session *s, bool after_flush)
{
	if (s->closing && after_flush)
		return;
	smtp__enter(s, SMTP_S_CLOSING);
	s->closing = true;
	s->io->close(s->c, after_flush);
}

void smtp__view(struct smtp_session *s, enum hook_phase phase, const char *arg,
                struct hook_view *v)
{
	struct smtp_tx *tx = &s->tx;
	memset(v, 0, sizeof(*v));
	v->id = s->id;
	v->sid = s->sid;
	v->listener = s->cfg->listener;
	v->mode = s->cfg->mode;
	v->client_ip = s->peer.client_ip;
	v->client_port = s->peer.client_port;
	v->local_ip = s->peer.local_ip;
	v->local_port = s->peer.local_port;
	v->helo = s->helo;
	v->esmtp = s->esmtp;
	v->tls = s->tls;
	v->account = s->account;
	v->sasl_mech = s->account ? s->auth_mech : NULL;
	v->facts = &s->facts;
	if (tx->active) {
		v->qid = tx->qid;
		v->mail_from = tx->from;
		v->mail_size = tx->mail_size;
		v->smtputf8 = tx->smtputf8;
		v->eightbit = tx->eightbit;
		v->rcpts = (const char *const *)tx->rcpts;
		v->nrcpts = tx->nrcpts;
	}
	v->arg = arg;
	if (phase == HOOK_AUTH) {
		v->auth_outcome = s->auth_outcome;
		v->auth_typed = s->auth_outcome ? s->auth_typed : NULL;
	}
	if (phase >= HOOK_EOM && phase != HOOK_DISCONNECT) {
		v->header = tx->headers.block.data ? tx->headers.block.data : "";
		v->header_len = tx->headers.block.len;
		v->header_cut = tx->headers.cut;
	}
	v->time = tx->time;
	v->size = tx->size;
	v->rider = &tx->rider;
	v->now = smtp__now();
	v->shutting_down = s->shutting_down;
}

void smtp__observe_ok(struct smtp_session *s, enum hook_phase phase, const char *arg)
{
	struct hook_view v;
	struct hook_verdict ok;
	memset(&ok, 0, sizeof(ok));
	smtp__view(s, phase, arg, &v);
	hook_session_observe(s->hooks, phase, &v, &ok);
}

/* The refusal's log line and its observers (the trace store's row). */
static void refusal_note(struct smtp_session *s, enum hook_phase phase,
                         const struct hook_verdict *v)
{
	const char *text = v->text[0] ? v->text : "Refused";
	log_info("event=reject sid=%s client=%s code=%d enh=%s rule=%s reason=%s", s->sid,
	         s->peer.client_ip, v->code, v->enh ? v->enh : "-", v->rule ? v->rule : "-",
	         log_q(text));
	if (phase < HOOK_NPHASES) {
		struct hook_view view;
		smtp__view(s, phase, phase == HOOK_RCPT && s->cmd ? s->cmd->path : NULL, &view);
		if (phase == HOOK_AUTH)
			view.arg = s->auth_attempted;
		hook_session_observe(s->hooks, phase, &view, v);
	}
}

static void refusal_reply(struct smtp_session *s, enum hook_phase phase,
                          const struct hook_verdict *v)
{
	const char *text = v->text[0] ? v->text : "Refused";
	if (phase == HOOK_CONNECT)
		smtp__send(s, v->code, v->enh, "%s %s", s->cfg->hostname, text);
	else if (phase == HOOK_RCPT && s->cmd)
		smtp__send(s, v->code, v->enh, "<%s>: %s", s->cmd->path, text);
	else
		smtp__send(s, v->code, v->enh, "%s", text);
}

void smtp__refuse(struct smtp_session *s, enum hook_phase phase, const struct hook_verdict *v)
{
	refusal_reply(s, phase, v);
	refusal_note(s, phase, v);
	if (v->result == HOOK_DROP || v->code == 421) {
		smtp__close(s, true);
		return;
	}
	if (v->not_an_error)
		return;
	if (++s->errors >= s->cfg->max_errors) {
		const struct smtp_reply_def *d = smtp_reply_def(SMTP_R_TOO_MANY_ERRORS);
		smtp__send(s, d->code, d->enh, d->text, s->cfg->hostname);
		log_info("event=reject sid=%s client=%s code=%d rule=%s", s->sid, s->peer.client_ip,
		         d->code, d->rule);
		smtp__close(s, true);
	}
}

void smtp__error(struct smtp_session *s, enum hook_phase phase, enum smtp_reply_id id,
                 const char *fmt_arg)
{
	const struct smtp_reply_def *d = smtp_reply_def(id);
	struct hook_verdict v;
	memset(&v, 0, sizeof(v));
	hook_verdict_set(&v, d->code, d->enh, d->rule, d->text, fmt_arg ? fmt_arg : "");
	if (d->closes)
		v.result = HOOK_DROP;
	/* Engine refusals without a rule are protocol errors: logged, not
	 * recorded, and not shown to the observers as a phase's outcome. */
	smtp__refuse(s, d->rule ? phase : HOOK_NPHASES, &v);
}

/* ---- phases ------------------------------------------------------------------------ */

static void phase_answered(struct smtp_session *s, enum hook_result r,
                           const struct hook_verdict *v, unsigned pending, smtp_then_fn then)
{
	if (r == HOOK_PENDING) {
		smtp__wait(s, SMTP_W_HOOK);
		s->wait_hook = pending;
		s->then = then;
		return;
	}
	then(s, v);
}

void smtp__phase(struct smtp_session *s, enum hook_phase phase, const char *arg,
                 smtp_then_fn then)
{
	struct hook_view v;
	struct hook_verdict verdict;
	unsigned pending = 0;
	smtp__view(s, phase, arg, &v);
	enum hook_result r = hook_session_run(s->hooks, phase, &v, &verdict, &pending);
	if (r == HOOK_PENDING)
		s->wait_phase = phase;
	phase_answered(s, r, &verdict, pending, then);
}

/* A hook's work is done: run its check again, and on from there. */
static void hook_woken(struct smtp_session *s, unsigned index)
{
	if (s->state != SMTP_S_WAIT || s->wait != SMTP_W_HOOK || s->wait_hook != index)
		return;
	struct hook_view v;
	struct hook_verdict verdict;
	unsigned pending = 0;
	enum hook_phase phase = s->wait_phase;
	const char *arg = phase == HOOK_MAIL || phase == HOOK_RCPT ? s->held.path
	                  : phase == HOOK_AUTH && s->auth_outcome ? s->auth_attempted : NULL;
	smtp__view(s, phase, arg, &v);
	enum hook_result r = hook_session_resume(s->hooks, phase, index, &v, &verdict, &pending);
	if (r == HOOK_PENDING) {
		s->wait_hook = pending;
		return;
	}
	smtp_then_fn then = s->then;
	s->then = NULL;
	/* Back where the phase began; the step then goes on from there. */
	smtp__enter(s, s->wait_from);
	then(s, &verdict);
}

/* ---- input ------------------------------------------------------------------------- */

static void process(struct smtp_session *s)
{
	for (;;) {
		if (s->closing)
			break;
		if (s->state == SMTP_S_DATA || s->state == SMTP_S_BDAT) {
			if (!smtp__data_input(s))
				break;
			continue;
		}
		if (s->state != SMTP_S_COMMAND && s->state != SMTP_S_AUTH_INPUT)
			break;
		if (s->shutting_down && s->state == SMTP_S_COMMAND && !s->tx.bdat_started) {
			smtp_session_shutdown(s);
			break;
		}
		char *line;
		size_t len;
		int rc = smtp_reader_next(&s->reader, &line, &len);
		if (rc == SMTP_LINE_NONE)
			break;
		/* The idle timer runs from one command line to the next, not from
		 * byte to byte: one byte every few seconds must not hold a
		 * connection forever. */
		smtp__wait_client(s, smtp__idle_timeout(s));
		if (rc != SMTP_LINE_OK && s->state == SMTP_S_AUTH_INPUT)
			smtp__auth_abort(s); /* a broken response ends the exchange */
		if (rc == SMTP_LINE_TOO_LONG) {
			smtp__error(s, HOOK_NPHASES, SMTP_R_LINE_TOO_LONG, NULL);
			continue;
		}
		if (rc == SMTP_LINE_BARE_LF) {
			smtp__error(s, HOOK_NPHASES, SMTP_R_BARE_NEWLINE_COMMAND, NULL);
			continue;
		}
		if (s->state == SMTP_S_AUTH_INPUT)
			smtp__auth_line(s, line, len);
		else
			smtp__command_line(s, line, len);
	}
	/* Answers (AUTH, commit, refusals) come back here with nothing
	 * buffered: a pending stop must not wait for the client. */
	if (s->shutting_down && s->state == SMTP_S_COMMAND && !s->closing && !s->tx.bdat_started)
		smtp_session_shutdown(s);
}

void smtp__continue(struct smtp_session *s)
{
	if (!s->closing && state_reads(s->state)) {
		process(s);
	} else if (s->shutting_down && s->state == SMTP_S_COMMAND && !s->closing) {
		smtp_session_shutdown(s);
	}
	if (!smtp_session_holds_replies(s))
		s->io->flush(s->c);
}

void smtp_session_process(struct smtp_session *s)
{
	process(s);
}

void smtp_session_input(struct smtp_session *s, const char *p, size_t n)
{
	if (s->closing)
		return;
	smtp_reader_push(&s->reader, p, n);
	if (s->state == SMTP_S_DATA || s->state == SMTP_S_BDAT) {
		/* The data timer restarts on progress only: data_progress more
		 * bytes of the message, not any byte. */
		s->data_bytes += n;
		if (s->data_bytes >= s->cfg->data_progress)
			smtp__wait_client(s, smtp__data_timeout(s));
	}
	process(s);
}

/* ---- the start, TLS, the greeting -------------------------------------------------- */

struct smtp_session *smtp_session_new(const struct smtp_config *cfg, uint64_t sid,
                                      const struct smtp_peer *peer, const struct smtp_io *io,
                                      void *c, struct hook_host *host, void *route)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	s->cfg = cfg;
	s->io = io;
	s->c = c;
	s->route = route;
	s->id = sid;
	snprintf(s->sid, sizeof(s->sid), "%llx", (unsigned long long)sid);
	s->peer = *peer;
	s->state = SMTP_S_NEW;
	s->reading = true;       /* the transport reads from the start */
	smtp_reader_init(&s->reader, cfg->max_command_line);
	s->hooks = hook_session_new(cfg->hooks, host, sid);
	return s;
}

void smtp__greet(struct smtp_session *s)
{
	smtp__enter(s, SMTP_S_COMMAND);
	smtp__send(s, 220, NULL, "%s ESMTP Postern", s->cfg->hostname);
	smtp__wait_client(s, smtp__idle_timeout(s));
}

static int start_tls(struct smtp_session *s, bool refusal)
{
	if (s->io->start_tls(s->c, refusal) < 0)
		return -1;
	s->tls_started = true;
	smtp__enter(s, SMTP_S_HANDSHAKE);
	unsigned t = s->cfg->handshake_timeout;
	if (refusal && t > REFUSAL_HANDSHAKE_TIMEOUT)
		t = REFUSAL_HANDSHAKE_TIMEOUT;
	smtp__set_timer(s, t);
	return 0;
}

int smtp__start_tls(struct smtp_session *s)
{
	return start_tls(s, false);
}

static void connect_checked(struct smtp_session *s, const struct hook_verdict *v)
{
	if (v->result != HOOK_OK || s->shutting_down) {
		struct hook_verdict stop;
		if (v->result == HOOK_OK) {
			const struct smtp_reply_def *d = smtp_reply_def(SMTP_R_SHUTDOWN);
			memset(&stop, 0, sizeof(stop));
			hook_verdict_set(&stop, d->code, d->enh, d->rule, "Service shutting down");
			v = &stop;
		}
		if (s->cfg->mode == HOOK_MODE_SMTPS) {
			/* No TLS yet: a plaintext reply would be garbage to a TLS
			 * client. The reply waits for the handshake; the refusal
			 * counts now, whether or not the client ever does one. */
			refusal_note(s, HOOK_CONNECT, v);
			s->refusal = *v;
			s->refusal_pending = true;
			if (start_tls(s, true) < 0)
				smtp__close(s, false);
			return;
		}
		smtp__refuse(s, HOOK_CONNECT, v);
		smtp__close(s, true);
		return;
	}
	smtp__observe_ok(s, HOOK_CONNECT, NULL);
	if (s->cfg->mode == HOOK_MODE_SMTPS) {
		if (start_tls(s, false) < 0)
			smtp__close(s, false);
		return;
	}
	smtp__greet(s);
}

void smtp_session_start(struct smtp_session *s)
{
	s->started_ms = s->io->now_ms(s->c);
	struct hook_view v;
	smtp__view(s, HOOK_CONNECT, NULL, &v);
	hook_session_open(s->hooks, &v);
	smtp__phase(s, HOOK_CONNECT, NULL, connect_checked);
	smtp__continue(s);
}

static void tls_checked(struct smtp_session *s, const struct hook_verdict *v)
{
	if (v->result != HOOK_OK) {
		smtp__refuse(s, HOOK_TLS, v);
		smtp__close(s, true);
		return;
	}
	smtp__observe_ok(s, HOOK_TLS, NULL);
	if (s->cfg->mode == HOOK_MODE_SMTPS) {
		smtp__greet(s);
		return;
	}
	/* RFC 3207 4.2: the client starts again with EHLO. */
	smtp__enter(s, SMTP_S_COMMAND);
	smtp__wait_client(s, smtp__idle_timeout(s));
}

void smtp_session_tls_ready(struct smtp_session *s, const struct hook_tls *facts)
{
	s->tls = facts;
	if (s->refusal_pending) {
		/* Refused at connect: the reply can be read now. */
		s->refusal_pending = false;
		smtp__enter(s, SMTP_S_COMMAND);
		refusal_reply(s, HOOK_CONNECT, &s->refusal);
		smtp__close(s, true);
		return;
	}
	smtp__phase(s, HOOK_TLS, NULL, tls_checked);
	smtp__continue(s);
}

/* ---- answers ----------------------------------------------------------------------- */

bool smtp_session_complete(struct smtp_session *s, uint32_t seq, const struct smtp_done *d)
{
	if (d->kind == SMTP_DONE_HOOK) {
		hook_woken(s, d->hook);
		smtp__continue(s);
		return true;
	}
	if (s->state != SMTP_S_WAIT || seq != s->seq)
		return false;
	switch (d->kind) {
	case SMTP_DONE_AUTH:
		if (s->wait != SMTP_W_AUTH)
			return false;
		s->wait = SMTP_W_NONE;
		smtp__auth_done(s, d->auth);
		break;
	case SMTP_DONE_QUEUE_OPEN:
		if (s->wait != SMTP_W_QUEUE_OPEN)
			return false;
		s->wait = SMTP_W_NONE;
		smtp__queue_opened(s, d->file, d->status);
		break;
	case SMTP_DONE_QUEUE_COMMIT:
		if (s->wait != SMTP_W_QUEUE_COMMIT)
			return false;
		s->wait = SMTP_W_NONE;
		smtp__queue_committed(s, d->status, d->unrecorded);
		break;
	default:
		return false;
	}
	smtp__continue(s);
	return true;
}

bool smtp_session_holds_replies(const struct smtp_session *s)
{
	/* Replies to MAIL and RCPT pipelined with DATA or BDAT wait for the
	 * 354 (or the error) that ends the wait for the queue file a moment
	 * later, so that the group goes out in one TLS record and one write
	 * (RFC 2920 lets a server send a group's replies together). */
	return s->state == SMTP_S_WAIT && !s->closing &&
	       (s->wait == SMTP_W_QUEUE_OPEN ||
	        (s->wait == SMTP_W_HOOK && s->wait_phase == HOOK_DATA));
}

bool smtp_session_closing(const struct smtp_session *s)
{
	return s->closing;
}

/* ---- timeouts and the stop ------------------------------------------------------------- */

void smtp_session_timer(struct smtp_session *s)
{
	if (s->closing) {
		/* The last reply was never taken. */
		s->io->close(s->c, false);
		return;
	}
	switch (s->state) {
	case SMTP_S_WAIT:
		if (s->wait == SMTP_W_AUTH_DELAY) {
			smtp__auth_delay_done(s);
			smtp__continue(s);
			return;
		}
		/* Our own work is slow, not the client: wait for it. */
		smtp__set_timer(s, OWN_WORK_RECHECK);
		return;
	case SMTP_S_HANDSHAKE:
		log_info("event=timeout sid=%s client=%s phase=tls_handshake", s->sid,
		         s->peer.client_ip);
		smtp__close(s, false);
		return;
	case SMTP_S_NEW:
	case SMTP_S_CLOSING:
		smtp__close(s, false);
		return;
	default:
		break;
	}
	if (expired(s)) {
		log_info("event=timeout sid=%s client=%s phase=lifetime", s->sid, s->peer.client_ip);
		smtp__error(s, HOOK_NPHASES, SMTP_R_LIFETIME, s->cfg->hostname);
	} else {
		log_info("event=timeout sid=%s client=%s phase=%s", s->sid, s->peer.client_ip,
		         s->state == SMTP_S_DATA || s->state == SMTP_S_BDAT ? "data" : "command");
		smtp__error(s, HOOK_NPHASES, SMTP_R_TIMEOUT, s->cfg->hostname);
	}
	s->io->flush(s->c);
}

void smtp_session_shutdown(struct smtp_session *s)
{
	switch (s->state) {
	case SMTP_S_DATA:
	case SMTP_S_BDAT:
	case SMTP_S_WAIT:
		/* Let the message in flight finish; the stop timer bounds this. */
		s->shutting_down = true;
		return;
	case SMTP_S_NEW:
		s->shutting_down = true;
		return;
	case SMTP_S_HANDSHAKE:
	case SMTP_S_CLOSING:
		smtp__close(s, false);
		return;
	default:
		if (s->closing)
			return;
		s->shutting_down = true;
		smtp__error(s, HOOK_NPHASES, SMTP_R_SHUTDOWN, s->cfg->hostname);
		s->io->flush(s->c);
	}
}

/* ---- for the hook host ------------------------------------------------------------------ */

void *smtp_session_hook_state(struct smtp_session *s, unsigned index)
{
	return hook_session_state(s->hooks, index);
}

struct hook_facts *smtp_session_facts(struct smtp_session *s)
{
	return &s->facts;
}

uint64_t smtp_session_id(const struct smtp_session *s)
{
	return s->id;
}

const char *smtp_session_sid(const struct smtp_session *s)
{
	return s->sid;
}

void smtp_session_free(struct smtp_session *s)
{
	if (!s)
		return;
	if (s->state != SMTP_S_NEW) {
		struct hook_view v;
		struct hook_verdict none;
		memset(&none, 0, sizeof(none));
		smtp__view(s, HOOK_DISCONNECT, NULL, &v);
		hook_session_observe(s->hooks, HOOK_DISCONNECT, &v, &none);
	}
	smtp__tx_reset(s);
	hook_session_free(s->hooks);
	hook_facts_clear(&s->facts, true);
	smtp_reader_free(&s->reader);
	if (s->auth)
		s->cfg->auth->free(s->cfg->auth_ctx, s->auth);
	free(s->helo);
	free(s->auth_mech);
	free(s->account);
	free(s->auth_typed);
	free(s->auth_attempted);
	if (s->held_line) {
		explicit_bzero(s->held_line, strlen(s->held_line));
		free(s->held_line);
	}
	free(s);
}
