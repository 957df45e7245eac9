/*
 * session_data.c - the message transfer: DATA (RFC 5321 4.1.1.4) and BDAT
 * (RFC 3030) stream into a spool file behind a Received header, then the
 * spool's commit thread makes the file durable, with its trace record in
 * the same step, and only then is 250 sent.
 *
 * Ownership: the spool file belongs to the transaction until it is handed
 * to relay_spool_commit(); the commit context is freed by its callback.
 */
#include "server/session.h"
#include "trace/trace.h"
#include "policy/policy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BODY_FLUSH 65536

struct commit_ctx {
	struct worker *w;
	uint64_t sid;
	char qid[ID_LEN + 1];
	struct trace_entry *record;  /* rides with the queue file, or NULL */
};

static const struct conf *data_conf(const struct session *s)
{
	return s->w->d->conf;
}

/* The decoders count characters before CRLF: 1000 - 2 by default. */
static size_t data_text_line_max(const struct conf *c)
{
	return c->max_text_line > 2 ? c->max_text_line - 2 : 0;
}

/* A queue file being created for a session on the spool's create thread. */
struct spool_work {
	struct worker *w;
	uint64_t sid;
	struct relay_spool_file *f;
};

static void data_spool_created(struct session *s, struct relay_spool_file *f, int rc);

static void spool_work_done(int status, void *arg)
{
	struct spool_work *sw = arg;
	sw->w->inflight--;
	struct session *s = worker_find_session(sw->w, sw->sid);
	if (!s || s->state != SS_SPOOL_WAIT)
		relay_spool_abort(sw->f);   /* the client left meanwhile */
	else
		data_spool_created(s, sw->f, status);
	free(sw);
}

/* Starts the queue file: the envelope and our Received header are made
 * here, the file is created on the spool's create thread, and the session
 * waits (SS_SPOOL_WAIT) until data_spool_created() says how it went. */
static void data_open_spool(struct session *s)
{
	struct smtp_tx *tx = &s->tx;
	bool tls = s->tls && s->tls_ready;
	tx->time = time(NULL);
	struct relay_envelope env = {
		.time = tx->time, .from = tx->from, .rcpts = tx->rcpts, .nrcpts = tx->nrcpts,
		.ret = tx->ret, .envid = tx->envid, .smtputf8 = tx->smtputf8,
		.eightbit = tx->eightbit,
	};
	memcpy(env.qid, tx->qid, sizeof(env.qid));
	const char *fp = tls ? tls_peer_fingerprint(s->tls) : NULL;
	struct daemon *d = s->w->d;
	trace_new_id(tx->trace_id);
	const char *kv[] = {
		"trace_id", tx->trace_id,
		"sid", s->sid, "listener", s->l->conf->name, "client", s->client_ip,
		"client_name", s->client_name,
		"helo", s->helo, "auth", s->account, "mech", s->auth_mech,
		"tls", tls ? tls_version(s->tls) : NULL, "cipher", tls ? tls_cipher(s->tls) : NULL,
		"cert_fp", fp,
	};
	struct trace_received r = {
		.helo = s->helo, .esmtp = s->esmtp, .client_ip = s->client_ip,
		.client_name = s->client_name,
		.tls_version = tls ? tls_version(s->tls) : NULL,
		.tls_cipher = tls ? tls_cipher(s->tls) : NULL,
		.tls_bits = tls ? tls_cipher_bits(s->tls) : 0, .cert_fingerprint = fp,
		.authenticated = s->account != NULL, .account = s->account,
		.show_account = data_conf(s)->trace_show_account,
		.hostname = data_conf(s)->hostname, .qid = tx->qid,
		.single_rcpt = tx->nrcpts == 1 ? tx->rcpts[0] : NULL, .time = env.time,
	};
	struct buf hdr;
	buf_init(&hdr);
	trace_received(&hdr, &r);
	/* Every message goes through the scanner, signed or not: it notes the
	 * Message-ID for the record, renames a client's X-Postern-Trace and,
	 * on the listeners that require AUTH (we are the submission agent
	 * there, RFC 6409 8.3; an MTA relaying for others adds nothing, RFC
	 * 5321 6.4), adds the Message-ID a client left out, so that no MTA
	 * downstream adds one after the MAC was made. The trace id is unique
	 * and already public in the trace header. */
	tx->scan = trace_scan_new(d->ntrace_keys ? &d->trace_keys[0] : NULL,
	                          data_conf(s)->hostname, tx->trace_id, tx->time);
	if (s->l->conf->mode != CONF_MODE_MX) {
		char mid[TRACE_ID_LEN + 300];
		snprintf(mid, sizeof(mid), "<%s@%s>", tx->trace_id, data_conf(s)->hostname);
		trace_scan_add_message_id(tx->scan, mid);
	}
	trace_scan_prefix(tx->scan, hdr.data, hdr.len);
	struct spool_work *sw = xcalloc(1, sizeof(*sw));
	sw->w = s->w;
	sw->sid = s->id;
	sw->f = relay_spool_prepare(d->spool, &env, kv, ARRAY_LEN(kv) / 2, hdr.data, hdr.len);
	buf_free(&hdr);
	s->state = SS_SPOOL_WAIT;
	session_pause(s);
	s->w->inflight++;
	relay_spool_create_async(sw->f, &s->w->loop, &s->w->commit_async, spool_work_done, sw);
}

/* Common checks of DATA and BDAT. Returns 0, or fills the refusal. */
static int data_check(struct session *s, int *code, const char **enh, const char **text)
{
	if (!s->helo) {
		*code = 503, *enh = "5.5.1", *text = "Error: send HELO/EHLO first";
	} else if (!s->tx.active) {
		*code = 503, *enh = "5.5.1", *text = "Error: need MAIL command";
	} else if (s->tx.nrcpts == 0) {
		*code = 554, *enh = "5.5.1", *text = "Error: no valid recipients";
	} else {
		return 0;
	}
	return -1;
}

void session_cmd_data(struct session *s, struct smtp_cmd *cmd)
{
	int code;
	const char *enh, *text;
	if (data_check(s, &code, &enh, &text) < 0) {
		session_error(s, code, enh, "%s", text);
		return;
	}
	if (s->tx.bdat_started) {
		session_error(s, 503, "5.5.1", "Error: DATA after BDAT");
		return;
	}
	data_open_spool(s);
}

/* DATA goes on: the 354, or 451 when there is no queue file. */
static void data_start(struct session *s)
{
	const struct conf *c = data_conf(s);
	smtp_data_init(&s->tx.data, data_text_line_max(c), c->max_message_size);
	s->state = SS_DATA;
	session_send(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
	session_wait_client(s, session_data_timeout(s));
}

/* ---- commit ------------------------------------------------------------ */

static void commit_ctx_free(struct commit_ctx *cc)
{
	cc->w->inflight--;
	trace_entry_free(cc->record);
	free(cc);
}

/* The queue file is durable, and with it its record (they are written
 * in one step, relay/spool.c), or neither is: the reply. */
static void data_committed(int status, void *arg)
{
	struct commit_ctx *cc = arg;
	struct daemon *d = cc->w->d;
	bool untraced = cc->record && trace_entry_status(cc->record) != 0;
	if (status == 0 && d->relay)
		relay_enqueue(d->relay, cc->qid);
	if (untraced)
		log_err("event=trace_error qid=%s error=\"%s\" queued=no", cc->qid,
		        strerror(-trace_entry_status(cc->record)));
	else if (status != 0)
		log_err("event=spool_error qid=%s error=\"commit: %s\"", cc->qid, strerror(-status));
	struct session *s = worker_find_session(cc->w, cc->sid);
	if (!s) {
		if (status == 0)
			log_info("event=queued qid=%s note=\"client left before the reply\"", cc->qid);
		commit_ctx_free(cc);
		return;
	}
	struct smtp_tx *tx = &s->tx;
	if (status == 0) {
		log_info("event=queued sid=%s qid=%s trace_id=%s from=%s nrcpt=%zu size=%llu user=%s",
		         s->sid, cc->qid, tx->trace_id[0] ? tx->trace_id : "-", log_q(tx->from),
		         tx->nrcpts, (unsigned long long)tx->size, log_q(s->account));
		session_send(s, 250, "2.0.0", "Ok: queued as %s", cc->qid);
	} else if (untraced) {
		session_error(s, 451, "4.3.0", "Error: cannot record the message; try again later");
	} else {
		session_trace_reject(s, "DATA", "queue_error", 451, "4.3.0", "queue file write error",
		                     NULL);
		session_error(s, 451, "4.3.0", "Error: queue file write error");
	}
	commit_ctx_free(cc);
	tx_reset(tx);
	if (s->state == SS_COMMIT_WAIT)
		s->state = SS_COMMAND;
	session_wait_client(s, session_idle_timeout(s));
	if (s->shutting_down) {
		session_shutdown(s);
	} else {
		session_resume(s);
		session_process(s);
	}
	session_flush(s);
}

static void data_trace_record(struct session *s, struct trace_record *r)
{
	struct smtp_tx *tx = &s->tx;
	bool tls = s->tls && s->tls_ready;
	memset(r, 0, sizeof(*r));
	memcpy(r->qid, tx->qid, sizeof(r->qid));
	memcpy(r->trace_id, tx->trace_id, sizeof(r->trace_id));
	r->time = tx->time;
	r->sid = s->sid;
	r->listener = s->l->conf->name;
	r->client_ip = s->client_ip;
	r->client_port = s->client_port;
	r->helo = s->helo;
	r->reverse_name = s->client_name;
	if (tls) {
		r->tls_version = tls_version(s->tls);
		r->tls_cipher = tls_cipher(s->tls);
		r->tls_sni = tls_sni(s->tls);
		r->cert_fp = tls_peer_fingerprint(s->tls);
		r->cert_subject = tls_peer_subject(s->tls);
		r->cert_issuer = tls_peer_issuer(s->tls);
	}
	r->sasl_mech = s->auth_mech;
	r->account = s->account;
	r->mail_from = tx->from;
	r->rcpts = (const char *const *)tx->rcpts;
	r->nrcpts = tx->nrcpts;
	r->size = tx->size;
	r->body_sha256 = tx->scan ? trace_scan_sha256(tx->scan) : NULL;
	r->message_id = tx->scan ? trace_scan_message_id(tx->scan) : NULL;
}

static void data_commit(struct session *s)
{
	struct daemon *d = s->w->d;
	struct commit_ctx *cc = xcalloc(1, sizeof(*cc));
	cc->w = s->w;
	cc->sid = s->id;
	memcpy(cc->qid, s->tx.qid, sizeof(cc->qid));
	if (d->trace) {
		struct trace_record r;
		data_trace_record(s, &r);
		cc->record = trace_entry_new(&r);
	}
	s->w->inflight++;
	s->state = SS_COMMIT_WAIT;
	session_pause(s);
	struct relay_spool_file *f = s->tx.spool;
	s->tx.spool = NULL;
	relay_spool_commit(f, cc->record, &s->w->loop, &s->w->commit_async, data_committed, cc);
}

void worker_commit_done(uv_async_t *async)
{
	struct worker *w = async->data;
	relay_spool_drain(w->d->spool, &w->loop);
}

/* Refuses a message whose content broke a rule; the transaction ends. */
static bool data_refuse(struct session *s, unsigned flags)
{
	int code = 554;
	const char *enh = "5.6.0", *text, *rule;
	if (flags & SMTP_DATA_ERR_TOO_BIG) {
		code = 552, enh = "5.3.4", rule = "max_size";
		text = "Message size exceeds fixed maximum message size";
	} else if (flags & (SMTP_DATA_ERR_BARE_LF | SMTP_DATA_ERR_BARE_CR)) {
		rule = "bare_newline";
		text = "Message contains bare CR or LF (RFC 5321 2.3.8)";
	} else if (flags & SMTP_DATA_ERR_NUL) {
		rule = "nul";
		text = "Message contains NUL (RFC 2045 2.7; BINARYMIME is not offered)";
	} else if (flags & SMTP_DATA_ERR_LONG_LINE) {
		rule = "line_length";
		text = "Message has a line longer than the limit (RFC 5321 4.5.3.1.6)";
	} else {
		return false;
	}
	session_trace_reject(s, "DATA", rule, code, enh, text, NULL);
	session_error(s, code, enh, "%s", text);
	log_info("event=refused sid=%s qid=%s flags=%#x", s->sid, s->tx.qid, flags);
	return true;
}

/* Message bytes on their way to the spool, through the trace scanner
 * (which adds the trace header and hashes what is relayed). */
/* Keeps the header block (up to a cap) when the header From is checked. */
#define HEADERS_MAX (64 * 1024)

static void data_keep_headers(struct session *s, const char *p, size_t n)
{
	struct smtp_tx *tx = &s->tx;
	if (tx->headers_done || !session_policy(s)->check_header_from)
		return;
	size_t room = HEADERS_MAX - tx->headers.len;
	size_t old = tx->headers.len;
	buf_append(&tx->headers, p, n < room ? n : room);
	const char *from = tx->headers.data + (old > 3 ? old - 3 : 0);
	const char *end = memmem(from, tx->headers.len - (size_t)(from - tx->headers.data),
	                         "\r\n\r\n", 4);
	if (end) {
		tx->headers.len = (size_t)(end - tx->headers.data) + 2;
		tx->headers_done = true;
	} else if (tx->headers.len >= HEADERS_MAX) {
		tx->headers_done = true;
		tx->headers_cut = true;
	}
}

/* With check_header_from: every From mailbox must be the account's. */
static bool data_refuse_header_from(struct session *s)
{
	const struct policy_conf *pc = session_policy(s);
	if (!pc->check_header_from || !s->account)
		return false;
	struct policy_session ps = {
		.tls = true, .authenticated = true, .account = s->account, .client_ip = s->client_ip,
	};
	struct policy_verdict v;
	if (s->tx.headers_cut) {
		/* A field past what we keep (a second From, or the rest of this
		 * one) would go unchecked: refuse rather than check a part. */
		static const char text[] = "Message header section too large to check (64 KiB)";
		session_trace_reject(s, "DATA", "header_too_big", 552, "5.3.4", text, NULL);
		session_error(s, 552, "5.3.4", "%s", text);
		return true;
	}
	policy_check_header_from(pc, &ps, s->tx.headers.data ? s->tx.headers.data : "",
	                         s->tx.headers.len, &v);
	if (v.code == 0)
		return false;
	session_trace_reject(s, "DATA", v.rule, v.code, v.enh, v.text, NULL);
	session_error(s, v.code, v.enh, "%s", v.text);
	return true;
}

static int data_emit(struct session *s, const char *p, size_t n)
{
	struct smtp_tx *tx = &s->tx;
	if (n == 0)
		return 0;
	tx->size += n;
	data_keep_headers(s, p, n);
	if (!tx->scan)
		return relay_spool_write(tx->spool, p, n);
	trace_scan_feed(tx->scan, p, n, &tx->scanned);
	int rc = relay_spool_write(tx->spool, tx->scanned.data, tx->scanned.len);
	buf_consume(&tx->scanned, tx->scanned.len);
	return rc;
}

static int data_write_body(struct session *s)
{
	struct smtp_tx *tx = &s->tx;
	int rc = data_emit(s, tx->body.data, tx->body.len);
	buf_consume(&tx->body, tx->body.len);
	return rc;
}

/* The end of the message: what the scanner held back goes out. */
static int data_emit_end(struct session *s)
{
	struct smtp_tx *tx = &s->tx;
	if (!tx->scan)
		return 0;
	trace_scan_finish(tx->scan, &tx->scanned);
	int rc = relay_spool_write(tx->spool, tx->scanned.data, tx->scanned.len);
	buf_free(&tx->scanned);
	return rc;
}

static void data_end(struct session *s)
{
	struct smtp_tx *tx = &s->tx;
	unsigned flags = tx->data.flags;
	s->state = SS_COMMAND;
	if (data_refuse(s, flags) || tx->io_error || data_write_body(s) < 0 ||
	    data_emit_end(s) < 0) {
		if (!flags)
			session_error(s, 451, "4.3.0", "Error: queue file write error");
		tx_reset(tx);
		return;
	}
	if (data_refuse_header_from(s)) {
		tx_reset(tx);
		return;
	}
	data_commit(s);
}

static bool data_input_dot(struct session *s)
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
	else if (tx->body.len >= BODY_FLUSH && data_write_body(s) < 0)
		tx->io_error = true; /* disk full: tempfail at the end */
	if (rc == SMTP_DATA_END) {
		data_end(s);
		return true;
	}
	return false;
}

/* ---- BDAT ------------------------------------------------------------------- */

static void bdat_chunk_done(struct session *s)
{
	struct smtp_tx *tx = &s->tx;
	const struct conf *c = data_conf(s);
	s->state = SS_COMMAND;
	if (tx->bdat_failed && !tx->spool) {
		/* Refused at the command: the reply was chosen then. */
		return;
	}
	if (tx->bdat_last)
		smtp_bdat_finish(&tx->bdat);
	if (tx->size > c->max_message_size)
		tx->bdat.flags |= SMTP_DATA_ERR_TOO_BIG;
	if (tx->bdat_last && !tx->bdat.flags && !tx->io_error && data_emit_end(s) < 0)
		tx->io_error = true;
	if (data_refuse(s, tx->bdat.flags) || tx->io_error) {
		if (!tx->bdat.flags)
			session_error(s, 451, "4.3.0", "Error: queue file write error");
		relay_spool_abort(tx->spool);
		tx->spool = NULL;
		tx->bdat_failed = true;
		return;
	}
	if (tx->bdat_last) {
		if (data_refuse_header_from(s)) {
			tx_reset(tx);
			return;
		}
		data_commit(s);
		return;
	}
	session_send(s, 250, "2.0.0", "%llu octets received", (unsigned long long)tx->size);
}

static bool data_input_bdat(struct session *s)
{
	struct smtp_tx *tx = &s->tx;
	if (tx->bdat_left > 0) {
		size_t len;
		const char *in = smtp_reader_peek(&s->reader, &len);
		if (len == 0)
			return false;
		size_t n = len < tx->bdat_left ? len : (size_t)tx->bdat_left;
		if (tx->spool && !tx->bdat.flags) {
			const struct conf *c = data_conf(s);
			smtp_bdat_feed(&tx->bdat, in, n);
			if (tx->size + n > c->max_message_size)
				tx->bdat.flags |= SMTP_DATA_ERR_TOO_BIG;
			else if (!tx->bdat.flags && data_emit(s, in, n) < 0)
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

bool session_data_input(struct session *s)
{
	return s->state == SS_DATA ? data_input_dot(s) : data_input_bdat(s);
}

/* The chunk of a refused BDAT is read and dropped; the reply goes now
 * and is sent once the bytes are gone (RFC 3030 3). */
static void bdat_refuse(struct session *s, uint64_t size, int code, const char *enh,
                        const char *text)
{
	session_error(s, code, enh, "%s", text);
	if (s->state == SS_CLOSING || s->close_after_flush)
		return;
	s->tx.bdat_left = size;
	s->tx.bdat_failed = true;
	if (s->tx.spool) {
		relay_spool_abort(s->tx.spool);
		s->tx.spool = NULL;
	}
	s->state = SS_BDAT;
}

/* Reading the chunk announced by the BDAT command begins. */
static void bdat_start(struct session *s)
{
	s->state = SS_BDAT;
	session_wait_client(s, session_data_timeout(s));
}

void session_cmd_bdat(struct session *s, struct smtp_cmd *cmd)
{
	struct smtp_tx *tx = &s->tx;
	int code;
	const char *enh, *text;
	if (data_check(s, &code, &enh, &text) < 0) {
		bdat_refuse(s, cmd->chunk_size, code, enh, text);
		return;
	}
	if (tx->bdat_failed) {
		bdat_refuse(s, cmd->chunk_size, 503, "5.5.1", "Error: a previous chunk failed; send RSET");
		return;
	}
	tx->bdat_left = cmd->chunk_size;
	tx->bdat_last = cmd->last;
	if (!tx->bdat_started) {
		/* The chunk waits in the input until the file exists. */
		tx->bdat_started = true;
		smtp_bdat_init(&tx->bdat, data_text_line_max(data_conf(s)));
		data_open_spool(s);
		return;
	}
	bdat_start(s);
}

/* The thread pool has created the queue file (rc == 0) or failed to: the
 * DATA or BDAT command that asked for it goes on. */
static void data_spool_created(struct session *s, struct relay_spool_file *f, int rc)
{
	struct smtp_tx *tx = &s->tx;
	s->state = SS_COMMAND;
	if (s->shutting_down) {
		/* A stop came while we waited: no 354 now, with only the rest of
		 * the grace period left to receive the message in. */
		relay_spool_abort(f);
		tx_reset(tx);
		session_shutdown(s);
		session_flush(s);
		return;
	}
	if (rc < 0) {
		log_err("event=spool_error sid=%s qid=%s error=\"%s\"", s->sid, tx->qid,
		        strerror(-rc));
		relay_spool_abort(f);
		/* A second DATA in this transaction starts the scan afresh. */
		trace_scan_free(tx->scan);
		tx->scan = NULL;
		if (tx->bdat_started) {
			bdat_refuse(s, tx->bdat_left, 451, "4.3.0", "Error: queue file write error");
			session_wait_client(s, session_data_timeout(s));
		} else {
			session_error(s, 451, "4.3.0", "Error: queue file write error");
			session_wait_client(s, session_idle_timeout(s));
		}
	} else {
		tx->spool = f;
		if (tx->bdat_started)
			bdat_start(s);
		else
			data_start(s);
	}
	session_resume(s);
	session_process(s);
	session_flush(s);
}
