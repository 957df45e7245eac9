/*
 * smtp.h - the SMTP protocol engine. Bytes and completions go in; replies
 * and actions come out through a small I/O interface that the transport
 * (conn/) implements. No uv.h, no socket: the engine links and runs in a
 * unit test with a fake transport, and under a fuzzer.
 *
 * What the engine consults runs through the phase pipeline (hook/): the
 * connection limits, the AUTH guard, sender ownership, relay rules, rates,
 * DNS waits, header From. What it needs done that blocks (a SASL step, a
 * queue file made durable) it asks of two services (struct smtp_auth_ops,
 * struct smtp_queue_ops) that answer later through
 * smtp_session_complete(), found by session id: a session that has gone
 * is simply not found, and an answer to a wait the session no longer has
 * (its sequence number moved on) is dropped.
 *
 * Ownership: smtp_session_new() returns a session owned by the transport,
 * freed by smtp_session_free() (which also frees whatever the session
 * still holds of the services: its SASL object, an uncommitted queue
 * file). The config, the chain and the services outlive every session
 * made with them (the runtime generation pins them).
 */
#ifndef POSTERN_SMTP_H
#define POSTERN_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/common.h"
#include "hook/hook.h"

struct smtp_session;

/* ---- the transport, as the engine sees it --------------------------------- */

struct smtp_io {
	/* Reply bytes, buffered: the transport writes once per batch. */
	void (*send)(void *c, const char *p, size_t n);
	void (*flush)(void *c);
	/* Closes, after the replies buffered so far have left when asked. */
	void (*close)(void *c, bool after_flush);
	/* Starts the TLS handshake; the engine drops any plaintext it still
	 * holds first (CVE-2011-0411). refusal: only to answer a refusal
	 * inside TLS; the transport may decline (too many at once) by
	 * returning -1, and the engine then closes. */
	int (*start_tls)(void *c, bool refusal);
	void (*pause)(void *c);
	void (*resume)(void *c);
	/* The session's one timer (smtp_session_timer when it fires). */
	void (*set_timer)(void *c, uint64_t ms);
	/* Milliseconds of a monotonic clock; sessions on this loop now. */
	uint64_t (*now_ms)(void *c);
	unsigned (*sessions)(void *c);
	/* A newer configuration (a reload) for this connection, or NULL. The
	 * engine asks between transactions and moves to it at once: the old
	 * one may be gone when this returns. */
	const struct smtp_config *(*refresh)(void *c);
};

/* ---- services that answer later ------------------------------------------- */

/* Where an answer goes: the services hand it to the transport's side of
 * the loop (conn_complete), which finds the session. */
struct smtp_token {
	void *route;             /* the transport's loop object */
	uint64_t sid;
	uint32_t seq;            /* which wait of the session */
};

enum smtp_auth_result {
	SMTP_AUTH_OK,
	SMTP_AUTH_CONTINUE,      /* send challenge, read a response */
	SMTP_AUTH_FAIL,          /* wrong credentials */
	SMTP_AUTH_MALFORMED,     /* the client's data could not be decoded */
	SMTP_AUTH_TEMPFAIL,
};

struct smtp_auth_answer {
	enum smtp_auth_result result;
	void *auth;              /* the SASL object, back from the work */
	const char *challenge;   /* CONTINUE: base64 text */
	const char *account;     /* OK: the account's one name */
	const char *mech;
	const char *typed;       /* the name the client spelled, or NULL */
	const char *attempted;   /* FAIL: the account that name would be */
	const char *error;       /* FAIL/TEMPFAIL: a reason for the log */
	bool cached;             /* answered from the credential cache */
};

struct smtp_auth_ops {
	/* A SASL object for one session, or NULL. */
	void *(*open)(void *ctx, const char *local_ip, unsigned local_port,
	              const char *client_ip, unsigned client_port, unsigned ssf);
	bool (*offered)(void *ctx, void *auth, const char *mech);
	/* A step (mech set for the first): answers now (true, *ans filled, the
	 * object stays the caller's) or takes the object and answers later
	 * with SMTP_DONE_AUTH (false). input is wiped by the caller after. */
	bool (*step)(void *ctx, void *auth, const char *mech, const char *input,
	             struct smtp_token tok, struct smtp_auth_answer *ans);
	void (*free)(void *ctx, void *auth);
};

/* The transaction as the queue file records it. */
struct smtp_envelope {
	const char *qid;
	int64_t time;
	const char *from;
	const char *const *rcpts;
	size_t nrcpts;
	bool smtputf8, eightbit;
	const char *const *kv;   /* facts for the envelope: key, value, ... */
	size_t nkv;
};

struct smtp_queue_ops {
	/* Makes the queue file with head as its first message bytes; answers
	 * with SMTP_DONE_QUEUE_OPEN (the file, or a status < 0). */
	void (*open)(void *ctx, const struct smtp_envelope *env, const struct buf *head,
	             struct smtp_token tok);
	int (*write)(void *ctx, void *file, const char *p, size_t n);
	/* Makes file durable with rider (or NULL); takes the file; answers with
	 * SMTP_DONE_QUEUE_COMMIT. */
	void (*commit)(void *ctx, void *file, void *rider, struct smtp_token tok);
	void (*abort)(void *ctx, void *file);
	/* A rider that never went to a commit (the message failed first). */
	void (*drop_rider)(void *ctx, void *rider);
};

enum smtp_done_kind {
	SMTP_DONE_HOOK,          /* a pending check may run again */
	SMTP_DONE_AUTH,
	SMTP_DONE_QUEUE_OPEN,
	SMTP_DONE_QUEUE_COMMIT,
};

struct smtp_done {
	enum smtp_done_kind kind;
	unsigned hook;           /* HOOK: the hook's index */
	const struct smtp_auth_answer *auth;
	void *file;              /* QUEUE_OPEN */
	int status;              /* QUEUE_*: 0 or -errno */
	bool unrecorded;         /* QUEUE_COMMIT: the rider failed, not the file */
};

/* ---- configuration: one per listener and runtime generation ---------------- */

struct smtp_config {
	const char *hostname;
	const char *listener;
	enum hook_mode mode;
	uint64_t max_message_size;
	unsigned max_command_line;
	unsigned max_text_line;        /* CRLF included */
	unsigned idle_timeout, data_timeout;   /* seconds */
	uint64_t data_progress;        /* bytes that restart the data timer */
	unsigned session_lifetime;     /* seconds; 0: none */
	unsigned stress_threshold;     /* percent of max_connections; 0: never */
	unsigned stress_idle_timeout, stress_data_timeout;
	unsigned max_connections, nloops;
	unsigned handshake_timeout;
	unsigned max_errors;
	const char *auth_mechs;        /* offered after TLS; "" or NULL: none */
	const struct hook_chain *hooks;
	const struct smtp_auth_ops *auth;
	void *auth_ctx;
	const struct smtp_queue_ops *queue;
	void *queue_ctx;
};

struct smtp_peer {
	char client_ip[64];
	unsigned client_port;
	char local_ip[64];
	unsigned local_port;
};

/* ---- the session ---------------------------------------------------------------- */

/* The session starts: HOOK_CONNECT, then the greeting (or, on smtps, the
 * handshake the engine asks for). host finds sessions for the hooks;
 * route goes into service tokens. */
struct smtp_session *smtp_session_new(const struct smtp_config *cfg, uint64_t sid,
                                      const struct smtp_peer *peer, const struct smtp_io *io,
                                      void *c, struct hook_host *host, void *route);
void smtp_session_start(struct smtp_session *s);
/* Plaintext from the client. */
void smtp_session_input(struct smtp_session *s, const char *p, size_t n);
/* Runs what input is buffered (after the transport paused for its own
 * reasons, a full write queue). */
void smtp_session_process(struct smtp_session *s);
/* The handshake is done; facts live as long as the transport's TLS. */
void smtp_session_tls_ready(struct smtp_session *s, const struct hook_tls *facts);
/* The timer set with io->set_timer fired. */
void smtp_session_timer(struct smtp_session *s);
/* The daemon stops: 421 now, or once the message in flight is done. */
void smtp_session_shutdown(struct smtp_session *s);
/* An answer. Returns false when it is not the one the session waits for
 * (seq moved on): then it is dropped, and what it carries (the SASL
 * object, the file) is still the caller's to free. */
bool smtp_session_complete(struct smtp_session *s, uint32_t seq, const struct smtp_done *d);
/* Replies wait for the one that ends this wait (the 354 after MAIL/RCPT
 * pipelined with DATA): the transport does not flush meanwhile. */
bool smtp_session_holds_replies(const struct smtp_session *s);
/* Whether the engine is done with the connection (closing). */
bool smtp_session_closing(const struct smtp_session *s);
/* For the hook host: the hook's state and the facts of a live session. */
void *smtp_session_hook_state(struct smtp_session *s, unsigned index);
struct hook_facts *smtp_session_facts(struct smtp_session *s);
uint64_t smtp_session_id(const struct smtp_session *s);
const char *smtp_session_sid(const struct smtp_session *s);
void smtp_session_free(struct smtp_session *s);

#endif
