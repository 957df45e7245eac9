/*
 * smtp_fake.h - the SMTP engine without a socket or a loop: a fake
 * transport that records what the engine sends and asks for, fake SASL and
 * queue services whose answers wait until the test (or the fuzzer)
 * delivers them, and a scripted hook that answers each phase as told.
 * Shared by test_smtp.c and the whole-session fuzz target.
 *
 * Ownership: fake_new() returns a harness owning its session and
 * everything the engine handed to the fakes; fake_free() releases all.
 */
#ifndef POSTERN_SMTP_FAKE_H
#define POSTERN_SMTP_FAKE_H

#include "smtp/smtp.h"
#include "hook/hook.h"
#include "msg/msg.h"

/* What the scripted hook answers at a phase. */
struct fake_rule {
	enum hook_phase phase;
	const char *arg;          /* only for this argument (MAIL/RCPT path), or NULL */
	int code;                 /* 0: OK */
	const char *enh, *rule, *text;
	bool pending;             /* answer PENDING until fake_wake() */
	bool not_an_error;
	unsigned delay_ms;
	int auth_outcome;         /* HOOK_AUTH: before (0), accepted (1), refused (-1) */
};

struct fake_pending {
	enum smtp_done_kind kind;
	struct smtp_token tok;
	void *auth;               /* AUTH: the object */
	int auth_result;          /* enum smtp_auth_result */
	void *file;
};

#define FAKE_MAX_RULES 16
#define FAKE_MAX_PENDING 16
#define FAKE_MAX_SEEN 64

struct fake {
	struct smtp_config cfg;
	struct hook_chain *chain;
	struct hook_host host;
	struct smtp_session *s;
	struct buf out;           /* everything sent, flushed or not */
	size_t flushed;           /* bytes of out flushed so far */
	size_t taken;             /* bytes of out fake_replies() has returned */
	struct buf replies;
	unsigned flushes;
	bool closed, close_after_flush;
	int tls_started;          /* 1: asked, 2: asked for a refusal */
	bool reading;
	uint64_t timer_ms;        /* the last timer asked for; UINT64_MAX: none */
	uint64_t now;
	bool tls_refuse;          /* start_tls answers -1 */
	/* services */
	bool auth_async;          /* SASL answers later */
	bool queue_fail_open, queue_fail_commit;
	struct fake_pending pending[FAKE_MAX_PENDING];
	size_t npending;
	struct buf message;       /* what the queue file got, head included */
	unsigned files_open, files_committed, files_aborted, riders;
	/* the hook */
	struct fake_rule rules[FAKE_MAX_RULES];
	size_t nrules;
	bool woken_pending;       /* rules with pending answer once woken */
	struct hook_verdict seen[FAKE_MAX_SEEN];   /* observed refusals */
	enum hook_phase seen_phase[FAKE_MAX_SEEN];
	size_t nseen;
	unsigned observed_ok[HOOK_NPHASES];
	bool stage_head;          /* the hook adds a stage with a head */
};

/* A harness for a listener of that mode, the session not started. */
struct fake *fake_new(enum hook_mode mode);
void fake_start(struct fake *f);
void fake_rule(struct fake *f, struct fake_rule r);
/* Client bytes in. */
void fake_send(struct fake *f, const char *s);
void fake_sendn(struct fake *f, const char *p, size_t n);
/* Delivers the oldest pending service answer; false when none. */
bool fake_complete(struct fake *f);
/* Delivers every pending answer, repeatedly, until none is left. */
void fake_complete_all(struct fake *f);
/* The pending checks answer now. */
void fake_wake(struct fake *f);
/* The handshake the engine asked for is done. */
void fake_tls(struct fake *f);
/* The timer fires (after advancing the clock to it). */
void fake_timer(struct fake *f);
/* Takes the replies flushed since the last call: the codes, one line each
 * ("250 2.1.0 Ok"), joined by '\n'. Returns a string owned by f. */
const char *fake_replies(struct fake *f);
/* Replies sent but not flushed yet. */
size_t fake_unflushed(const struct fake *f);
void fake_free(struct fake *f);

#endif
