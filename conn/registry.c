/*
 * registry.c - the loop's sessions by id. Everything that answers later
 * (a SASL step, a queue file, a DNS reply, a filter) carries the session's
 * id, never a pointer, and is routed here: a session that has gone is not
 * found, and the answer is dropped by its sender. Also the hook host: a
 * hook's state and facts, and its wake, found the same way.
 *
 * Ownership: the table holds no reference; connections remove themselves
 * when they close.
 */
#include "conn/conn_int.h"

#include <stddef.h>

void conn__add(struct conn_loop *cl, struct conn *c)
{
	struct conn **head = &cl->buckets[c->id % CONN_BUCKETS];
	c->hnext = *head;
	*head = c;
	cl->nsessions++;
}

void conn__remove(struct conn_loop *cl, struct conn *c)
{
	for (struct conn **p = &cl->buckets[c->id % CONN_BUCKETS]; *p; p = &(*p)->hnext) {
		if (*p == c) {
			*p = c->hnext;
			cl->nsessions--;
			return;
		}
	}
}

struct conn *conn__find(struct conn_loop *cl, uint64_t id)
{
	for (struct conn *c = cl->buckets[id % CONN_BUCKETS]; c; c = c->hnext)
		if (c->id == id)
			return c;
	return NULL;
}

unsigned conn_loop_sessions(const struct conn_loop *cl)
{
	return cl->nsessions;
}

bool conn_complete(void *route, uint64_t sid, uint32_t seq, const struct smtp_done *d)
{
	struct conn_loop *cl = route;
	struct conn *c = conn__find(cl, sid);
	if (!c || !c->s || c->closed)
		return false;
	/* The session flushes what its answer produced (smtp__continue). */
	return smtp_session_complete(c->s, seq, d);
}

/* ---- the hook host ----------------------------------------------------------------- */

static struct conn_loop *host_loop(struct hook_host *h)
{
	return (struct conn_loop *)((char *)h - offsetof(struct conn_loop, host));
}

static struct smtp_session *host_session(struct hook_host *h, uint64_t sid)
{
	struct conn *c = conn__find(host_loop(h), sid);
	return c && !c->closed ? c->s : NULL;
}

static void *host_state(struct hook_host *h, uint64_t sid, unsigned index)
{
	struct smtp_session *s = host_session(h, sid);
	return s ? smtp_session_hook_state(s, index) : NULL;
}

static struct hook_facts *host_facts(struct hook_host *h, uint64_t sid)
{
	struct smtp_session *s = host_session(h, sid);
	return s ? smtp_session_facts(s) : NULL;
}

static void host_wake(struct hook_host *h, uint64_t sid, unsigned index)
{
	struct smtp_done d = { .kind = SMTP_DONE_HOOK, .hook = index };
	conn_complete(host_loop(h), sid, 0, &d);
}

const struct hook_host_ops conn__host_ops = {
	.state = host_state,
	.facts = host_facts,
	.wake = host_wake,
};
