/*
 * hook.c - the trace store and the trace mark in the phase pipeline.
 *
 * - A stage for every message: our Received header (the head of the queue
 *   file), then the trace scanner (trace/scan.c: the Message-ID, the
 *   X-Postern-Trace header, the SHA-256 of exactly the bytes relayed),
 *   whose results go into the session's facts.
 * - At HOOK_COMMIT, the record, built from the view and handed to the
 *   queue to be made durable in the same step as the file (relay/spool.c).
 * - An observer: every refusal with a rule becomes a row of the store.
 *
 * Ownership: trace_hook_new() returns an object owned by the caller
 * (freed by trace_hook_free() once no chain uses it); it borrows the store
 * and the keys. A stage belongs to the message's pipe.
 */
#include "trace/trace.h"
#include "hook/hook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct trace_hook {
	struct trace_store *store;     /* NULL: tracing off */
	const struct trace_key *key;   /* NULL: no trace header */
	char *hostname;
	bool show_account;
};

struct trace_stage {
	struct trace_scan *scan;
	struct hook_facts *facts;
	struct buf out;
};

struct trace_hook *trace_hook_new(struct trace_store *store, const struct trace_key *key,
                                  const char *hostname, bool show_account)
{
	struct trace_hook *h = xcalloc(1, sizeof(*h));
	h->store = store;
	h->key = key;
	h->hostname = str_dup(hostname);
	h->show_account = show_account;
	return h;
}

void trace_hook_free(struct trace_hook *h)
{
	if (!h)
		return;
	free(h->hostname);
	free(h);
}

/* ---- the stage --------------------------------------------------------------------- */

static int stage_feed(void *st, const char *p, size_t n, msg_emit_fn emit, void *ctx)
{
	struct trace_stage *ts = st;
	trace_scan_feed(ts->scan, p, n, &ts->out);
	int rc = emit(ctx, ts->out.data, ts->out.len);
	buf_consume(&ts->out, ts->out.len);
	return rc;
}

static int stage_finish(void *st, msg_emit_fn emit, void *ctx)
{
	struct trace_stage *ts = st;
	trace_scan_finish(ts->scan, &ts->out);
	int rc = emit(ctx, ts->out.data, ts->out.len);
	buf_free(&ts->out);
	str_lcpy(ts->facts->body_sha256, trace_scan_sha256(ts->scan),
	         sizeof(ts->facts->body_sha256));
	const char *mid = trace_scan_message_id(ts->scan);
	hook_facts_set(&ts->facts->message_id, mid && *mid ? mid : NULL);
	return rc;
}

static void stage_free(void *st)
{
	struct trace_stage *ts = st;
	trace_scan_free(ts->scan);
	buf_free(&ts->out);
	free(ts);
}

static const struct msg_stage_ops trace_stage_ops = {
	.name = "trace",
	.feed = stage_feed,
	.finish = stage_finish,
	.free = stage_free,
};

static void *trace_stage_new(void *self, void *state, const struct hook_view *v, struct buf *head)
{
	struct trace_hook *h = self;
	const struct hook_tls *t = v->tls;
	char trace_id[TRACE_ID_LEN + 1];
	trace_new_id(trace_id);
	str_lcpy(v->facts->trace_id, trace_id, sizeof(v->facts->trace_id));
	struct trace_received r = {
		.helo = v->helo, .esmtp = v->esmtp, .client_ip = v->client_ip,
		.client_name = v->facts->client_name,
		.tls_version = t ? t->version : NULL, .tls_cipher = t ? t->cipher : NULL,
		.tls_bits = t ? t->bits : 0, .cert_fingerprint = t ? t->cert_fp : NULL,
		.authenticated = v->account != NULL, .account = v->account,
		.show_account = h->show_account, .hostname = h->hostname, .qid = v->qid,
		.single_rcpt = v->nrcpts == 1 ? v->rcpts[0] : NULL, .time = (time_t)v->time,
	};
	size_t from = head->len;
	trace_received(head, &r);
	struct trace_stage *ts = xcalloc(1, sizeof(*ts));
	ts->facts = v->facts;
	buf_init(&ts->out);
	/* Every message goes through the scanner, signed or not: it notes the
	 * Message-ID for the record, renames a client's X-Postern-Trace and,
	 * on the listeners that require AUTH (we are the submission agent
	 * there, RFC 6409 8.3; an MTA relaying for others adds nothing, RFC
	 * 5321 6.4), adds the Message-ID a client left out, so that no MTA
	 * downstream adds one after the MAC was made. The trace id is unique
	 * and already public in the trace header. */
	ts->scan = trace_scan_new(h->key, h->hostname, trace_id, v->time);
	if (v->mode != HOOK_MODE_MX) {
		char mid[TRACE_ID_LEN + 300];
		snprintf(mid, sizeof(mid), "<%s@%s>", trace_id, h->hostname);
		trace_scan_add_message_id(ts->scan, mid);
	}
	trace_scan_prefix(ts->scan, head->data + from, head->len - from);
	return ts;
}

/* ---- the record and the refusals ------------------------------------------------------- */

static enum hook_result trace_check(void *self, void *state, enum hook_phase phase,
                                    const struct hook_view *v, struct hook_token t,
                                    struct hook_verdict *out)
{
	struct trace_hook *h = self;
	if (phase != HOOK_COMMIT || !h->store)
		return HOOK_OK;
	const struct hook_tls *tls = v->tls;
	struct trace_record r = {
		.time = v->time, .sid = v->sid, .listener = v->listener, .client_ip = v->client_ip,
		.client_port = v->client_port, .reverse_name = v->facts->client_name,
		.helo = v->helo,
		.tls_version = tls ? tls->version : NULL, .tls_cipher = tls ? tls->cipher : NULL,
		.tls_sni = tls ? tls->sni : NULL, .cert_fp = tls ? tls->cert_fp : NULL,
		.cert_subject = tls ? tls->cert_subject : NULL,
		.cert_issuer = tls ? tls->cert_issuer : NULL,
		.sasl_mech = v->sasl_mech, .account = v->account, .mail_from = v->mail_from,
		.rcpts = v->rcpts, .nrcpts = v->nrcpts, .size = v->size,
		.body_sha256 = v->facts->body_sha256[0] ? v->facts->body_sha256 : NULL,
		.message_id = v->facts->message_id,
	};
	str_lcpy(r.qid, v->qid, sizeof(r.qid));
	str_lcpy(r.trace_id, v->facts->trace_id, sizeof(r.trace_id));
	/* Rides with the queue file: both durable, or neither. */
	*v->rider = trace_entry_new(&r);
	return HOOK_OK;
}

static const char *command_of(enum hook_phase phase)
{
	switch (phase) {
	case HOOK_CONNECT: return "CONNECT";
	case HOOK_TLS: return "TLS";
	case HOOK_HELO: return "HELO";
	case HOOK_AUTH: return "AUTH";
	case HOOK_MAIL: return "MAIL";
	case HOOK_RCPT: return "RCPT";
	default: return "DATA";
	}
}

static void trace_observe(void *self, void *state, enum hook_phase phase,
                          const struct hook_view *v, const struct hook_verdict *verdict)
{
	struct trace_hook *h = self;
	if (!h->store || !verdict->code || !verdict->rule)
		return;
	struct trace_reject r = {
		.time = time(NULL), .sid = v->sid, .listener = v->listener, .client_ip = v->client_ip,
		.helo = v->helo,
		/* AUTH: the account the name tried would be */
		.account = v->account ? v->account : phase == HOOK_AUTH ? v->arg : NULL,
		.command = command_of(phase), .mail_from = v->mail_from,
		.rcpt = phase == HOOK_RCPT ? v->arg : NULL, .rule = verdict->rule,
		.code = verdict->code, .enh = verdict->enh, .text = verdict->text,
	};
	trace_store_reject(h->store, &r);
}

const struct hook_ops trace_hook_ops = {
	.name = "trace",
	.phases = HOOK_BIT(HOOK_COMMIT),
	.check = trace_check,
	.observe = trace_observe,
	.stage_ops = &trace_stage_ops,
	.stage = trace_stage_new,
};
