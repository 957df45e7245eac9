/*
 * cache.c - recent successful password logins (see cache.h for why it is
 * safe). A direct-mapped table: the HMAC tag picks the slot, a newer
 * entry for the same slot replaces the older one. The table belongs to
 * one stamp of the sasldb; the first lookup or insertion that sees
 * another stamp empties it. One mutex; it is held for a compare, a swap
 * or that emptying, never across stat() or the HMAC.
 */
#include "auth/cache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/common.h"

#define TAG_LEN 32

struct entry {
	unsigned char tag[TAG_LEN];
	time_t added;   /* CLOCK_MONOTONIC seconds */
	char *user;
};

static struct {
	bool on;
	char *path;
	unsigned max_age;
	EVP_MAC_CTX *hmac;               /* keyed once; each tag works on a copy */
	unsigned nslots;
	struct entry **slots;
	struct auth_cache_stamp stamp;   /* of the file the entries came from */
	pthread_mutex_t lock;
} c = { .lock = PTHREAD_MUTEX_INITIALIZER };

static time_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void entry_free(struct entry *e)
{
	if (!e)
		return;
	free(e->user);
	explicit_bzero(e, sizeof(*e));
	free(e);
}

/* HMAC-SHA256 under a random key that never leaves this process (nor
 * outlives it). */
static EVP_MAC_CTX *keyed_hmac(void)
{
	unsigned char key[32];
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	if (!ctx || RAND_bytes(key, sizeof(key)) != 1 ||
	    EVP_MAC_init(ctx, key, sizeof(key), params) != 1) {
		EVP_MAC_CTX_free(ctx);
		ctx = NULL;
	}
	OPENSSL_cleanse(key, sizeof(key));
	EVP_MAC_free(mac);   /* the context keeps its own reference */
	return ctx;
}

int auth_cache_init(const char *path, unsigned slots, unsigned max_age, char *err,
                    size_t errlen)
{
	if (c.on) {
		snprintf(err, errlen, "auth_cache_init called twice");
		return -1;
	}
	if (!path || !*path || slots == 0) {
		snprintf(err, errlen, "credential cache: no sasldb to watch");
		return -1;
	}
	if (!(c.hmac = keyed_hmac())) {
		snprintf(err, errlen, "credential cache: no keyed HMAC-SHA256 from OpenSSL");
		return -1;
	}
	c.path = str_dup(path);
	c.max_age = max_age;
	c.nslots = slots;
	c.slots = xcalloc(slots, sizeof(*c.slots));
	c.on = true;
	return 0;
}

void auth_cache_shutdown(void)
{
	if (!c.on)
		return;
	for (unsigned i = 0; i < c.nslots; i++)
		entry_free(c.slots[i]);
	free(c.slots);
	free(c.path);
	EVP_MAC_CTX_free(c.hmac);
	c.hmac = NULL;
	memset(&c.stamp, 0, sizeof(c.stamp));
	c.slots = NULL;
	c.path = NULL;
	c.nslots = 0;
	c.on = false;
}

bool auth_cache_enabled(void)
{
	return c.on;
}

bool auth_cache_stamp(struct auth_cache_stamp *st)
{
	struct stat sb;
	struct timespec mono;
	memset(st, 0, sizeof(*st));
	/* The clocks first: a change that lands after them shows in the
	 * ctime, one before them is older than `taken`. */
	clock_gettime(CLOCK_REALTIME, &st->taken);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	st->clock_offset = (long long)st->taken.tv_sec - (long long)mono.tv_sec;
	if (!c.on || stat(c.path, &sb) != 0)
		return false;
	st->dev = sb.st_dev;
	st->ino = sb.st_ino;
	st->size = sb.st_size;
	st->mtime = sb.st_mtim;
	st->ctime = sb.st_ctim;
	return true;
}

/* The same version of the file: every field stat() gives that a change
 * moves. (ctime cannot be set from user space; mtime and size can.) */
static bool same_file(const struct auth_cache_stamp *a, const struct auth_cache_stamp *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Whether the table may stand for st: the same file, and no step of the
 * wall clock since (after one, a change could be given an old ctime). */
static bool same_version(const struct auth_cache_stamp *a, const struct auth_cache_stamp *b)
{
	long long drift = a->clock_offset - b->clock_offset;
	return same_file(a, b) && drift >= -1 && drift <= 1;
}

/* The realm takes part so that the same bytes under another server name
 * (Cyrus appends it to bare user names) are another key. */
static bool tag_of(unsigned char tag[TAG_LEN], const char *realm, const void *cred, size_t len)
{
	size_t out = 0;
	const char *r = realm ? realm : "";
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(c.hmac);
	bool ok = ctx && EVP_MAC_update(ctx, (const unsigned char *)r, strlen(r) + 1) == 1 &&
	          EVP_MAC_update(ctx, cred, len) == 1 &&
	          EVP_MAC_final(ctx, tag, &out, TAG_LEN) == 1 && out == TAG_LEN;
	EVP_MAC_CTX_free(ctx);
	return ok;
}

static unsigned slot_of(const unsigned char tag[TAG_LEN])
{
	uint32_t h;
	memcpy(&h, tag, sizeof(h));
	return h % c.nslots;
}

/* Called with the lock held: entries made from another version of the
 * file are never used again, and their tags leave memory now. */
static void follow_file(const struct auth_cache_stamp *st)
{
	if (same_version(&c.stamp, st))
		return;
	for (unsigned i = 0; i < c.nslots; i++) {
		entry_free(c.slots[i]);
		c.slots[i] = NULL;
	}
	c.stamp = *st;
}

/* Whether the file had been left alone for a while when Cyrus began to
 * read it: a change in the same timestamp tick as that read could
 * otherwise leave the stamp as it was. */
static bool stamp_settled(const struct auth_cache_stamp *st)
{
	return (long long)st->taken.tv_sec - (long long)st->ctime.tv_sec >= AUTH_CACHE_QUIET;
}

void auth_cache_put(const struct auth_cache_stamp *before, const char *realm,
                    const void *cred, size_t len, const char *user)
{
	struct auth_cache_stamp after;
	unsigned char tag[TAG_LEN];
	if (!c.on || !user || !stamp_settled(before) || !auth_cache_stamp(&after) ||
	    !same_version(before, &after))
		return;
	if (!tag_of(tag, realm, cred, len)) {
		OPENSSL_cleanse(tag, sizeof(tag));
		return;
	}
	struct entry *e = xcalloc(1, sizeof(*e));
	memcpy(e->tag, tag, TAG_LEN);
	e->added = mono_now();
	e->user = str_dup(user);
	OPENSSL_cleanse(tag, sizeof(tag));
	pthread_mutex_lock(&c.lock);
	follow_file(&after);
	unsigned i = slot_of(e->tag);
	struct entry *old = c.slots[i];
	c.slots[i] = e;
	pthread_mutex_unlock(&c.lock);
	entry_free(old);
}

char *auth_cache_get(const char *realm, const void *cred, size_t len)
{
	struct auth_cache_stamp now;
	unsigned char tag[TAG_LEN];
	if (!c.on || !auth_cache_stamp(&now))
		return NULL;
	if (!tag_of(tag, realm, cred, len)) {
		OPENSSL_cleanse(tag, sizeof(tag));
		return NULL;
	}
	char *user = NULL;
	struct entry *stale = NULL;
	pthread_mutex_lock(&c.lock);
	follow_file(&now);
	unsigned i = slot_of(tag);
	struct entry *e = c.slots[i];
	if (e && CRYPTO_memcmp(e->tag, tag, TAG_LEN) == 0) {
		if (mono_now() - e->added < (time_t)c.max_age) {
			user = str_dup(e->user);
		} else {
			stale = e;
			c.slots[i] = NULL;
		}
	}
	pthread_mutex_unlock(&c.lock);
	entry_free(stale);
	OPENSSL_cleanse(tag, sizeof(tag));
	return user;
}
