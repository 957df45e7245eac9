/*
 * hook.c - the phase pipeline: chains of hooks, a session's run of them,
 * and the way a PENDING check is found again (by session id, through the
 * host that the engine's side of a loop provides).
 *
 * Ownership: see hook.h. A chain owns its array, not the hooks' objects;
 * a hook_session owns the states, one block for all hooks.
 */
#include "hook/hook.h"
#include "common/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hook_entry {
	const struct hook_ops *ops;
	void *self;
	size_t offset;           /* of its state in a session's block */
};

struct hook_chain {
	struct hook_entry *v;
	size_t n;
	size_t state_size;       /* all states, each aligned */
};

struct hook_session {
	const struct hook_chain *chain;
	/* The chain's shape, kept: a reload may free the chain before the
	 * session moves to the next one (hook_session_rechain). */
	const struct hook_ops **ops;
	size_t n, state_size;
	struct hook_host *host;
	uint64_t sid;
	bool opened;
	unsigned char *states;
};

#define HOOK_ALIGN 16

void hook_verdict_set(struct hook_verdict *v, int code, const char *enh, const char *rule,
                      const char *fmt, ...)
{
	v->code = code;
	v->enh = enh;
	v->rule = rule;
	v->result = code == 0 ? HOOK_OK : code < 500 ? HOOK_TEMP : HOOK_PERM;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->text, sizeof(v->text), fmt, ap);
	va_end(ap);
}

struct hook_chain *hook_chain_new(void)
{
	return xcalloc(1, sizeof(struct hook_chain));
}

void hook_chain_add(struct hook_chain *c, const struct hook_ops *ops, void *self)
{
	c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
	c->v[c->n] = (struct hook_entry){ ops, self, c->state_size };
	c->state_size += (ops->state_size + HOOK_ALIGN - 1) / HOOK_ALIGN * HOOK_ALIGN;
	c->n++;
}

size_t hook_chain_len(const struct hook_chain *c)
{
	return c->n;
}

void hook_chain_free(struct hook_chain *c)
{
	if (!c)
		return;
	free(c->v);
	free(c);
}

struct hook_session *hook_session_new(const struct hook_chain *c, struct hook_host *host,
                                      uint64_t sid)
{
	struct hook_session *hs = xcalloc(1, sizeof(*hs));
	hs->chain = c;
	hs->host = host;
	hs->sid = sid;
	hs->states = c->state_size ? xcalloc(1, c->state_size) : NULL;
	hs->n = c->n;
	hs->state_size = c->state_size;
	hs->ops = xcalloc(c->n ? c->n : 1, sizeof(*hs->ops));
	for (size_t i = 0; i < c->n; i++)
		hs->ops[i] = c->v[i].ops;
	return hs;
}

void *hook_session_state(struct hook_session *hs, unsigned index)
{
	if (index >= hs->chain->n || !hs->chain->v[index].ops->state_size)
		return NULL;
	return hs->states + hs->chain->v[index].offset;
}

void hook_session_rechain(struct hook_session *hs, const struct hook_chain *c)
{
	bool same = c->n == hs->n && c->state_size == hs->state_size;
	for (size_t i = 0; same && i < c->n; i++)
		same = c->v[i].ops == hs->ops[i];
	if (!same)
		fatal("hook_session_rechain: the chains differ");
	hs->chain = c;
}

static struct hook_token token_for(struct hook_session *hs, unsigned index)
{
	return (struct hook_token){ .host = hs->host, .sid = hs->sid, .index = index };
}

void hook_session_open(struct hook_session *hs, const struct hook_view *v)
{
	hs->opened = true;
	for (unsigned i = 0; i < hs->chain->n; i++) {
		const struct hook_entry *e = &hs->chain->v[i];
		if (e->ops->open)
			e->ops->open(e->self, hook_session_state(hs, i), v, token_for(hs, i));
	}
}

enum hook_result hook_session_resume(struct hook_session *hs, enum hook_phase phase,
                                     unsigned from, const struct hook_view *v,
                                     struct hook_verdict *out, unsigned *pending)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = from; i < hs->chain->n; i++) {
		const struct hook_entry *e = &hs->chain->v[i];
		if (!e->ops->check || !(e->ops->phases & HOOK_BIT(phase)))
			continue;
		memset(out, 0, sizeof(*out));
		enum hook_result r = e->ops->check(e->self, hook_session_state(hs, i), phase, v,
		                                   token_for(hs, i), out);
		out->result = r;
		if (r == HOOK_OK)
			continue;
		if (r == HOOK_PENDING) {
			*pending = i;
			return r;
		}
		out->hook = e->ops->name;
		if (!out->code) /* a refusal with no reply of its own */
			hook_verdict_set(out, r == HOOK_TEMP ? 451 : r == HOOK_DROP ? 421 : 554,
			                 r == HOOK_PERM ? "5.7.1" : r == HOOK_DROP ? "4.7.0" : "4.7.1",
			                 e->ops->name, "Refused by %s", e->ops->name);
		out->result = r;
		return r;
	}
	memset(out, 0, sizeof(*out));
	return HOOK_OK;
}

enum hook_result hook_session_run(struct hook_session *hs, enum hook_phase phase,
                                  const struct hook_view *v, struct hook_verdict *out,
                                  unsigned *pending)
{
	return hook_session_resume(hs, phase, 0, v, out, pending);
}

void hook_session_observe(struct hook_session *hs, enum hook_phase phase,
                          const struct hook_view *v, const struct hook_verdict *verdict)
{
	for (unsigned i = 0; i < hs->chain->n; i++) {
		const struct hook_entry *e = &hs->chain->v[i];
		if (e->ops->observe)
			e->ops->observe(e->self, hook_session_state(hs, i), phase, v, verdict);
	}
}

void hook_session_free(struct hook_session *hs)
{
	if (!hs)
		return;
	for (unsigned i = 0; hs->opened && i < hs->chain->n; i++) {
		const struct hook_entry *e = &hs->chain->v[i];
		if (e->ops->close)
			e->ops->close(e->self, hook_session_state(hs, i));
	}
	free(hs->states);
	free(hs->ops);
	free(hs);
}

unsigned hook_loop(const struct hook_token *t)
{
	return t->host->loop;
}

void *hook_state(const struct hook_token *t)
{
	return t->host->ops->state(t->host, t->sid, t->index);
}

struct hook_facts *hook_facts(const struct hook_token *t)
{
	return t->host->ops->facts(t->host, t->sid);
}

void hook_wake(const struct hook_token *t)
{
	t->host->ops->wake(t->host, t->sid, t->index);
}

void hook_facts_set(char **field, const char *value)
{
	free(*field);
	*field = str_dup(value);
}

void hook_facts_clear(struct hook_facts *f, bool all)
{
	free(f->message_id);
	f->message_id = NULL;
	f->trace_id[0] = '\0';
	f->body_sha256[0] = '\0';
	if (all) {
		free(f->client_name);
		free(f->dnsbl_zone);
		f->client_name = f->dnsbl_zone = NULL;
	}
}

void hook_session_stages(struct hook_session *hs, const struct hook_view *v,
                         struct msg_pipe *pipe, struct buf *head)
{
	for (unsigned i = 0; i < hs->chain->n; i++) {
		const struct hook_entry *e = &hs->chain->v[i];
		if (!e->ops->stage)
			continue;
		void *st = e->ops->stage(e->self, hook_session_state(hs, i), v, head);
		if (st)
			msg_pipe_add(pipe, e->ops->stage_ops, st);
	}
}

const char *hook_phase_name(enum hook_phase p)
{
	static const char *const names[HOOK_NPHASES] = {
		[HOOK_CONNECT] = "CONNECT", [HOOK_TLS] = "TLS", [HOOK_HELO] = "HELO",
		[HOOK_AUTH] = "AUTH", [HOOK_MAIL] = "MAIL", [HOOK_RCPT] = "RCPT",
		[HOOK_DATA] = "DATA", [HOOK_EOM] = "DATA", [HOOK_COMMIT] = "DATA",
		[HOOK_DELIVERY] = "DELIVERY", [HOOK_DISCONNECT] = "DISCONNECT",
	};
	return (unsigned)p < HOOK_NPHASES ? names[p] : "?";
}
