/*
 * services.c - what the engine asks to have done off the loop, and the
 * answers back: SASL steps on libuv's thread pool (password backends
 * block), queue files created and committed by the spool's threads. Each
 * answer comes back on the session's loop and goes to conn_complete()
 * with the session's id and wait; when the session has gone (or moved
 * on), what the answer carries is freed here: the SASL object, the file.
 *
 * AUTH data is a password in base64: the work's copies (input and
 * challenge) are wiped when the work is freed, on every path.
 *
 * Ownership: a work item belongs to its request until its callback; the
 * answers point into the SASL object, which lives until it is freed.
 */
#include "server/daemon.h"
#include "auth/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct worker *server_worker_of(struct daemon *d, void *route)
{
	for (unsigned i = 0; i < d->nworkers; i++)
		if (d->workers[i].conn == route)
			return &d->workers[i];
	fatal("services: an answer for no loop");
}

/* ---- SASL ------------------------------------------------------------------------------- */

struct auth_work {
	uv_work_t req;
	struct smtp_token tok;
	struct auth_session *auth;  /* the work's while it runs */
	char *mech;                 /* set for the first step only */
	char *input;                /* base64 text, "=" or NULL */
	struct buf challenge;
	int result;
};

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

static void *auth_open(void *ctx, const char *local_ip, unsigned local_port,
                       const char *client_ip, unsigned client_port, unsigned ssf)
{
	struct daemon *d = ctx;
	char local[96], remote[96];
	snprintf(local, sizeof(local), "%s;%u", local_ip, local_port);
	snprintf(remote, sizeof(remote), "%s;%u", client_ip, client_port);
	return auth_session_new(d->conf->hostname, local, remote, ssf, NULL);
}

static bool auth_offered(void *ctx, void *a, const char *mech)
{
	return auth_mech_offered(a, mech);
}

static void auth_free_session(void *ctx, void *a)
{
	auth_session_free(a);
}

/* The engine's answer from the SASL object after a step. */
static void auth_answer(struct auth_session *a, int result, const char *challenge,
                        struct smtp_auth_answer *ans)
{
	memset(ans, 0, sizeof(*ans));
	ans->auth = a;
	ans->mech = auth_mech(a);
	ans->typed = auth_attempted_user(a);
	switch (result) {
	case AUTH_OK:
		ans->result = SMTP_AUTH_OK;
		ans->account = auth_username(a);
		ans->cached = auth_cached(a);
		break;
	case AUTH_CONTINUE:
		ans->result = SMTP_AUTH_CONTINUE;
		ans->challenge = challenge;
		break;
	case AUTH_TEMPFAIL:
		ans->result = SMTP_AUTH_TEMPFAIL;
		ans->error = auth_error(a);
		break;
	default:
		ans->result = auth_malformed(a) ? SMTP_AUTH_MALFORMED : SMTP_AUTH_FAIL;
		ans->attempted = auth_attempted_account(a);
		ans->error = auth_error(a);
		break;
	}
}

static void auth_work_run(uv_work_t *req)
{
	struct auth_work *aw = req->data;
	if (aw->mech)
		aw->result = auth_start(aw->auth, aw->mech, aw->input, &aw->challenge);
	else
		aw->result = auth_step(aw->auth, aw->input, &aw->challenge);
}

static void auth_work_done(uv_work_t *req, int status)
{
	struct auth_work *aw = req->data;
	if (status == UV_ECANCELED)
		aw->result = AUTH_TEMPFAIL;
	struct smtp_auth_answer ans;
	auth_answer(aw->auth, aw->result, aw->challenge.data, &ans);
	struct smtp_done done = { .kind = SMTP_DONE_AUTH, .auth = &ans };
	if (!conn_complete(aw->tok.route, aw->tok.sid, aw->tok.seq, &done))
		auth_session_free(aw->auth);   /* the client left meanwhile */
	auth_work_free(aw);
}

static bool auth_step_now(void *ctx, void *a, const char *mech, const char *input,
                          struct smtp_token tok, struct smtp_auth_answer *ans)
{
	struct daemon *d = ctx;
	/* A login seen before, with the sasldb unchanged, is answered here:
	 * no worker, no Berkeley DB. Anything else goes to Cyrus. */
	if (mech ? auth_start_cached(a, mech, input) : auth_step_cached(a, input)) {
		auth_answer(a, AUTH_OK, NULL, ans);
		return true;
	}
	struct worker *w = server_worker_of(d, tok.route);
	struct auth_work *aw = xcalloc(1, sizeof(*aw));
	aw->req.data = aw;
	aw->tok = tok;
	aw->auth = a;
	aw->mech = str_dup(mech);
	aw->input = str_dup(input);
	buf_init(&aw->challenge);
	if (uv_queue_work(&w->loop, &aw->req, auth_work_run, auth_work_done) < 0) {
		aw->auth = NULL;
		auth_work_free(aw);
		memset(ans, 0, sizeof(*ans));
		ans->result = SMTP_AUTH_TEMPFAIL;
		ans->auth = a;
		ans->error = "cannot queue the SASL step";
		return true;
	}
	return false;
}

const struct smtp_auth_ops server_auth_ops = {
	.open = auth_open,
	.offered = auth_offered,
	.step = auth_step_now,
	.free = auth_free_session,
};

/* ---- the queue -------------------------------------------------------------------------- */

struct queue_work {
	struct smtp_token tok;
	struct worker *w;
	struct relay_spool_file *f;
	char qid[ID_LEN + 1];
	struct trace_entry *record;  /* rides with the file, or NULL */
};

static void queue_created(int status, void *arg)
{
	struct queue_work *qw = arg;
	qw->w->inflight--;
	struct smtp_done done = {
		.kind = SMTP_DONE_QUEUE_OPEN, .file = status == 0 ? qw->f : NULL, .status = status,
	};
	/* A file the session did not take (it failed, or the client left). */
	if (!conn_complete(qw->tok.route, qw->tok.sid, qw->tok.seq, &done) || status != 0)
		relay_spool_abort(qw->f);
	free(qw);
}

static void queue_open(void *ctx, const struct smtp_envelope *e, const struct buf *head,
                       struct smtp_token tok)
{
	struct daemon *d = ctx;
	struct relay_envelope env = {
		.time = (time_t)e->time, .from = (char *)e->from, .rcpts = (char **)e->rcpts,
		.nrcpts = e->nrcpts, .smtputf8 = e->smtputf8, .eightbit = e->eightbit,
	};
	str_lcpy(env.qid, e->qid, sizeof(env.qid));
	struct queue_work *qw = xcalloc(1, sizeof(*qw));
	qw->tok = tok;
	qw->w = server_worker_of(d, tok.route);
	qw->f = relay_spool_prepare(d->spool, &env, e->kv, e->nkv, head->data ? head->data : "",
	                            head->len);
	qw->w->inflight++;
	relay_spool_create_async(qw->f, &qw->w->loop, &qw->w->commit_async, queue_created, qw);
}

static int queue_write(void *ctx, void *file, const char *p, size_t n)
{
	return relay_spool_write(file, p, n);
}

/* The queue file is durable, and with it its record (they are written in
 * one step, relay/spool.c), or neither is. */
static void queue_committed(int status, void *arg)
{
	struct queue_work *qw = arg;
	struct daemon *d = qw->w->d;
	qw->w->inflight--;
	bool unrecorded = qw->record && trace_entry_status(qw->record) != 0;
	if (status == 0 && d->relay)
		relay_enqueue(d->relay, qw->qid);
	if (unrecorded)
		log_err("event=trace_error qid=%s error=\"%s\" queued=no", qw->qid,
		        strerror(-trace_entry_status(qw->record)));
	else if (status != 0)
		log_err("event=spool_error qid=%s error=\"commit: %s\"", qw->qid, strerror(-status));
	struct smtp_done done = {
		.kind = SMTP_DONE_QUEUE_COMMIT, .status = status, .unrecorded = unrecorded,
	};
	if (!conn_complete(qw->tok.route, qw->tok.sid, qw->tok.seq, &done) && status == 0)
		log_info("event=queued qid=%s note=\"client left before the reply\"", qw->qid);
	trace_entry_free(qw->record);
	free(qw);
}

static void queue_commit(void *ctx, void *file, void *rider, struct smtp_token tok)
{
	struct daemon *d = ctx;
	struct queue_work *qw = xcalloc(1, sizeof(*qw));
	qw->tok = tok;
	qw->w = server_worker_of(d, tok.route);
	qw->record = rider;
	str_lcpy(qw->qid, relay_spool_file_qid(file), sizeof(qw->qid));
	qw->w->inflight++;
	relay_spool_commit(file, rider, &qw->w->loop, &qw->w->commit_async, queue_committed, qw);
}

static void queue_abort(void *ctx, void *file)
{
	relay_spool_abort(file);
}

static void queue_drop_rider(void *ctx, void *rider)
{
	trace_entry_free(rider);
}

const struct smtp_queue_ops server_queue_ops = {
	.open = queue_open,
	.write = queue_write,
	.commit = queue_commit,
	.abort = queue_abort,
	.drop_rider = queue_drop_rider,
};
