/*
 * policy_int.h - private helpers shared by the files of policy/: a string
 * hash and a sharded table of small records with LRU order, used by the
 * limiter, the connection counter and the auth guard.
 *
 * A shardmap owns its records; policy__shardmap_free() releases them all.
 * Records live only while the callback given to policy__shardmap_with()
 * runs, under the shard's mutex: callers never keep pointers to them.
 */
#ifndef POSTERN_POLICY_INT_H
#define POSTERN_POLICY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* FNV-1a over bytes, ASCII letters folded to lower case. */
uint64_t policy__hash(const char *s, size_t len);
/* ASCII lower-casing copy into dst (size > 0); false if s does not fit. */
bool policy__lower(char *dst, size_t size, const char *s, size_t len);

struct policy__shardmap;

/* Whether a record may be dropped without changing any verdict (a full
 * bucket, a forgotten failure). Called under the shard lock. */
typedef bool policy__expired_fn(const void *rec, double now);
/* Works on the record for a key; fresh: it was just created (zeroed).
 * Returns true to delete the record afterwards. */
typedef bool policy__with_fn(void *rec, bool fresh, void *arg);

/* cap_per_shard 0: unbounded (records must then expire or be deleted). */
struct policy__shardmap *policy__shardmap_new(size_t rec_size, size_t cap_per_shard,
                                              policy__expired_fn *expired);
void policy__shardmap_free(struct policy__shardmap *m);
/* Runs fn on key's record under that shard's lock. create false and no
 * record: fn is not called and the result is false; otherwise true. */
bool policy__shardmap_with(struct policy__shardmap *m, const char *key, double now,
                           bool create, policy__with_fn *fn, void *arg);
/* Number of records, for tests and statistics (takes each shard lock). */
size_t policy__shardmap_size(struct policy__shardmap *m);

#endif
