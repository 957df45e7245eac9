/*
 * data.c - the message transfer: DATA (RFC 5321 4.1.1.4) and BDAT (RFC
 * 3030). After HOOK_DATA's checks the queue file is asked for (the 354
 * waits for it); the message then streams from the decoder through the
 * stages (the header collector first, then the hooks' stages in chain
 * order: the trace mark) into the file; at the end HOOK_EOM's checks run
 * (header From), then HOOK_COMMIT's (the record that rides with the
 * file), then the queue makes file and record durable, and only then is
 * 250 sent.
 *
 * Ownership: the queue file is the transaction's until the commit takes
 * it; the pipe is the transaction's and freed with it.
 */
#include "smtp/smtp_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Decoded bytes go through the stages and to the file in runs of this. */
#define BODY_FLUSH 65536
/* The header section is kept up to this for the checks at HOOK_EOM. */
#define HEADERS_MAX (64 * 1024)

/* The decoders count characters before CRLF: 1000 - 2 by default. */
static size_t text_line_max(const struct smtp_config *c)
{
	return c->max_text_line > 2 ? c->max_text_line - 2 : 0;
}

/* ---- the way to the queue file ---------------------------------------------------- */

static int sink(void *ctx, const char *p, size_t n)
{
	struct smtp_session *s = ctx;
	buf_append(&s->tx.out, p, n);
	return 0;
}

/* What the stages passed on goes to the file in one write. */
static int write_out(struct smtp_session *s)
{
	struct smtp_tx *tx = &s->tx;
	if (tx->out.len == 0)
		return 0;
	int rc = s->cfg->queue->write(s->cfg->queue_ctx, tx->file, tx->out.data, tx->out.len);
	buf_consume(&tx->out, tx->out.len);
	return rc;
}

/* Client bytes of the message into the pipe, and on to the file. */
static int emit(struct smtp_session *s, const char *p, size_t n)
{
	struct smtp_tx *tx = &s->tx;
	if (n == 0)
		return 0;
	tx->size += n;
	int rc = msg_pipe_feed(tx->pipe, p, n);
	int wrc = write_out(s);
	return rc < 0 ? rc : wrc;
}

static int emit_body(struct smtp_session *s)
{
	struct smtp_tx *tx = &s->tx;
	int rc = emit(s, tx->body.data, tx->body.len);
	buf_consume(&tx->body, tx->body.len);
	return rc;
}

/* The end of the message: what the stages held back goes out. */
static int emit_end(struct smtp_session *s)
{
	int rc = msg_pipe_finish(s->tx.pipe);
	int wrc = write_out(s);
	return rc < 0 ? rc : wrc;
}

/* ---- the queue file ----------------------------------------------------------------- */

static void open_message(struct smtp_session *s)
{
	struct smtp_tx *tx = &s->tx;
	tx->time = time(NULL);
	tx->pipe = msg_pipe_new(sink, s);
	msg_headers_init(&tx->headers, HEADERS_MAX);
	msg_pipe_add(tx->pipe, &msg_headers_stage, &tx->headers);
	struct buf head;
	buf_init(&head);
	struct hook_view v;
	smtp__view(s, HOOK_DATA, NULL, &v);
	hook_session_stages(s->hooks, &v, tx->pipe, &head);
	const struct hook_tls *t = s->tls;
	const char *kv[] = {
		"trace_id", s->facts.trace_id[0] ? s->facts.trace_id : NULL,
		"sid", s->sid, "listener", s->cfg->listener, "client", s->peer.client_ip,
		"client_name", s->facts.client_name,
		"helo", s->helo, "auth", s->account, "mech", s->account ? s->auth_mech : NULL,
		"tls", t ? t->version : NULL, "cipher", t ? t->cipher : NULL,
		"cert_fp", t ? t->cert_fp : NULL,
	};
	struct smtp_envelope env = {
		.qid = tx->qid, .time = tx->time, .from = tx->from,
		.rcpts = (const char *const *)tx->rcpts, .nrcpts = tx->nrcpts,
		.smtputf8 = tx->smtputf8, .eightbit = tx->eightbit, .kv = kv, .nkv = ARRAY_LEN(kv) / 2,
	};
	struct smtp_token tok = smtp__wait(s, SMTP_W_QUEUE_OPEN);
	s->cfg->queue->open(s->cfg->queue_ctx, &env, &head, tok);
	buf_free(&head);
}

/* The chunk of a refused BDAT is read and dropped; the reply goes now
 * and leaves once the bytes are gone (RFC 3030 3). */
static void bdat_refuse(struct smtp_session *s, uint64_t size, enum smtp_reply_id id,
                        const struct hook_verdict *v)
{
	struct smtp_tx *tx = &s->tx;
	if (v)
		smtp__refuse(s, HOOK_DATA, v);
	else
		smtp__error(s, HOOK_DATA, id, NULL);
	if (s->closing)
		return;
	tx->bdat_left = size;
	tx->bdat_failed = true;
	if (tx->file) {
		s->cfg->queue->abort(s->cfg->queue_ctx, tx->file);
		tx->file = NULL;
	}
	smtp__enter(s, SMTP_S_BDAT);
}

void smtp__queue_opened(struct smtp_session *s, void *file, int status)
{
	struct smtp_tx *tx = &s->tx;
	smtp__enter(s, SMTP_S_COMMAND);
	if (s->shutting_down) {
		/* A stop came while we waited: no 354 now, with only the rest of
		 * the grace period left to receive the message in. */
		if (file)
			s->cfg->queue->abort(s->cfg->queue_ctx, file);
		smtp__tx_reset(s);
		smtp_session_shutdown(s);
		return;
	}
	if (status < 0 || !file) {
		log_err("event=spool_error sid=%s qid=%s error=\"%s\"", s->sid, tx->qid,
		        strerror(status < 0 ? -status : EIO));
		/* A second DATA in this transaction starts the stages afresh. */
		msg_pipe_free(tx->pipe);
		tx->pipe = NULL;
		msg_headers_free(&tx->headers);
		hook_facts_clear(&s->facts, false);
		if (tx->bdat_started) {
			bdat_refuse(s, tx->bdat_left, SMTP_R_QUEUE_UNAVAILABLE, NULL);
			smtp__wait_client(s, smtp__data_timeout(s));
		} else {
			smtp__error(s, HOOK_NPHASES, SMTP_R_QUEUE_UNAVAILABLE, NULL);
			smtp__wait_client(s, smtp__idle_timeout(s));
		}
		return;
	}
	tx->file = file;
	if (tx->bdat_started) {
		smtp__enter(s, SMTP_S_BDAT);
	} else {
		smtp_data_init(&tx->data, text_line_max(s->cfg), s->cfg->max_message_size);
		smtp__enter(s, SMTP_S_DATA);
		smtp__send(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
	}
	smtp__wait_client(s, smtp__data_timeout(s));
}

/* ---- DATA --------------------------------------------------------------------------- */

int smtp__check_data(struct smtp_session *s, const struct smtp_cmd *cmd, enum smtp_reply_id *id)
{
	if (!s->tx.active)
		*id = SMTP_R_NEED_MAIL;
	else if (s->tx.nrcpts == 0)
		*id = SMTP_R_NO_RECIPIENTS;
	else if (s->tx.bdat_started)
		*id = SMTP_R_DATA_AFTER_BDAT;
	else
		return 0;
	return -1;
}

void smtp__proceed_data(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	open_message(s);
}

/* Refuses a message whose content broke a rule; the transaction ends. */
static bool content_refused(struct smtp_session *s, unsigned flags)
{
	enum smtp_reply_id id;
	if (flags & SMTP_DATA_ERR_TOO_BIG)
		id = SMTP_R_CONTENT_SIZE;
	else if (flags & (SMTP_DATA_ERR_BARE_LF | SMTP_DATA_ERR_BARE_CR))
		id = SMTP_R_CONTENT_BARE_NEWLINE;
	else if (flags & SMTP_DATA_ERR_NUL)
		id = SMTP_R_CONTENT_NUL;
	else if (flags & SMTP_DATA_ERR_LONG_LINE)
		id = SMTP_R_CONTENT_LONG_LINE;
	else
		return false;
	smtp__error(s, HOOK_EOM, id, NULL);
	log_info("event=refused sid=%s qid=%s flags=%#x", s->sid, s->tx.qid, flags);
	return true;
}

static void commit_checked(struct smtp_session *s, const struct hook_verdict *v)
{
	struct smtp_tx *tx = &s->tx;
	if (v->result != HOOK_OK) {
		smtp__refuse(s, HOOK_COMMIT, v);
		smtp__tx_reset(s);
		smtp__enter(s, SMTP_S_COMMAND);
		return;
	}
	void *file = tx->file, *rider = tx->rider;
	tx->file = NULL;
	tx->rider = NULL;
	struct smtp_token tok = smtp__wait(s, SMTP_W_QUEUE_COMMIT);
	s->cfg->queue->commit(s->cfg->queue_ctx, file, rider, tok);
}

static void eom_checked(struct smtp_session *s, const struct hook_verdict *v)
{
	if (v->result != HOOK_OK) {
		smtp__refuse(s, HOOK_EOM, v);
		smtp__tx_reset(s);
		smtp__enter(s, SMTP_S_COMMAND);
		return;
	}
	smtp__phase(s, HOOK_COMMIT, NULL, commit_checked);
}

/* The message is whole and through the stages: the checks, the commit. */
static void message_done(struct smtp_session *s)
{
	smtp__phase(s, HOOK_EOM, NULL, eom_checked);
}

void smtp__queue_committed(struct smtp_session *s, int status, bool unrecorded)
{
	struct smtp_tx *tx = &s->tx;
	smtp__enter(s, SMTP_S_COMMAND);
	if (status == 0) {
		log_info("event=queued sid=%s qid=%s trace_id=%s from=%s nrcpt=%zu size=%llu user=%s",
		         s->sid, tx->qid, s->facts.trace_id[0] ? s->facts.trace_id : "-",
		         log_q(tx->from), tx->nrcpts, (unsigned long long)tx->size, log_q(s->account));
		smtp__observe_ok(s, HOOK_COMMIT, NULL);
		smtp__send(s, 250, "2.0.0", "Ok: queued as %s", tx->qid);
	} else if (unrecorded) {
		smtp__error(s, HOOK_NPHASES, SMTP_R_UNRECORDED, NULL);
	} else {
		smtp__error(s, HOOK_COMMIT, SMTP_R_QUEUE_ERROR, NULL);
	}
	smtp__tx_reset(s);
	smtp__wait_client(s, smtp__idle_timeout(s));
	if (s->shutting_down)
		smtp_session_shutdown(s);
}

static void data_end(struct smtp_session *s)
{
	struct smtp_tx *tx = &s->tx;
	unsigned flags = tx->data.flags;
	smtp__enter(s, SMTP_S_COMMAND);
	if (content_refused(s, flags)) {
		smtp__tx_reset(s);
		return;
	}
	if (tx->io_error || emit_body(s) < 0 || emit_end(s) < 0) {
		smtp__error(s, HOOK_NPHASES, SMTP_R_QUEUE_UNAVAILABLE, NULL);
		smtp__tx_reset(s);
		return;
	}
	message_done(s);
}

static bool data_input_dot(struct smtp_session *s)
{
	struct smtp_tx *tx = &s->tx;
	size_t len;
	const char *in = smtp_reader_peek(&s->reader, &len);
	if (len == 0)
		return false;
	size_t used = 0;
	int rc = smtp_data_feed(&tx->data, in, len, &used, &tx->body);
	smtp_reader_skip(&s->reader, used);
	if (tx->data.flags)
		buf_consume(&tx->body, tx->body.len);
	else if (tx->body.len >= BODY_FLUSH && emit_body(s) < 0)
		tx->io_error = true; /* disk full: tempfail at the end */
	if (rc == SMTP_DATA_END) {
		data_end(s);
		return true;
	}
	return false;
}

/* ---- BDAT --------------------------------------------------------------------------- */

static void bdat_chunk_done(struct smtp_session *s)
{
	struct smtp_tx *tx = &s->tx;
	smtp__enter(s, SMTP_S_COMMAND);
	if (tx->bdat_failed && !tx->file)
		return;   /* refused at the command: the reply was chosen then */
	if (tx->bdat_last)
		smtp_bdat_finish(&tx->bdat);
	if (tx->size > s->cfg->max_message_size)
		tx->bdat.flags |= SMTP_DATA_ERR_TOO_BIG;
	if (tx->bdat_last && !tx->bdat.flags && !tx->io_error && emit_end(s) < 0)
		tx->io_error = true;
	if (content_refused(s, tx->bdat.flags) || tx->io_error) {
		if (!tx->bdat.flags)
			smtp__error(s, HOOK_NPHASES, SMTP_R_QUEUE_UNAVAILABLE, NULL);
		if (tx->file) {
			s->cfg->queue->abort(s->cfg->queue_ctx, tx->file);
			tx->file = NULL;
		}
		tx->bdat_failed = true;
		return;
	}
	if (tx->bdat_last) {
		message_done(s);
		return;
	}
	smtp__send(s, 250, "2.0.0", "%llu octets received", (unsigned long long)tx->size);
}

static bool data_input_bdat(struct smtp_session *s)
{
	struct smtp_tx *tx = &s->tx;
	if (tx->bdat_left > 0) {
		size_t len;
		const char *in = smtp_reader_peek(&s->reader, &len);
		if (len == 0)
			return false;
		size_t n = len < tx->bdat_left ? len : (size_t)tx->bdat_left;
		if (tx->file && !tx->bdat.flags) {
			smtp_bdat_feed(&tx->bdat, in, n);
			if (tx->size + n > s->cfg->max_message_size)
				tx->bdat.flags |= SMTP_DATA_ERR_TOO_BIG;
			else if (!tx->bdat.flags && emit(s, in, n) < 0)
				tx->io_error = true;
		}
		smtp_reader_skip(&s->reader, n);
		tx->bdat_left -= n;
		if (tx->bdat_left > 0)
			return false;
	}
	bdat_chunk_done(s);
	return true;
}

bool smtp__data_input(struct smtp_session *s)
{
	return s->state == SMTP_S_DATA ? data_input_dot(s) : data_input_bdat(s);
}

static void bdat_data_checked(struct smtp_session *s, const struct hook_verdict *v)
{
	if (v->result != HOOK_OK) {
		bdat_refuse(s, s->tx.bdat_left, SMTP_R_COUNT, v);
		return;
	}
	open_message(s);
}

void smtp__bdat(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct smtp_tx *tx = &s->tx;
	if (!s->helo) {
		bdat_refuse(s, cmd->chunk_size, SMTP_R_NEED_HELO, NULL);
		return;
	}
	if (!tx->active || tx->nrcpts == 0) {
		bdat_refuse(s, cmd->chunk_size, !tx->active ? SMTP_R_NEED_MAIL : SMTP_R_NO_RECIPIENTS,
		            NULL);
		return;
	}
	if (tx->bdat_failed) {
		bdat_refuse(s, cmd->chunk_size, SMTP_R_BDAT_FAILED, NULL);
		return;
	}
	tx->bdat_left = cmd->chunk_size;
	tx->bdat_last = cmd->last;
	if (!tx->bdat_started) {
		/* The chunk waits in the input until the file exists. */
		tx->bdat_started = true;
		smtp_bdat_init(&tx->bdat, text_line_max(s->cfg));
		smtp__phase(s, HOOK_DATA, NULL, bdat_data_checked);
		return;
	}
	smtp__enter(s, SMTP_S_BDAT);
	smtp__wait_client(s, smtp__data_timeout(s));
}
