/*
 * limiter.c - token buckets by key ("msg:alice", "conn:192.0.2.7"), shared
 * by every event loop. A bucket that has refilled to its burst is the same
 * as no bucket, so it may be dropped at any time: that is what keeps the
 * table small under a flood of distinct keys (see shard.c for the sweep
 * and the per-shard cap).
 *
 * policy_limiter_new() returns a limiter freed with policy_limiter_free().
 */
#include "policy/policy.h"

#include <stdlib.h>

#include "common/common.h"
#include "policy/policy_int.h"

/* 64 shards x 4096: at most 262144 live buckets (about 25 MB). Past that
 * the least recently used bucket is forgotten: that key starts full. */
#define CAP_PER_SHARD 4096

struct bucket {
	double tokens, last, rate, burst;
};

struct policy_limiter {
	struct policy__shardmap *map;
};

static double refilled(const struct bucket *b, double now)
{
	double t = b->tokens + (now > b->last ? (now - b->last) * b->rate : 0);
	return t < b->burst ? t : b->burst;
}

static bool bucket_expired(const void *rec, double now)
{
	const struct bucket *b = rec;
	return refilled(b, now) >= b->burst;
}

struct take_arg {
	double rate, burst, n, now, retry;
	bool ok;
};

static bool take(void *rec, bool fresh, void *arg)
{
	struct bucket *b = rec;
	struct take_arg *t = arg;
	if (fresh) {
		b->tokens = t->burst;
		b->last = t->now;
	}
	/* Limits may change on reload: the bucket follows the new numbers. */
	b->rate = t->rate;
	b->burst = t->burst;
	b->tokens = refilled(b, t->now);
	if (t->now > b->last)
		b->last = t->now;
	if (b->tokens >= t->n) {
		b->tokens -= t->n;
		t->ok = true;
	} else {
		t->ok = false;
		t->retry = t->n > b->burst ? -1 : (t->n - b->tokens) / b->rate;
	}
	return false;
}

struct policy_limiter *policy_limiter_new(void)
{
	struct policy_limiter *l = xcalloc(1, sizeof(*l));
	l->map = policy__shardmap_new(sizeof(struct bucket), CAP_PER_SHARD, bucket_expired);
	return l;
}

void policy_limiter_free(struct policy_limiter *l)
{
	if (!l)
		return;
	policy__shardmap_free(l->map);
	free(l);
}

bool policy_limiter_take(struct policy_limiter *l, const char *key, double rate_per_sec,
                         double burst, double n, double now, double *retry_after)
{
	if (rate_per_sec <= 0 || burst <= 0)
		return true;  /* no limit configured */
	struct take_arg t = { .rate = rate_per_sec, .burst = burst, .n = n, .now = now };
	policy__shardmap_with(l->map, key, now, true, take, &t);
	if (!t.ok && retry_after)
		*retry_after = t.retry;
	return t.ok;
}

size_t policy_limiter_size(struct policy_limiter *l)
{
	return policy__shardmap_size(l->map);
}
