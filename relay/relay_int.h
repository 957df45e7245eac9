/*
 * relay_int.h - what the queue runner's files share and nobody else sees:
 * the delivery state file, one delivery attempt, the downstream address,
 * the delivery agents (Maildir, SMTP/LMTP) and the DSN writer.
 *
 * Ownership: relay__state_* and relay__downstream_* fill caller structs and
 * free only what they allocated inside them. In a struct relay__attempt the
 * runner owns the arrays; a delivery agent stores replies with
 * relay__attempt_set() (copied), and relay__attempt_free() releases them.
 */
#ifndef POSTERN_RELAY_INT_H
#define POSTERN_RELAY_INT_H

#include <stdbool.h>
#include <limits.h>
#include <stddef.h>
#include <time.h>
#include <openssl/ssl.h>
#include "common/common.h"
#include "relay/relay.h"

/* ---- state/<qid> --------------------------------------------------------
 * Format (LF line ends):
 *   POSTERN-STATE 1
 *   attempts <n>
 *   next_try <unix seconds>
 *   last_error <text>              (optional)
 *   rcpt <index> delivered
 *   rcpt <index> failed <status> <reply text>
 * Recipients without a line are still to be tried. */

enum relay__rcpt_state { RELAY__TODO = 0, RELAY__DELIVERED, RELAY__FAILED };

struct relay__rcpt {
	enum relay__rcpt_state state;
	char status[12];     /* FAILED: enhanced status code, "5.1.1" */
	char *diag;          /* FAILED: the reply or error text; owned */
};

struct relay__state {
	unsigned attempts;
	time_t next_try;
	char *last_error;    /* owned, NULL when none */
	size_t nrcpts;
	struct relay__rcpt *rcpts;
};

void relay__state_init(struct relay__state *st, size_t nrcpts);
void relay__state_free(struct relay__state *st);
/* A missing file gives a fresh state and 0. A file that does not match
 * nrcpts or cannot be parsed gives -EINVAL (and a fresh state). With
 * nrcpts 0 only attempts, next_try and last_error are read. */
int relay__state_read(const char *spool_dir, const char *qid, size_t nrcpts,
                      struct relay__state *st);
/* Atomic: state/.<qid>.tmp, fsync, rename, fsync state/. */
int relay__state_write(const char *spool_dir, const char *qid,
                       const struct relay__state *st);
bool relay__qid_valid(const char *s);
/* Longest spool or Maildir directory accepted, leaving room for the rest. */
#define RELAY__DIR_MAX (PATH_MAX - 512)
/* snprintf() for paths. Truncation is a broken invariant (directories are
 * length-checked on entry) and aborts. */
void relay__path(char *out, size_t size, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Copies s into dst (size > 0) with control characters turned into
 * spaces, so that a reply fits on one line of a state file or a DSN. */
void relay__one_line(char *dst, size_t size, const char *s);

/* ---- one delivery attempt -------------------------------------------- */

enum relay__result { RELAY__SKIP = 0, RELAY__PENDING, RELAY__SENT, RELAY__TEMP, RELAY__PERM };

struct relay__attempt {
	const struct relay_envelope *env;
	int fd;                        /* the queue file; agents use pread() */
	uint64_t body_size;            /* bytes from env->body_offset to EOF */
	enum relay__result *result;    /* per rcpt; SKIP: done before */
	char **reply;                  /* per rcpt; owned, may be NULL */
};

/* Records the outcome of recipient i (reply copied, made one line). */
void relay__attempt_set(struct relay__attempt *a, size_t i, enum relay__result res,
                        const char *reply);
/* Sets every PENDING recipient. */
void relay__attempt_set_pending(struct relay__attempt *a, enum relay__result res,
                                const char *reply);
void relay__attempt_free(struct relay__attempt *a);

/* ---- the runner's shared, read-only context ---------------------------- */

enum relay__proto { RELAY__MAILDIR, RELAY__SMTP, RELAY__LMTP };

struct relay__downstream {
	enum relay__proto proto;
	char *host;          /* TCP: host name or address literal (no brackets) */
	char *port;          /* TCP: port */
	char *path;          /* LMTP over a unix socket */
};

/* Parses "smtp://host:port", "lmtp://host:port", "lmtp:unix:/path" or NULL
 * (Maildir). "[v6addr]:port" is accepted. Returns 0 or -EINVAL with err. */
int relay__downstream_parse(const char *s, struct relay__downstream *ds,
                            char *err, size_t errlen);
void relay__downstream_free(struct relay__downstream *ds);

struct relay__ctx {
	struct relay_conf conf;      /* strings point to owned copies below */
	char *spool_dir;
	char *hostname;
	char *downstream;
	char *maildir;
	char *tls_ca;
	const char *relay_name;      /* for logs: the downstream or "maildir" */
	struct relay__downstream ds;
	SSL_CTX *ssl;                /* NULL without TLS */
};

/* ---- delivery agents --------------------------------------------------- */

/* Creates <root>/{cur,new,tmp}. Returns 0 or -errno. */
int relay__maildir_prepare(const char *root);
/* One copy per message for all PENDING recipients; sets their results. */
void relay__maildir_deliver(const struct relay__ctx *ctx, struct relay__attempt *a);

/* A worker's SMTP/LMTP client with its cached session. */
struct relay__smtp;
struct relay__smtp *relay__smtp_new(const struct relay__ctx *ctx);
/* Delivers to every PENDING recipient over the cached session or a new
 * one; sets every PENDING recipient's result. */
void relay__smtp_deliver(struct relay__smtp *s, struct relay__attempt *a);
/* Seconds until the cached session should be closed (0: now); -1 when
 * there is none. */
double relay__smtp_idle_left(const struct relay__smtp *s);
/* Sends QUIT and closes the cached session, if any. */
void relay__smtp_close(struct relay__smtp *s);
void relay__smtp_free(struct relay__smtp *s);

/* ---- DSN --------------------------------------------------------------- */

/* Writes a delivery status notification for every FAILED recipient of st
 * as a new queue file (tmp/, fsync, rename into queue/, fsync) from <> to
 * env->from. fd is the original queue file. Fills newqid. Returns 0 or
 * -errno. */
int relay__dsn_create(const struct relay__ctx *ctx, const struct relay_envelope *env,
                      int fd, const struct relay__state *st, char newqid[ID_LEN + 1]);
/* "5.1.1" from "550 5.1.1 text", else "5.0.0"/"4.0.0" by the reply code;
 * "4.0.0" for a text that is no SMTP reply. out holds 12 bytes. */
void relay__status_code(const char *reply, bool perm, char out[12]);
/* RFC 5322 date-time in UTC. out holds 40 bytes. */
void relay__rfc5322_date(time_t t, char out[40]);

#endif
