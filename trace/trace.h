/*
 * trace.h - who sent what. The Received header; the trace store (SQLite,
 * one record per accepted message and per refused attempt, written in
 * batched transactions off the event loops); the signed trace header that
 * lets a copy of a message be matched to its record; lookups and
 * statistics.
 *
 * Ownership: builders append to the caller's buffer. trace_store_open()
 * returns a store owned by the caller, freed by trace_store_close(). Records
 * are copied by trace_entry_new(), refusals and delivery results by
 * trace_store_reject/delivery; the caller keeps its own.
 */
#ifndef POSTERN_TRACE_H
#define POSTERN_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "common/common.h"

/* ---- Received header --------------------------------------------------- */

struct trace_received {
	const char *helo;         /* as the client gave it */
	bool esmtp;               /* EHLO rather than HELO */
	const char *client_ip;
	const char *client_name;  /* verified reverse name, or NULL */
	const char *tls_version;  /* NULL without TLS */
	const char *tls_cipher;
	int tls_bits;
	const char *cert_fingerprint; /* client certificate SHA-256, or NULL */
	bool authenticated;
	const char *account;      /* named only when show_account is set */
	bool show_account;
	const char *hostname;     /* ours */
	const char *qid;
	const char *single_rcpt;  /* "for" clause when exactly one recipient */
	time_t time;
};

/* Appends a folded "Received:" header (RFC 5321 4.4, RFC 3848 protocol
 * names) ending in CRLF. */
void trace_received(struct buf *out, const struct trace_received *r);

/* RFC 5322 date-time in local time with numeric zone. out holds 64. */
void trace_date(char out[64], time_t t);

/* ---- trace ids and keys ------------------------------------------------ */

/* Trace ids: 26 characters of RFC 4648 base32 (lowercase), 128 random bits. */
#define TRACE_ID_LEN 26
void trace_new_id(char out[TRACE_ID_LEN + 1]);

#define TRACE_KEY_ID_MAX 32
#define TRACE_KEY_MAX 64
struct trace_key {
	char id[TRACE_KEY_ID_MAX + 1];   /* [A-Za-z0-9._-]+ */
	unsigned char key[TRACE_KEY_MAX];
	size_t keylen;                   /* at least 16 bytes */
};

/* Reads a key file: one key per line, "<key-id> <secret in hex or base64>",
 * '#' comments and blank lines ignored. The first key signs; all verify
 * (rotation: put the new key first, keep the old ones below). Returns the
 * number of keys (>= 1) into *nkeys with keys allocated (free()), or -1
 * with "file:line: reason" in err. The file must not be readable by others
 * (mode & 077 == 0), else -1. */
int trace_keys_load(const char *path, struct trace_key **keys, size_t *nkeys,
                    char *err, size_t errlen);

/* ---- trace header (X-Postern-Trace) ----------------------------------- */

/* Appends "X-Postern-Trace: v=2; g=<gate>; id=<trace id>; t=<unix time>;
 * k=<key id>; m=<base64 HMAC-SHA-256>" ending in CRLF, folded if long. The
 * MAC covers the gate name, the trace id, the time, the key id and the
 * message's msg-id (the Message-ID without whitespace or comments; empty
 * when the message has none): what relaying leaves alone, so that headers
 * added, reordered or refolded downstream change nothing, while a header
 * moved onto another message no longer verifies there. The exact MAC input
 * (and that of the v=1 headers issued before) is documented in header.c. */
void trace_header_make(struct buf *out, const struct trace_key *key, const char *gate,
                       const char *trace_id, int64_t time, const char *message_id);

enum trace_verdict {
	TRACE_VALID,        /* ours, MAC verifies on this message's Message-ID */
	TRACE_MISSING,      /* no X-Postern-Trace header in the message */
	TRACE_MALFORMED,    /* a header is there but cannot be parsed */
	TRACE_OTHER_GATE,   /* well-formed, for another gate name */
	TRACE_UNKNOWN_KEY,  /* our gate name, but a key id we do not have */
	TRACE_FORGED,       /* MAC does not verify: forged or altered */
	TRACE_COPIED,       /* genuine, but issued for another message (its record's
	                     * Message-ID is not this message's): never the sender */
};
const char *trace_verdict_name(enum trace_verdict v);

/* A trace header seen but not judged the message's: evidence, never an
 * attribution. */
struct trace_quoted {
	enum trace_verdict verdict;  /* against its own message's Message-ID */
	bool renamed;       /* X-Postern-Trace-Prior: brought along by the sender,
	                     * renamed by the gate on arrival */
	bool enclosed;      /* inside an attached or forwarded message */
	char trace_id[TRACE_ID_LEN + 1];   /* "" when it did not parse */
	char gate[256];
};
#define TRACE_QUOTED_MAX 8

struct trace_found {
	enum trace_verdict verdict;
	int version;            /* of the header judged: 1 or 2; 0 when none parsed */
	char trace_id[TRACE_ID_LEN + 1];
	int64_t time;
	char gate[256];
	char key_id[TRACE_KEY_ID_MAX + 1];
	/* The Message-ID the header was judged against, normalised as its
	 * version's MAC has it: the one that verified, else the first; "" when
	 * the message has none. */
	char message_id[1000];
	unsigned char mac[32];  /* as written in the header, when it parsed */
	/* The header judged belongs to an enclosed message (an ARF report's
	 * original, a forwarded .eml): the message itself shows no trace of
	 * this gate at all. */
	bool enclosed;
	struct trace_quoted quoted[TRACE_QUOTED_MAX];
	size_t nquoted;
	bool quoted_more;       /* more than TRACE_QUOTED_MAX were seen */
};

/* Finds and checks our trace header in a raw message (RFC 5322) or in an
 * abuse report (ARF, RFC 5965: multipart/report with a message/rfc822 or
 * text/rfc822-headers part; also a message forwarded as an attachment).
 * The message's own header block decides whenever it shows that the
 * message passed through this gate (a trace header naming our gate, or
 * our Received line): enclosed messages are then only quoted. Returns 0
 * with *f filled (f->verdict says what was found), or -1 when the input
 * is not a message at all. */
int trace_header_find(const char *msg, size_t len, const char *gate,
                      const struct trace_key *keys, size_t nkeys, struct trace_found *f);

/* The verdict once the record of f->trace_id is at hand (recorded: its
 * message_id, NULL or "" for none). VALID stays VALID only when the
 * record's Message-ID is the one the header verified on; a header that
 * verifies on the record's Message-ID but not on this message's is COPIED.
 * Anything else is returned as it was. */
enum trace_verdict trace_header_against_record(const struct trace_found *f,
                                               const struct trace_key *keys, size_t nkeys,
                                               const char *recorded);

/* ---- streaming: the message as it is spooled --------------------------- */

/* Sits between the DATA decoder and the spool file: passes message bytes
 * through, notes the Message-ID, renames a client's own X-Postern-Trace
 * fields X-Postern-Trace-Prior, inserts the trace header at the end of the
 * header block (before the empty line, or at the end when the message has
 * no body), and computes the SHA-256 of the message as relayed (everything
 * it outputs after the caller's own prefix, trace header included). With
 * key NULL no trace header is inserted; all the rest is done. */
struct trace_scan;
struct trace_scan *trace_scan_new(const struct trace_key *key, const char *gate,
                                  const char *trace_id, int64_t time);
void trace_scan_free(struct trace_scan *ts);
/* Before the first feed: when the message turns out to have no Message-ID
 * field, "Message-ID: <message_id>" is added at the end of its header
 * block (ahead of the trace header), and it is the Message-ID that the MAC
 * covers and trace_scan_message_id() returns. Copied. */
void trace_scan_add_message_id(struct trace_scan *ts, const char *message_id);
/* Hashes bytes written before the message (our Received header). */
void trace_scan_prefix(struct trace_scan *ts, const void *data, size_t len);
/* Message bytes in; output (to be spooled) appended to out. */
void trace_scan_feed(struct trace_scan *ts, const void *data, size_t len, struct buf *out);
/* End of message: flushes what is held back (appended to out). */
void trace_scan_finish(struct trace_scan *ts, struct buf *out);
/* After finish: lowercase hex SHA-256 (65 bytes) and the Message-ID ("" if none). */
const char *trace_scan_sha256(const struct trace_scan *ts);
const char *trace_scan_message_id(const struct trace_scan *ts);

/* ---- the store ------------------------------------------------------------ */

struct trace_record {
	char qid[ID_LEN + 1];
	char trace_id[TRACE_ID_LEN + 1];
	int64_t time;
	const char *sid;
	const char *listener;
	const char *client_ip;
	unsigned client_port;
	const char *reverse_name;
	const char *helo;
	const char *tls_version;
	const char *tls_cipher;
	const char *tls_sni;
	const char *cert_fp;
	const char *cert_subject;
	const char *cert_issuer;
	const char *sasl_mech;
	const char *account;
	const char *mail_from;
	const char *const *rcpts;
	size_t nrcpts;
	uint64_t size;
	const char *body_sha256;
	const char *message_id;
	const char *smime_status;   /* NULL until S/MIME exists */
	const char *trust_class;
};

struct trace_reject {
	int64_t time;
	const char *sid;
	const char *listener;
	const char *client_ip;
	const char *helo;
	const char *account;        /* authenticated, or the name tried in AUTH */
	const char *command;        /* "AUTH", "MAIL", "RCPT", "DATA", "CONNECT" ... */
	const char *mail_from;
	const char *rcpt;
	const char *rule;           /* "auth_failed", "relay_denied", "max_size" ... */
	int code;
	const char *enh;
	const char *text;
};

struct trace_delivery {
	const char *qid;
	const char *rcpt;
	const char *status;         /* "delivered", "deferred", "bounced" */
	const char *relay;
	const char *reply;
	int64_t time;
};

struct trace_store;

/* Opens (creating or migrating the schema, WAL mode) and starts the
 * writer thread. Returns NULL with err filled. */
struct trace_store *trace_store_open(const char *path, char *err, size_t errlen);
void trace_store_close(struct trace_store *ts);

/* A record on its way to the store: a deep copy of rec (the caller keeps
 * its own), made on the loop and written on another thread. */
struct trace_entry;
struct trace_entry *trace_entry_new(const struct trace_record *rec);
/* 0 once written; -EIO when it could not be (the message must not be
 * accepted); -EINPROGRESS before. */
int trace_entry_status(const struct trace_entry *e);
const char *trace_entry_qid(const struct trace_entry *e);
void trace_entry_free(struct trace_entry *e);
/* Hands the entries to the store's writer thread and returns at once: they
 * are written in one transaction with whatever else is waiting (other
 * batches, refusals, delivery results, retractions). trace_store_wait()
 * blocks until that transaction is durable or failed, sets each entry's
 * status, frees the batch and returns 0 if the transaction committed,
 * -EIO if not; the entries and the array must live until then. Both
 * block or may: for a thread of their own, never an event loop.
 * trace_store_write() is the two in one. Thread-safe. */
struct trace_batch;
struct trace_batch *trace_store_submit(struct trace_store *ts, struct trace_entry *const *v,
                                       size_t n);
int trace_store_wait(struct trace_store *ts, struct trace_batch *b);
int trace_store_write(struct trace_store *ts, struct trace_entry *const *v, size_t n);
/* Fire and forget: refused attempts and delivery results. Thread-safe. */
void trace_store_reject(struct trace_store *ts, const struct trace_reject *r);
void trace_store_delivery(struct trace_store *ts, const struct trace_delivery *d);
/* Takes back the record of a message that was not accepted after all (its
 * queue file failed after the record was written): a record stands for an
 * accepted message only. Fire and forget, like the two above: a failed
 * transaction keeps it for the next. trace_store_retract_now() retracts n
 * records and waits for the transaction: 0 once they are gone on disk,
 * -EIO if not (they are tried again). It blocks, like trace_store_write. */
void trace_store_retract(struct trace_store *ts, const char *qid);
int trace_store_retract_now(struct trace_store *ts, const char *const *qids, size_t n);

/* ---- lookups and statistics (read-only, for the operator's tool) -------- */

/* Filters, all optional (NULL / 0) and combined with AND. Addresses and
 * accounts match without regard to (ASCII) case. */
struct trace_query {
	const char *qid;
	const char *trace_id;
	const char *message_id;   /* with or without the angle brackets */
	const char *account;
	const char *client_ip;    /* an address or a CIDR block, IPv4 or IPv6 */
	const char *cert_fp;      /* SHA-256 hex; colons and case do not matter */
	const char *mail_from;    /* the envelope sender */
	const char *rcpt;         /* any of the recipients */
	int64_t since;            /* time >= since, when not 0 */
	int64_t until;            /* time < until, when not 0 */
	unsigned limit;           /* 0: all */
};

struct trace_rcpt_status {
	const char *rcpt;
	const char *status;       /* "queued", "delivered", "deferred", "bounced" */
	const char *relay;        /* NULL until a delivery attempt */
	const char *reply;
	int64_t time;             /* of the latest result; 0 while queued */
};

/* One matching message. Everything points into the store's memory and is
 * valid only during the callback. rec.rcpts lists the same recipients. */
struct trace_match {
	struct trace_record rec;
	const struct trace_rcpt_status *rcpts;
	size_t nrcpts;
};
typedef void (*trace_match_cb)(const struct trace_match *m, void *arg);

/* Opens the database at path read-only and calls cb for each matching
 * message, newest first. Returns the number of matches, -EINVAL for a bad
 * filter (a malformed address or fingerprint), or -EIO when the database
 * cannot be read; err says why. */
int trace_query_run(const char *path, const struct trace_query *q, trace_match_cb cb,
                    void *arg, char *err, size_t errlen);

/* For each of n queue ids, whether the store holds its record (known[i]),
 * all in one read of the database at path: the start-up check of a queue
 * left by a long outage asks for thousands. Returns 0, or -EIO with err
 * filled when the store cannot say. */
int trace_known_qids(const char *path, const char *const *qids, size_t n, bool *known,
                     char *err, size_t errlen);

/* Deletes the messages (with their recipients) and the refusals older than
 * `before` (unix time), in short transactions so that the daemon's writes
 * wait little. Returns 0 with the counts, or -EIO with err filled. */
int trace_prune(const char *path, int64_t before, uint64_t *messages, uint64_t *rejects,
                char *err, size_t errlen);

/* A figure per key: a listener, a rule, an account, an address, a TLS
 * version or cipher ("" stands for none). */
struct trace_count {
	char *key;
	uint64_t count;
	uint64_t bytes;           /* message sizes, where that means something */
};
struct trace_counts {
	struct trace_count *v;
	size_t n;
};

/* Figures over [since, until) (0: unbounded). Delivery figures concern the
 * recipients of the messages accepted in that window, by their latest
 * result; delays are that result's time minus the message's, nearest-rank
 * median and 99th percentile, over the delivered ones. */
struct trace_stats {
	uint64_t messages, bytes, recipients;
	uint64_t rejects;
	struct trace_counts accepted_by_listener;
	struct trace_counts rejected_by_rule;
	struct trace_counts rejected_by_listener;
	struct trace_counts auth_failures_by_account;   /* rule "auth_failed" */
	struct trace_counts auth_failures_by_ip;
	struct trace_counts top_accounts;              /* by message count */
	struct trace_counts top_accounts_by_bytes;
	struct trace_counts top_ips;
	struct trace_counts top_ips_by_bytes;
	struct trace_counts tls_versions;
	struct trace_counts tls_ciphers;
	uint64_t queued, delivered, deferred, bounced;
	int64_t delay_median, delay_p99;   /* seconds; -1 when nothing delivered */
};

/* Fills *st (lists of at most `top` entries for the "top" and per-account /
 * per-address lists, all entries for the others). Returns 0, or -EIO with
 * err filled. trace_stats_free() releases the lists, also after failure. */
int trace_stats_run(const char *path, int64_t since, int64_t until, unsigned top,
                    struct trace_stats *st, char *err, size_t errlen);
void trace_stats_free(struct trace_stats *st);

/* ---- in the phase pipeline (hook.c) -------------------------------------- */

/* The trace mark stage (Received, Message-ID, trace header, SHA-256), the
 * record that rides with the queue file at HOOK_COMMIT, and the refusals
 * as rows. store may be NULL (tracing off: the stage still runs); key NULL:
 * no trace header. Borrows store and key. */
struct hook_ops;
struct trace_hook;
struct trace_hook *trace_hook_new(struct trace_store *store, const struct trace_key *key,
                                  const char *hostname, bool show_account);
void trace_hook_free(struct trace_hook *h);
extern const struct hook_ops trace_hook_ops;

#endif
