/*
 * cache.h - recent successful password logins, in front of a sasldb.
 *
 * Cyrus opens the sasldb's Berkeley DB four times for one AUTH PLAIN
 * (~50 system calls, on a worker thread). A client that submits often
 * logs in with the same credentials every time; answering it from memory
 * saves that work and the hop to the worker.
 *
 * What makes it safe: an entry is only used while the sasldb file is
 * exactly as it was when Cyrus accepted the credentials (device, inode,
 * size, mtime, ctime); any change to the file (saslpasswd2 setting or
 * deleting a password, a file replaced) empties the cache for every
 * user, so a changed password takes effect at the next login. An entry
 * is only made when the file's ctime is at least AUTH_CACHE_QUIET
 * seconds old, so that a change landing in the same timestamp tick as
 * the lookup cannot go unseen. Entries hold no password: the key is an
 * HMAC-SHA256 of the credentials under a random per-process key, the
 * value the identity Cyrus returned. Only successes are kept; a failure
 * always goes to Cyrus (and to the failure delay).
 *
 * Thread-safe: lookups run on the event loops, insertions on workers.
 */
#ifndef POSTERN_AUTH_CACHE_H
#define POSTERN_AUTH_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

/* Seconds a sasldb must have been left alone before entries are made. */
#define AUTH_CACHE_QUIET 2
/* Seconds an entry lives even if the file never changes. */
#define AUTH_CACHE_MAX_AGE 3600

/* The identity of the file's contents, from stat(), and when it was taken. */
struct auth_cache_stamp {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct timespec ctime;
	struct timespec taken;       /* CLOCK_REALTIME, just before the stat() */
	long long clock_offset;      /* CLOCK_REALTIME - CLOCK_MONOTONIC, seconds */
};

/* path: the sasldb to watch; slots: entries kept (a power of two is not
 * needed); max_age: seconds an entry lives (AUTH_CACHE_MAX_AGE). Returns
 * 0, or -1 with err filled. Once per process. */
int auth_cache_init(const char *path, unsigned slots, unsigned max_age, char *err,
                    size_t errlen);
void auth_cache_shutdown(void);
bool auth_cache_enabled(void);

/* Takes the file's stamp; false when the cache is off or stat() fails. */
bool auth_cache_stamp(struct auth_cache_stamp *st);

/* Remembers that cred (the decoded client data, scoped by realm) gave
 * user, if the file still has the stamp taken before Cyrus looked. */
void auth_cache_put(const struct auth_cache_stamp *before, const char *realm,
                    const void *cred, size_t len, const char *user);

/* The identity cred gave last time, freshly allocated, or NULL. */
char *auth_cache_get(const char *realm, const void *cred, size_t len);

#endif
