/*
 * conncount.c - concurrent connections per client (its address, or its
 * IPv6 network: policy_client_key) and in total, shared by every event
 * loop. Per-IP counts live in the sharded table and vanish
 * at zero; the total is one atomic counter, so no lock is global.
 *
 * policy_conncount_new() returns a counter freed with
 * policy_conncount_free().
 */
#include "policy/policy.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "common/common.h"
#include "policy/policy_int.h"

struct policy_conncount {
	struct policy__shardmap *map;
	atomic_uint total;
	unsigned ipv6_prefix;
};

struct count {
	unsigned n;
};

static bool count_expired(const void *rec, double now)
{
	return ((const struct count *)rec)->n == 0;
}

struct step {
	int delta;
	unsigned result;
};

static bool apply(void *rec, bool fresh, void *arg)
{
	struct count *c = rec;
	struct step *s = arg;
	if (s->delta > 0)
		c->n++;
	else if (c->n > 0)
		c->n--;
	s->result = c->n;
	return c->n == 0;
}

struct policy_conncount *policy_conncount_new(unsigned ipv6_prefix)
{
	struct policy_conncount *cc = xcalloc(1, sizeof(*cc));
	cc->ipv6_prefix = ipv6_prefix;
	/* Unbounded: entries exist only for open connections. */
	cc->map = policy__shardmap_new(sizeof(struct count), 0, count_expired);
	atomic_init(&cc->total, 0);
	return cc;
}

void policy_conncount_free(struct policy_conncount *cc)
{
	if (!cc)
		return;
	policy__shardmap_free(cc->map);
	free(cc);
}

unsigned policy_conncount_inc(struct policy_conncount *cc, const char *ip, unsigned *total)
{
	struct step s = { .delta = 1 };
	char key[POLICY_CLIENT_KEY_MAX];
	policy_client_key(ip, cc->ipv6_prefix, key, sizeof(key));
	unsigned t = atomic_fetch_add(&cc->total, 1) + 1;
	if (total)
		*total = t;
	policy__shardmap_with(cc->map, key, 0, true, apply, &s);
	return s.result;
}

unsigned policy_conncount_dec(struct policy_conncount *cc, const char *ip, unsigned *total)
{
	struct step s = { .delta = -1 };
	char key[POLICY_CLIENT_KEY_MAX];
	policy_client_key(ip, cc->ipv6_prefix, key, sizeof(key));
	/* An unmatched dec is a caller bug; do not let the total wrap. */
	if (!policy__shardmap_with(cc->map, key, 0, false, apply, &s)) {
		if (total)
			*total = atomic_load(&cc->total);
		return 0;
	}
	unsigned t = atomic_fetch_sub(&cc->total, 1) - 1;
	if (total)
		*total = t;
	return s.result;
}
