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
	EVP_MAC *hmac;
	unsigned char key[32];
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

int auth_cache_init(const char *path, unsigned slots, char *err, size_t errlen)
{
	if (c.on) {
		snprintf(err, errlen, "auth_cache_init called twice");
		return -1;
	}
	if (!path || !*path || slots == 0) {
		snprintf(err, errlen, "credential cache: no sasldb to watch");
		return -1;
	}
	if (RAND_bytes(c.key, sizeof(c.key)) != 1) {
		snprintf(err, errlen, "credential cache: no random key");
		return -1;
	}
	if (!(c.hmac = EVP_MAC_fetch(NULL, "HMAC", NULL))) {
		snprintf(err, errlen, "credential cache: no HMAC in OpenSSL");
		return -1;
	}
	c.path = str_dup(path);
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
	EVP_MAC_free(c.hmac);
	c.hmac = NULL;
	OPENSSL_cleanse(c.key, sizeof(c.key));
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
	memset(st, 0, sizeof(*st));
	if (!c.on || stat(c.path, &sb) != 0)
		return false;
	st->dev = sb.st_dev;
	st->ino = sb.st_ino;
	st->size = sb.st_size;
	st->mtime = sb.st_mtim;
	st->ctime = sb.st_ctim;
	return true;
}

static bool stamp_equal(const struct auth_cache_stamp *a, const struct auth_cache_stamp *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* The realm takes part so that the same bytes under another server name
 * (Cyrus appends it to bare user names) are another key. */
static bool tag_of(unsigned char tag[TAG_LEN], const char *realm, const void *cred, size_t len)
{
	size_t out = 0;
	const char *r = realm ? realm : "";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(c.hmac);
	bool ok = ctx && EVP_MAC_init(ctx, c.key, sizeof(c.key), params) == 1 &&
	          EVP_MAC_update(ctx, (const unsigned char *)r, strlen(r) + 1) == 1 &&
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
	if (stamp_equal(&c.stamp, st))
		return;
	for (unsigned i = 0; i < c.nslots; i++) {
		entry_free(c.slots[i]);
		c.slots[i] = NULL;
	}
	c.stamp = *st;
}

/* Whether a change to the file could still share st's ctime tick. */
static bool stamp_settled(const struct auth_cache_stamp *st)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	return now.tv_sec - st->ctime.tv_sec >= AUTH_CACHE_QUIET;
}

void auth_cache_put(const struct auth_cache_stamp *before, const char *realm,
                    const void *cred, size_t len, const char *user)
{
	struct auth_cache_stamp after;
	unsigned char tag[TAG_LEN];
	if (!c.on || !user || !auth_cache_stamp(&after) || !stamp_equal(before, &after) ||
	    !stamp_settled(&after) || !tag_of(tag, realm, cred, len))
		return;
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
	if (!c.on || !auth_cache_stamp(&now) || !tag_of(tag, realm, cred, len))
		return NULL;
	char *user = NULL;
	struct entry *stale = NULL;
	pthread_mutex_lock(&c.lock);
	follow_file(&now);
	unsigned i = slot_of(tag);
	struct entry *e = c.slots[i];
	if (e && CRYPTO_memcmp(e->tag, tag, TAG_LEN) == 0) {
		if (mono_now() - e->added < AUTH_CACHE_MAX_AGE) {
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
