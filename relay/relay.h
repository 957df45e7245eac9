/*
 * relay.h - the durable spool and the queue runner.
 *
 * Spool layout under the spool directory:
 *   tmp/<qid>      a message being received; removed on abort, ignored and
 *                  cleaned at start-up (never acknowledged)
 *   queue/<qid>    a committed message: fsync'd, renamed, directory fsync'd,
 *                  before the client is told 250. Immutable once there.
 *   state/<qid>    the runner's delivery state for a queued message
 *                  (recipients done, attempts, next retry); optional.
 *
 * Queue file format (all lines end in LF; values never contain CR or LF):
 *   POSTERN-QUEUE 1
 *   qid <qid>
 *   time <unix seconds>
 *   from <address>            (empty value for the null sender <>)
 *   rcpt <address>            (one line per recipient, in RCPT order)
 *   <key> <value>             (other facts: listener, client, helo, auth,
 *                              body, smtputf8, ret, envid, tls ...; readers
 *                              ignore keys they do not know)
 *   The runner reads these optional keys:
 *     body 8BITMIME            (or BINARYMIME; anything else is 7bit)
 *     smtputf8 1               (absent, "0", "no" or "false": not set)
 *     ret FULL                 (or HDRS: the DSN RET parameter)
 *     envid <xtext>            (the DSN ENVID parameter as received)
 *   <empty line>
 *   the message, CRLF line ends, dot-stuffing removed, Received header first
 *
 * Ownership: relay_spool_* objects are owned by the caller until
 * relay_spool_commit() or relay_spool_abort() takes them. The relay from
 * relay_start() is freed by relay_stop(). relay_envelope_free() frees what
 * relay_envelope_read() allocated inside the caller's struct.
 */
#ifndef POSTERN_RELAY_H
#define POSTERN_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>
#include "common/common.h"

/* ---- envelope ------------------------------------------------------- */

struct relay_envelope {
	char qid[ID_LEN + 1];
	time_t time;
	char *from;          /* "" for <> */
	char **rcpts;
	size_t nrcpts;
	char *ret;           /* DSN RET, or NULL */
	char *envid;         /* DSN ENVID, or NULL */
	bool smtputf8;
	bool eightbit;
	off_t body_offset;   /* where the message starts in the queue file */
};

/* Reads the envelope of queue file path. Returns 0 or -errno/-EINVAL. */
int relay_envelope_read(const char *path, struct relay_envelope *env);
/* The same from an open queue file (its offset is left anywhere). */
int relay_envelope_read_fd(int fd, struct relay_envelope *env);
void relay_envelope_free(struct relay_envelope *env);

/* ---- spool (writing side, used by the server) ---------------------- */

struct relay_spool;  /* process-wide: directories and the commit thread */
struct relay_spool_file;

/* Opens or creates <dir>/{tmp,queue,state}; lists the files left in tmp/
 * (below). Starts the create and commit threads. relay_spool_close() finishes the
 * requests queued, but answers nobody collected by then (their loops are
 * gone) are freed without their callbacks: the caller collects every
 * answer before closing. */
struct relay_spool *relay_spool_open(const char *dir, char *err, size_t errlen);
void relay_spool_close(struct relay_spool *sp);
/* The files relay_spool_open() found in tmp/: never acknowledged (a crash
 * mid-transaction or mid-commit leaves them), named by queue id. The spool
 * keeps the array. relay_spool_drop_unacknowledged() removes them, once
 * the caller has taken back what it wrote for them; call it before the
 * first create. */
size_t relay_spool_unacknowledged(const struct relay_spool *sp, const char *const **names);
void relay_spool_drop_unacknowledged(struct relay_spool *sp);
const char *relay_spool_dir(const struct relay_spool *sp);

/* A new queue file in two steps, so that an event loop never waits on the
 * filesystem: relay_spool_prepare() formats the envelope and the first
 * message bytes (`head`, e.g. our Received header) in memory and touches
 * no file; relay_spool_create_file() creates tmp/<qid> (the envelope's qid
 * names it) and writes them; it may block, so the daemon runs it on the
 * spool's create thread (relay_spool_create_async below). It returns 0 or
 * -errno; after a failure no file is left and f still needs
 * relay_spool_abort(). */
struct relay_spool_file *relay_spool_prepare(struct relay_spool *sp,
                                             const struct relay_envelope *env,
                                             const char *const *extra_kv, size_t nextra,
                                             const void *head, size_t headlen);
int relay_spool_create_file(struct relay_spool_file *f);
/* Appends message bytes; returns 0 or -errno. */
int relay_spool_write(struct relay_spool_file *f, const void *data, size_t len);
/* The queue id the file is named by. */
const char *relay_spool_file_qid(const struct relay_spool_file *f);
/* Message bytes written so far. */
uint64_t relay_spool_size(const struct relay_spool_file *f);
/* Discards the file (if it was created). Takes f. */
void relay_spool_abort(struct relay_spool_file *f);

/* Makes the message durable and moves it to queue/: fsync of the file, rename,
 * fsync of queue/. Batched with other commits in flight (group commit).
 * `rider` (or NULL) goes to the spool's riders (below) with the
 * batch. done(status, arg) runs later on `loop` (0 or -errno); the file is
 * taken either way. */
typedef void (*relay_commit_cb)(int status, void *arg);
void relay_spool_commit(struct relay_spool_file *f, void *rider, uv_loop_t *loop,
                        uv_async_t *wake, relay_commit_cb done, void *arg);

/* What must be durable in the same step as the queue files (the trace
 * records). For each batch the commit thread calls start() with the
 * riders of its files once their write-back has begun (it must return at
 * once, the files' fsyncs run meanwhile, and it cannot fail: what it
 * returns, whatever it is, goes to finish()), then finish() once they are
 * synced, which waits and sets status[i] for riders[i]; only then are the
 * files renamed into queue/. A file whose rider failed is not queued, and
 * its owner hears that status. A rider that was written for a file that
 * then failed (its fsync, its rename, the fsync of queue/) goes to
 * cancel(), which takes it back before the owner hears. Set once, before
 * the first commit. */
struct relay_riders {
	void *(*start)(void *ctx, void *const *riders, size_t n);
	void (*finish)(void *ctx, void *started, void *const *riders, int *status, size_t n);
	void (*cancel)(void *ctx, void *const *riders, size_t n);
	void *ctx;
};
void relay_spool_set_riders(struct relay_spool *sp, const struct relay_riders *riders);

/* relay_spool_create_file() on the spool's create thread: done(status,
 * arg) runs later on `loop`, through relay_spool_drain() like a commit;
 * f stays the caller's (abort it after a failure). */
void relay_spool_create_async(struct relay_spool_file *f, uv_loop_t *loop, uv_async_t *wake,
                              relay_commit_cb done, void *arg);
/* Moves queue/<qid> to hold/<qid>, where the runner never looks. */
int relay_spool_hold(struct relay_spool *sp, const char *qid);
/* Runs the callbacks of finished commits for `loop`; call it from the
 * uv_async_t handed to relay_spool_commit(). */
void relay_spool_drain(struct relay_spool *sp, uv_loop_t *loop);

/* ---- queue runner ------------------------------------------------------ */

enum relay_tls { RELAY_TLS_NONE, RELAY_TLS_STARTTLS, RELAY_TLS_IMPLICIT };

struct relay_conf {
	const char *downstream;   /* "smtp://host:port", "lmtp://host:port",
	                             "lmtp:unix:/path", or NULL for Maildir */
	const char *maildir;      /* Maildir root when downstream is NULL */
	enum relay_tls tls;
	bool tls_verify;          /* check the downstream certificate */
	const char *tls_ca;       /* CA file for tls_verify, NULL: system store */
	const char *hostname;     /* our name: EHLO/LHLO, DSN Reporting-MTA */
	unsigned workers;         /* parallel deliveries */
	unsigned retry_min;       /* seconds before the first retry */
	unsigned retry_max;       /* cap of the exponential backoff */
	unsigned max_queue_time;  /* seconds before a deferred message bounces */
	unsigned timeout;         /* seconds per downstream read/write */
	/* Called on a worker thread for every recipient result ("delivered",
	 * "deferred", "bounced"), for the trace store. Must be thread-safe.
	 * NULL: results are only logged. */
	void (*on_result)(void *arg, const char *qid, const char *rcpt, const char *event,
	                  const char *relay, const char *reply);
	void *on_result_arg;
};
/* A zero field takes its default: hostname gethostname(), workers 4,
 * retry_min 300, retry_max 4000, max_queue_time 5 days, timeout 300. */

struct relay;

/* Starts the workers and schedules every message already in queue/ (left by
 * a crash or a restart). Returns NULL with err filled on failure. */
struct relay *relay_start(const struct relay_conf *conf, struct relay_spool *sp,
                          char *err, size_t errlen);
/* The same on a spool directory (relay_start() calls it with
 * relay_spool_dir(sp)); creates missing tmp/, queue/ and state/. conf and
 * its strings are copied. */
struct relay *relay_start_dir(const struct relay_conf *conf, const char *spool_dir,
                              char *err, size_t errlen);
/* Thread-safe and cheap: a newly committed message is ready for delivery.
 * A message already scheduled is never delivered twice at once; a deferred
 * one is tried now. */
void relay_enqueue(struct relay *r, const char *qid);
/* Stops the workers after their current delivery; undelivered mail stays
 * in the queue. Frees r. */
void relay_stop(struct relay *r);

/* For `postern queue`: one call per queued message. */
struct relay_queue_entry {
	const struct relay_envelope *env;
	uint64_t size;            /* queue file size */
	unsigned attempts;
	time_t next_try;          /* 0: as soon as possible */
	const char *last_error;   /* NULL when none */
	const bool *done;         /* per recipient: delivered or bounced */
};
typedef void (*relay_list_cb)(const struct relay_queue_entry *e, void *arg);
/* Calls cb in queue id order (oldest first); e and what it points to live
 * only during the call. Unreadable queue files are skipped with a warning.
 * Returns the number of messages listed, or -errno when queue/ cannot be
 * read. */
int relay_queue_list(const char *spool_dir, relay_list_cb cb, void *arg);

#endif
