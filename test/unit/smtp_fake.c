/*
 * smtp_fake.c - the engine's world, faked: see smtp_fake.h.
 *
 * The fake SASL knows one account: PLAIN "\0alice\0secret"
 * (AGFsaWNlAHNlY3JldA==) is accepted as "alice", anything else fails; a
 * PLAIN without an initial response first gets an empty 334.
 */
#include "test/unit/smtp_fake.h"

#include <stdlib.h>
#include <string.h>

#define FAKE_GOOD_PLAIN "AGFsaWNlAHNlY3JldA=="

/* ---- the transport --------------------------------------------------------------- */

static void io_send(void *c, const char *p, size_t n)
{
	struct fake *f = c;
	buf_append(&f->out, p, n);
}

static void io_flush(void *c)
{
	struct fake *f = c;
	if (f->closed)
		return;
	if (f->flushed < f->out.len)
		f->flushes++;   /* one write would leave */
	f->flushed = f->out.len;
	if (f->close_after_flush)
		f->closed = true;
}

static void io_close(void *c, bool after_flush)
{
	struct fake *f = c;
	if (after_flush) {
		f->close_after_flush = true;
		io_flush(c);
	} else {
		f->closed = true;
	}
}

static int io_start_tls(void *c, bool refusal)
{
	struct fake *f = c;
	if (f->tls_refuse)
		return -1;
	f->tls_started = refusal ? 2 : 1;
	return 0;
}

static void io_pause(void *c)
{
	((struct fake *)c)->reading = false;
}

static void io_resume(void *c)
{
	((struct fake *)c)->reading = true;
}

static void io_set_timer(void *c, uint64_t ms)
{
	((struct fake *)c)->timer_ms = ms;
}

static uint64_t io_now_ms(void *c)
{
	return ((struct fake *)c)->now;
}

static unsigned io_sessions(void *c)
{
	return 1;
}

static const struct smtp_io fake_io = {
	.send = io_send, .flush = io_flush, .close = io_close, .start_tls = io_start_tls,
	.pause = io_pause, .resume = io_resume, .set_timer = io_set_timer, .now_ms = io_now_ms,
	.sessions = io_sessions,
};

/* ---- services ----------------------------------------------------------------------- */

static void pend(struct fake *f, struct fake_pending p)
{
	if (f->npending == FAKE_MAX_PENDING)
		abort();
	f->pending[f->npending++] = p;
}

struct fake_auth {
	bool continued;
};

static void *auth_open(void *ctx, const char *lip, unsigned lport, const char *cip,
                       unsigned cport, unsigned ssf)
{
	return calloc(1, sizeof(struct fake_auth));
}

static bool auth_offered(void *ctx, void *a, const char *mech)
{
	return strcmp(mech, "PLAIN") == 0;
}

static int auth_judge(struct fake_auth *a, const char *mech, const char *input)
{
	if (mech && !input) {
		a->continued = true;
		return SMTP_AUTH_CONTINUE;
	}
	if (!input || strcmp(input, "=") == 0)
		return SMTP_AUTH_MALFORMED;
	return strcmp(input, FAKE_GOOD_PLAIN) == 0 ? SMTP_AUTH_OK : SMTP_AUTH_FAIL;
}

static void auth_fill(struct smtp_auth_answer *ans, void *a, int result)
{
	memset(ans, 0, sizeof(*ans));
	ans->auth = a;
	ans->result = result;
	ans->mech = "PLAIN";
	ans->typed = "alice";
	ans->challenge = "";
	if (result == SMTP_AUTH_OK)
		ans->account = "alice";
	if (result == SMTP_AUTH_FAIL) {
		ans->attempted = "alice";
		ans->error = "wrong password";
	}
}

static bool auth_step(void *ctx, void *a, const char *mech, const char *input,
                      struct smtp_token tok, struct smtp_auth_answer *ans)
{
	struct fake *f = ctx;
	int result = auth_judge(a, mech, input);
	if (!f->auth_async) {
		auth_fill(ans, a, result);
		return true;
	}
	pend(f, (struct fake_pending){ .kind = SMTP_DONE_AUTH, .tok = tok, .auth = a,
	                               .auth_result = result });
	return false;
}

static void auth_free(void *ctx, void *a)
{
	free(a);
}

static const struct smtp_auth_ops fake_auth = {
	.open = auth_open, .offered = auth_offered, .step = auth_step, .free = auth_free,
};

static void queue_open(void *ctx, const struct smtp_envelope *env, const struct buf *head,
                       struct smtp_token tok)
{
	struct fake *f = ctx;
	buf_free(&f->message);
	buf_append(&f->message, head->data ? head->data : "", head->len);
	pend(f, (struct fake_pending){ .kind = SMTP_DONE_QUEUE_OPEN, .tok = tok,
	                               .file = f->queue_fail_open ? NULL : &f->message });
	f->files_open++;
}

static int queue_write(void *ctx, void *file, const char *p, size_t n)
{
	buf_append(file, p, n);
	return 0;
}

static void queue_commit(void *ctx, void *file, void *rider, struct smtp_token tok)
{
	struct fake *f = ctx;
	if (rider) {
		f->riders++;
		free(rider);
	}
	pend(f, (struct fake_pending){ .kind = SMTP_DONE_QUEUE_COMMIT, .tok = tok });
}

static void queue_abort(void *ctx, void *file)
{
	((struct fake *)ctx)->files_aborted++;
}

static void queue_drop_rider(void *ctx, void *rider)
{
	free(rider);
}

static const struct smtp_queue_ops fake_queue = {
	.open = queue_open, .write = queue_write, .commit = queue_commit, .abort = queue_abort,
	.drop_rider = queue_drop_rider,
};

bool fake_complete(struct fake *f)
{
	if (f->npending == 0)
		return false;
	struct fake_pending p = f->pending[0];
	memmove(f->pending, f->pending + 1, --f->npending * sizeof(p));
	struct smtp_done d = { .kind = p.kind };
	struct smtp_auth_answer ans;
	if (p.kind == SMTP_DONE_AUTH) {
		auth_fill(&ans, p.auth, p.auth_result);
		d.auth = &ans;
	} else if (p.kind == SMTP_DONE_QUEUE_OPEN) {
		d.file = p.file;
		d.status = p.file ? 0 : -5;
	} else {
		d.status = f->queue_fail_commit ? -5 : 0;
		if (d.status == 0)
			f->files_committed++;
	}
	if (f->s && p.tok.sid == smtp_session_id(f->s) &&
	    smtp_session_complete(f->s, p.tok.seq, &d)) {
		if (!smtp_session_holds_replies(f->s))
			io_flush(f);
		return true;
	}
	/* Not taken: the carrier frees what it carries. */
	if (p.kind == SMTP_DONE_AUTH)
		free(p.auth);
	return true;
}

void fake_complete_all(struct fake *f)
{
	while (fake_complete(f))
		;
}

/* ---- the hook ------------------------------------------------------------------------ */

struct fake_state {
	bool waiting;
};

static enum hook_result hook_check(void *self, void *state, enum hook_phase phase,
                                   const struct hook_view *v, struct hook_token t,
                                   struct hook_verdict *out)
{
	struct fake *f = self;
	struct fake_state *st = state;
	for (size_t i = 0; i < f->nrules; i++) {
		const struct fake_rule *r = &f->rules[i];
		if (r->phase != phase || (r->arg && (!v->arg || strcmp(r->arg, v->arg) != 0)))
			continue;
		if (phase == HOOK_AUTH && r->auth_outcome != v->auth_outcome)
			continue;
		if (r->pending && !f->woken_pending) {
			st->waiting = true;
			return HOOK_PENDING;
		}
		if (!r->code)
			return HOOK_OK;
		hook_verdict_set(out, r->code, r->enh, r->rule, "%s", r->text ? r->text : "no");
		out->not_an_error = r->not_an_error;
		out->delay_ms = r->delay_ms;
		return out->result;
	}
	return HOOK_OK;
}

static void hook_observe(void *self, void *state, enum hook_phase phase,
                         const struct hook_view *v, const struct hook_verdict *verdict)
{
	struct fake *f = self;
	if (!verdict->code) {
		f->observed_ok[phase]++;
		return;
	}
	if (f->nseen < FAKE_MAX_SEEN) {
		f->seen[f->nseen] = *verdict;
		f->seen_phase[f->nseen++] = phase;
	}
}

static int stage_feed(void *st, const char *p, size_t n, msg_emit_fn emit, void *ctx)
{
	return emit(ctx, p, n);
}

static int stage_finish(void *st, msg_emit_fn emit, void *ctx)
{
	return emit(ctx, "", 0);
}

static void stage_free(void *st)
{
}

static const struct msg_stage_ops fake_stage_ops = {
	.name = "fake", .feed = stage_feed, .finish = stage_finish, .free = stage_free,
};

static void *hook_stage(void *self, void *state, const struct hook_view *v, struct buf *head)
{
	struct fake *f = self;
	if (!f->stage_head)
		return NULL;
	buf_puts(head, "Received: from fake\r\n");
	return f;
}

static const struct hook_ops fake_hook_ops = {
	.name = "fake",
	.phases = ~0u,
	.state_size = sizeof(struct fake_state),
	.check = hook_check,
	.observe = hook_observe,
	.stage_ops = &fake_stage_ops,
	.stage = hook_stage,
};

/* ---- the host ---------------------------------------------------------------------------- */

static struct fake *host_fake(struct hook_host *h)
{
	return (struct fake *)((char *)h - offsetof(struct fake, host));
}

static void *host_state(struct hook_host *h, uint64_t sid, unsigned index)
{
	struct fake *f = host_fake(h);
	return f->s && smtp_session_id(f->s) == sid ? smtp_session_hook_state(f->s, index) : NULL;
}

static struct hook_facts *host_facts(struct hook_host *h, uint64_t sid)
{
	struct fake *f = host_fake(h);
	return f->s && smtp_session_id(f->s) == sid ? smtp_session_facts(f->s) : NULL;
}

static void host_wake(struct hook_host *h, uint64_t sid, unsigned index)
{
	struct fake *f = host_fake(h);
	struct smtp_done d = { .kind = SMTP_DONE_HOOK, .hook = index };
	if (f->s && smtp_session_id(f->s) == sid) {
		smtp_session_complete(f->s, 0, &d);
		if (!smtp_session_holds_replies(f->s))
			io_flush(f);
	}
}

static const struct hook_host_ops fake_host_ops = {
	.state = host_state, .facts = host_facts, .wake = host_wake,
};

/* ---- the harness ------------------------------------------------------------------------- */

struct fake *fake_new(enum hook_mode mode)
{
	struct fake *f = calloc(1, sizeof(*f));
	buf_init(&f->out);
	buf_init(&f->message);
	f->host.ops = &fake_host_ops;
	f->chain = hook_chain_new();
	hook_chain_add(f->chain, &fake_hook_ops, f);
	f->timer_ms = UINT64_MAX;
	f->now = 1000;
	f->cfg = (struct smtp_config){
		.hostname = "mx.test", .listener = mode == HOOK_MODE_MX ? "mx" : "submission",
		.mode = mode, .max_message_size = 10000, .max_command_line = 512,
		.max_text_line = 1000, .idle_timeout = 300, .data_timeout = 600, .data_progress = 1024,
		.session_lifetime = 3600, .max_connections = 100, .nloops = 1,
		.handshake_timeout = 30, .max_errors = 10, .auth_mechs = "PLAIN",
		.hooks = f->chain, .auth = &fake_auth, .auth_ctx = f, .queue = &fake_queue,
		.queue_ctx = f,
	};
	struct smtp_peer peer = { .client_ip = "192.0.2.1", .client_port = 4711,
		                  .local_ip = "192.0.2.25", .local_port = 587 };
	f->s = smtp_session_new(&f->cfg, 7, &peer, &fake_io, f, &f->host, f);
	return f;
}

void fake_start(struct fake *f)
{
	smtp_session_start(f->s);
	io_flush(f);
}

void fake_rule(struct fake *f, struct fake_rule r)
{
	if (f->nrules < FAKE_MAX_RULES)
		f->rules[f->nrules++] = r;
}

void fake_sendn(struct fake *f, const char *p, size_t n)
{
	if (f->closed)
		return;
	smtp_session_input(f->s, p, n);
	if (!f->closed && !smtp_session_holds_replies(f->s))
		io_flush(f);
}

void fake_send(struct fake *f, const char *s)
{
	fake_sendn(f, s, strlen(s));
}

void fake_wake(struct fake *f)
{
	f->woken_pending = true;
	struct hook_token t = { .host = &f->host, .sid = smtp_session_id(f->s), .index = 0 };
	hook_wake(&t);
}

void fake_tls(struct fake *f)
{
	static const struct hook_tls facts = {
		.version = "TLSv1.3", .cipher = "TLS_AES_256_GCM_SHA384", .bits = 256,
	};
	f->tls_started = 0;
	smtp_session_tls_ready(f->s, &facts);
	if (!f->closed && !smtp_session_holds_replies(f->s))
		io_flush(f);
}

void fake_timer(struct fake *f)
{
	if (f->timer_ms == UINT64_MAX)
		return;
	f->now += f->timer_ms;
	f->timer_ms = UINT64_MAX;
	smtp_session_timer(f->s);
	if (!f->closed && !smtp_session_holds_replies(f->s))
		io_flush(f);
}

const char *fake_replies(struct fake *f)
{
	struct buf *b = &f->replies;
	buf_free(b);
	for (size_t i = f->taken; i < f->flushed; i++) {
		if (f->out.data[i] == '\r')
			continue;
		buf_append(b, &f->out.data[i], 1);
	}
	f->taken = f->flushed;
	while (b->len && b->data[b->len - 1] == '\n')
		b->data[--b->len] = '\0';
	return b->data ? b->data : "";
}

size_t fake_unflushed(const struct fake *f)
{
	return f->out.len - f->flushed;
}

void fake_free(struct fake *f)
{
	smtp_session_free(f->s);
	for (size_t i = 0; i < f->npending; i++)
		if (f->pending[i].kind == SMTP_DONE_AUTH)
			free(f->pending[i].auth);
	hook_chain_free(f->chain);
	buf_free(&f->out);
	buf_free(&f->message);
	buf_free(&f->replies);
	free(f);
}
