/*
 * hook.h - the phase pipeline: what the SMTP engine consults at each phase
 * of a session, and who hears the outcome.
 *
 * A hook is a row of function pointers (struct hook_ops) with an object of
 * its own (self), listed in a chain that the runtime builds once per
 * configuration load and per listener. At each phase the engine runs the
 * chain's checks in order: a check answers OK (the next one runs), TEMP or
 * PERM (the phase is refused with the verdict's reply), DROP (the reply,
 * then the connection closes), or PENDING: its work goes on elsewhere (a
 * DNS answer, a filter), and it calls hook_wake() with the token it was
 * given when that work is done; the engine then runs the same check again,
 * which now answers from its session state. A wake for a session that has
 * gone, or that no longer waits for that hook, does nothing: the token is
 * looked up by session id (STYLE: late work finds its session by id).
 * Every phase's outcome, and every refusal the engine itself makes, then
 * goes to every hook's observe(): the trace store's refusals, logs, later
 * metrics.
 *
 * No uv.h, no sockets: hooks and the engine link and are tested without
 * an event loop. hook_wake() and hook_state() must be called on the loop
 * thread of the session (callbacks of libuv's pool, timers and DNS answers
 * run there).
 *
 * Ownership: a chain (hook_chain_new) is immutable once built and owned by
 * whoever built it; it does not own the hooks' self objects. Per-session
 * state (hook_ops.state_size bytes per hook, zeroed) is allocated by
 * hook_session_new() and freed by hook_session_free() after each hook's
 * close(). Strings in a view belong to the engine and live for the call.
 */
#ifndef POSTERN_HOOK_H
#define POSTERN_HOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/common.h"
#include "msg/msg.h"

enum hook_phase {
	HOOK_CONNECT,     /* the connection, before the greeting */
	HOOK_TLS,         /* the handshake is done */
	HOOK_HELO,        /* HELO/EHLO */
	HOOK_AUTH,        /* AUTH: before the exchange (arg NULL) and when the
	                   * name is known (arg: the name tried), then observers
	                   * hear the result */
	HOOK_MAIL,        /* MAIL FROM (arg: the path) */
	HOOK_RCPT,        /* RCPT TO (arg: the path) */
	HOOK_DATA,        /* DATA/BDAT, before the queue file is made */
	HOOK_EOM,         /* end of message, before it is committed */
	HOOK_COMMIT,      /* checks: just before the commit (a record to ride
	                   * with the file); observers: the commit's result */
	HOOK_DELIVERY,    /* observers only (not driven by the engine) */
	HOOK_DISCONNECT,  /* observers only */
	HOOK_NPHASES
};

enum hook_result {
	HOOK_OK = 0,
	HOOK_TEMP,        /* 4xx */
	HOOK_PERM,        /* 5xx */
	HOOK_DROP,        /* the reply, then close (421 and the like) */
	HOOK_PENDING,
};

/* A verdict carries its reply. text is copied into the verdict, so that a
 * verdict outlives whatever filled it. */
#define HOOK_TEXT_MAX 400
struct hook_verdict {
	enum hook_result result;
	int code;                /* 0 with HOOK_OK */
	const char *enh;         /* "5.7.1": static */
	const char *rule;        /* "relay_denied": static; for logs, trace, stats */
	const char *hook;        /* the hook that decided, or NULL (the engine) */
	bool not_an_error;       /* not counted toward max_errors (452 4.5.3) */
	unsigned delay_ms;       /* the reply waits this long (failed AUTH) */
	char text[HOOK_TEXT_MAX];
};

/* Fills v; result follows from code (0 OK, 4xx TEMP, 5xx PERM). */
void hook_verdict_set(struct hook_verdict *v, int code, const char *enh, const char *rule,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* What the TLS handshake established, once; NULL when unknown. */
struct hook_tls {
	const char *version, *cipher, *sni;
	int bits;
	bool reused;
	const char *cert_fp, *cert_subject, *cert_issuer;   /* NULL without a certificate */
	bool cert_verified;
};

/* Facts that hooks learn and others read: the engine owns the storage,
 * hooks set them through hook_facts_set(). The first two belong to the
 * session, the rest to the transaction (cleared when it ends). */
#define HOOK_TRACE_ID_MAX 32
struct hook_facts {
	char *client_name;       /* reverse name confirmed by a forward lookup */
	char *dnsbl_zone;        /* a zone that lists the client, or NULL */
	char trace_id[HOOK_TRACE_ID_MAX + 1];   /* "" until a stage names one */
	char *message_id;        /* as relayed, or NULL */
	char body_sha256[65];    /* of the message as relayed, "" until known */
};

enum hook_mode { HOOK_MODE_SMTPS, HOOK_MODE_SUBMISSION, HOOK_MODE_MX };

/* A read-only description of the session and the transaction. */
struct hook_view {
	uint64_t id;
	const char *sid;
	const char *listener;
	enum hook_mode mode;
	const char *client_ip;
	unsigned client_port;
	const char *local_ip;
	unsigned local_port;
	const char *helo;                  /* NULL before HELO/EHLO */
	bool esmtp;                        /* EHLO rather than HELO */
	const struct hook_tls *tls;        /* NULL before TLS */
	const char *account;               /* authenticated identity, or NULL */
	const char *sasl_mech;
	struct hook_facts *facts;
	/* the transaction, once MAIL was accepted */
	const char *qid;
	const char *mail_from;             /* "" for <> */
	uint64_t mail_size;                /* SIZE=, 0 when not given */
	bool smtputf8, eightbit;
	const char *const *rcpts;
	size_t nrcpts;
	/* the phase's argument: the path of MAIL/RCPT; at HOOK_AUTH the
	 * account the name tried would be (auth_outcome != 0) */
	const char *arg;
	/* HOOK_AUTH: 0 before the exchange, 1 when the credentials were
	 * accepted (the check may still refuse: a locked account), -1 when
	 * they were not; auth_typed is the name as the client spelled it */
	int auth_outcome;
	const char *auth_typed;
	/* HOOK_EOM and later: the message's header section as received, and
	 * whether it was longer than what is kept (then not checkable whole) */
	const char *header;
	size_t header_len;
	bool header_cut;
	/* HOOK_DATA and later */
	int64_t time;                      /* the message's arrival (wall clock) */
	uint64_t size;                     /* message bytes from the client */
	/* a check at HOOK_COMMIT may hand the queue one record to make
	 * durable with the file (the trace record); the engine passes it to
	 * the queue and frees nothing of it */
	void **rider;
	double now;                        /* monotonic seconds */
	bool shutting_down;                /* the daemon is stopping */
};

struct hook_host;

/* Where a PENDING check's session is found again. */
struct hook_token {
	struct hook_host *host;
	uint64_t sid;
	unsigned index;          /* the hook's place in its chain */
};

struct hook_ops {
	const char *name;
	unsigned phases;         /* HOOK_BIT(phase) of the phases it checks */
	size_t state_size;       /* per-session state; 0: none */
	/* The session starts (before HOOK_CONNECT's checks); may start work
	 * that answers later through the token. Optional. */
	void (*open)(void *self, void *state, const struct hook_view *v, struct hook_token t);
	enum hook_result (*check)(void *self, void *state, enum hook_phase phase,
	                          const struct hook_view *v, struct hook_token t,
	                          struct hook_verdict *out);
	/* The outcome of a phase (or a refusal of the engine's own, with
	 * rule set); optional. */
	void (*observe)(void *self, void *state, enum hook_phase phase, const struct hook_view *v,
	                const struct hook_verdict *verdict);
	/* The session ends; the state is freed after this. Optional. */
	void (*close)(void *self, void *state);
	/* A stage for the message (after HOOK_DATA, before the 354), or
	 * NULL; bytes it appends to head come first in the queue file (a
	 * Received header). The pipe owns the stage. Optional. */
	const struct msg_stage_ops *stage_ops;
	void *(*stage)(void *self, void *state, const struct hook_view *v, struct buf *head);
};
#define HOOK_BIT(p) (1u << (p))

/* ---- chains (built once per configuration load) -------------------------- */

struct hook_chain;
struct hook_chain *hook_chain_new(void);
/* Appends a hook; order matters: checks and observers run in it. */
void hook_chain_add(struct hook_chain *c, const struct hook_ops *ops, void *self);
size_t hook_chain_len(const struct hook_chain *c);
void hook_chain_free(struct hook_chain *c);

/* ---- a session's run of the chain (for the engine) ----------------------- */

struct hook_session;
struct hook_session *hook_session_new(const struct hook_chain *c, struct hook_host *host,
                                      uint64_t sid);
void hook_session_open(struct hook_session *hs, const struct hook_view *v);
/* Runs the checks of phase from the first hook, or, after a PENDING, from
 * the hook that pended (hook_session_resume). Returns the verdict's
 * result; on HOOK_PENDING, *pending gets the index that is waited for. */
enum hook_result hook_session_run(struct hook_session *hs, enum hook_phase phase,
                                  const struct hook_view *v, struct hook_verdict *out,
                                  unsigned *pending);
enum hook_result hook_session_resume(struct hook_session *hs, enum hook_phase phase,
                                     unsigned from, const struct hook_view *v,
                                     struct hook_verdict *out, unsigned *pending);
void hook_session_observe(struct hook_session *hs, enum hook_phase phase,
                          const struct hook_view *v, const struct hook_verdict *verdict);
void *hook_session_state(struct hook_session *hs, unsigned index);
/* The session goes on under another chain of the same hooks in the same
 * order (a reload: new objects, same shape); the states stay. */
void hook_session_rechain(struct hook_session *hs, const struct hook_chain *c);
/* Calls every close() and frees the states. */
void hook_session_free(struct hook_session *hs);

/* ---- answers that come later (for the hooks) ------------------------------ */

/* The host is the engine's side of a loop: it finds a session by id. */
struct hook_host_ops {
	/* The hook's state in the live session sid, or NULL when it is gone. */
	void *(*state)(struct hook_host *h, uint64_t sid, unsigned index);
	struct hook_facts *(*facts)(struct hook_host *h, uint64_t sid);
	/* The session may run a pending check of this hook again. */
	void (*wake)(struct hook_host *h, uint64_t sid, unsigned index);
};
struct hook_host {
	const struct hook_host_ops *ops;
	unsigned loop;           /* which event loop: for per-loop resources */
};

unsigned hook_loop(const struct hook_token *t);
/* The hook's state in the token's session, NULL when it has gone. */
void *hook_state(const struct hook_token *t);
struct hook_facts *hook_facts(const struct hook_token *t);
/* The work a PENDING check waited for is done. */
void hook_wake(const struct hook_token *t);

/* Setters for facts (copies; NULL clears). */
void hook_facts_set(char **field, const char *value);
/* Clears the transaction's facts, or (all) every fact. */
void hook_facts_clear(struct hook_facts *f, bool all);
/* The message's stages from the hooks that have one, in chain order, with
 * their head bytes. */
void hook_session_stages(struct hook_session *hs, const struct hook_view *v,
                         struct msg_pipe *pipe, struct buf *head);

const char *hook_phase_name(enum hook_phase p);

#endif
