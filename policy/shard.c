/*
 * shard.c - a hash table split into 64 shards, each with its own mutex,
 * so that event loops counting different keys rarely meet on a lock and
 * there is no global one. Records sit in LRU order per shard: every call
 * drops up to two expired records from the cold end (a lazy sweep that
 * costs O(1)), and a shard at its cap evicts its least recently used
 * record, so a flood of distinct keys cannot grow memory without bound.
 *
 * The map owns every record (one allocation holding node, record and
 * key); policy__shardmap_free() releases them.
 */
#include "policy/policy_int.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"

#define NSHARDS 64
#define SWEEP_PER_CALL 2

struct node {
	struct node *hnext;              /* bucket chain */
	struct node *prev, *next;        /* LRU: head.next is the most recent */
	uint64_t hash;
	char *key;                       /* points after the record */
	max_align_t rec[];
};

struct shard {
	alignas(64) pthread_mutex_t mu;  /* a cache line apart from the next shard's */
	struct node **buckets;
	size_t nbuckets;                 /* a power of two */
	size_t count;
	struct node lru;                 /* sentinel of the circular LRU list */
};

struct policy__shardmap {
	struct shard *shards;
	size_t rec_size;                 /* rounded up to max_align_t */
	size_t cap;
	policy__expired_fn *expired;
};

uint64_t policy__hash(const char *s, size_t len)
{
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h = (h ^ c) * 1099511628211ULL;
	}
	return h;
}

bool policy__lower(char *dst, size_t size, const char *s, size_t len)
{
	if (len >= size)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	dst[len] = '\0';
	return true;
}

struct policy__shardmap *policy__shardmap_new(size_t rec_size, size_t cap_per_shard,
                                              policy__expired_fn *expired)
{
	struct policy__shardmap *m = xcalloc(1, sizeof(*m));
	m->shards = aligned_alloc(alignof(struct shard), NSHARDS * sizeof(struct shard));
	if (!m->shards)
		fatal("event=oom where=policy_shardmap");
	memset(m->shards, 0, NSHARDS * sizeof(struct shard));
	m->rec_size = (rec_size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	m->cap = cap_per_shard;
	m->expired = expired;
	for (size_t i = 0; i < NSHARDS; i++) {
		struct shard *sh = &m->shards[i];
		pthread_mutex_init(&sh->mu, NULL);
		sh->nbuckets = 16;
		sh->buckets = xcalloc(sh->nbuckets, sizeof(*sh->buckets));
		sh->lru.next = sh->lru.prev = &sh->lru;
	}
	return m;
}

void policy__shardmap_free(struct policy__shardmap *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < NSHARDS; i++) {
		struct shard *sh = &m->shards[i];
		struct node *n = sh->lru.next;
		while (n != &sh->lru) {
			struct node *next = n->next;
			free(n);
			n = next;
		}
		free(sh->buckets);
		pthread_mutex_destroy(&sh->mu);
	}
	free(m->shards);
	free(m);
}

static void lru_unlink(struct node *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
}

static void lru_push_front(struct shard *sh, struct node *n)
{
	n->prev = &sh->lru;
	n->next = sh->lru.next;
	sh->lru.next->prev = n;
	sh->lru.next = n;
}

static void node_remove(struct shard *sh, struct node *n)
{
	struct node **pp = &sh->buckets[n->hash & (sh->nbuckets - 1)];
	while (*pp != n)
		pp = &(*pp)->hnext;
	*pp = n->hnext;
	lru_unlink(n);
	sh->count--;
	free(n);
}

static void grow(struct shard *sh)
{
	size_t nb = sh->nbuckets * 2;
	struct node **b = xcalloc(nb, sizeof(*b));
	for (size_t i = 0; i < sh->nbuckets; i++) {
		struct node *n = sh->buckets[i];
		while (n) {
			struct node *next = n->hnext;
			n->hnext = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
			n = next;
		}
	}
	free(sh->buckets);
	sh->buckets = b;
	sh->nbuckets = nb;
}

static void sweep(struct policy__shardmap *m, struct shard *sh, double now)
{
	for (int i = 0; i < SWEEP_PER_CALL; i++) {
		struct node *n = sh->lru.prev;
		if (n == &sh->lru || !m->expired(n->rec, now))
			return;
		node_remove(sh, n);
	}
}

static struct node *node_new(struct policy__shardmap *m, struct shard *sh, const char *key,
                             size_t len, uint64_t hash)
{
	struct node *n = xcalloc(1, sizeof(*n) + m->rec_size + len + 1);
	n->hash = hash;
	n->key = (char *)n->rec + m->rec_size;
	memcpy(n->key, key, len);
	if (sh->count >= sh->nbuckets)
		grow(sh);
	struct node **head = &sh->buckets[hash & (sh->nbuckets - 1)];
	n->hnext = *head;
	*head = n;
	sh->count++;
	lru_push_front(sh, n);
	return n;
}

bool policy__shardmap_with(struct policy__shardmap *m, const char *key, double now,
                           bool create, policy__with_fn *fn, void *arg)
{
	size_t len = strlen(key);
	uint64_t hash = policy__hash(key, len);
	/* High bits pick the shard, low bits the bucket: independent. */
	struct shard *sh = &m->shards[hash >> 58];
	bool found = true;

	pthread_mutex_lock(&sh->mu);
	struct node *n = sh->buckets[hash & (sh->nbuckets - 1)];
	while (n && !(n->hash == hash && strcasecmp(n->key, key) == 0))
		n = n->hnext;
	bool fresh = false;
	if (n) {
		lru_unlink(n);
		lru_push_front(sh, n);
	} else if (create) {
		sweep(m, sh, now);
		if (m->cap && sh->count >= m->cap)
			node_remove(sh, sh->lru.prev);  /* lossy: that key starts afresh */
		n = node_new(m, sh, key, len, hash);
		fresh = true;
	} else {
		found = false;
	}
	if (n && fn(n->rec, fresh, arg))
		node_remove(sh, n);
	sweep(m, sh, now);
	pthread_mutex_unlock(&sh->mu);
	return found;
}

size_t policy__shardmap_size(struct policy__shardmap *m)
{
	size_t total = 0;
	for (size_t i = 0; i < NSHARDS; i++) {
		pthread_mutex_lock(&m->shards[i].mu);
		total += m->shards[i].count;
		pthread_mutex_unlock(&m->shards[i].mu);
	}
	return total;
}
