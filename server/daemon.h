/*
 * daemon.h - the process: configuration, listeners, one libuv loop per
 * worker thread, the spool and the relay. Read-only once the workers run,
 * except the atomic counters.
 *
 * Ownership: daemon_new() returns the process object, freed by
 * daemon_free() after daemon_run() returns.
 */
#ifndef POSTERN_DAEMON_H
#define POSTERN_DAEMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>
#include <openssl/ssl.h>

#include "conf/conf.h"
#include "policy/policy.h"
#include "relay/relay.h"
#include "trace/trace.h"

struct session;

struct listener {
	const struct conf_listen *conf;
	SSL_CTX *ssl_ctx;
	/* Swapped whole on SIGHUP; read with session_policy(), never kept
	 * across an asynchronous step. */
	_Atomic(struct policy_conf *) policy;
	int *fds;                 /* one SO_REUSEPORT socket per worker */
};

#define WORKER_BUCKETS 4096
/* Refused smtps connections whose handshake a loop completes at once to
 * answer 421 inside TLS (conn.c); each holds a descriptor meanwhile. */
#define LISTENER_REFUSALS_MAX 64

/* One listener's socket on one loop. Accepting is ours (accept4 on a
 * uv_poll_t), not uv_listen's, so that it can pause: when the process is
 * out of descriptors the socket stays readable and a listener that only
 * logged and returned would be called again at once, forever. */
struct listener_io {
	uv_poll_t poll;
	uv_timer_t backoff;       /* accepting paused after EMFILE/ENFILE */
	struct worker *w;
	struct listener *l;
	int fd;
	unsigned handles_open;
};

struct worker {
	struct daemon *d;
	unsigned index;
	uv_loop_t loop;
	uv_thread_t thread;
	uv_async_t stop_async;
	uv_async_t commit_async;  /* the spool's commit thread wakes us */
	uv_async_t reload_async;  /* new policy in place: acknowledge */
	uv_timer_t stop_timer;    /* bounds a graceful stop */
	struct listener_io *servers; /* one per listener */
	int reserve_fd;           /* given up to accept-and-refuse when out of descriptors */
	uint64_t accept_errors;   /* since the last accept_error line */
	uint64_t accept_error_logged; /* loop time of that line */
	struct session *buckets[WORKER_BUCKETS]; /* sessions by id */
	unsigned nsessions;
	unsigned refusing;        /* smtps refusals waiting for their handshake */
	uint64_t refusals_dropped;/* closed without a reply: too many of those */
	uint64_t refusals_drop_logged; /* loop time of the last such log line */
	bool stopping;
	struct dns_resolver *dns; /* NULL when no lookups are configured */
	uint64_t stop_deadline;   /* loop time when a graceful stop gives up */
	unsigned inflight;        /* queue file creates and commits not yet called back */
	char readbuf[65536];      /* shared by every read on this loop */
	char writebuf[16384];     /* ciphertext on its way to a socket, ditto */
};

struct daemon {
	struct conf *conf;
	struct listener *listeners;
	size_t nlisteners;
	struct worker *workers;
	unsigned nworkers;
	struct relay_spool *spool;
	struct relay *relay;
	struct trace_store *trace;  /* NULL when trace { enabled = false } */
	struct policy_state *pstate;     /* rate limits, connection counts, AUTH guard */
	struct policy_tables *tables;    /* sender map, trusted networks */
	struct conf *policy_src;         /* the conf the current policy came from, if reloaded */
	struct daemon_retired *retired;  /* the policy before the last reload */
	atomic_uint reload_acks;
	struct trace_key *trace_keys;
	size_t ntrace_keys;       /* 0: no trace header */
	char *auth_mechs;         /* what EHLO offers after TLS */
	atomic_bool stopping;
	atomic_uint workers_running;
	uv_async_t *main_wake;    /* a worker's loop has ended */
	uv_timer_t *force_timer;  /* bounds a graceful stop */
};

/* Binds every listener (as root if needed), loads keys and certificates,
 * initialises SASL. With check_only, only loads and checks (posternd -t):
 * binds nothing. On error returns NULL with err
 * filled. Takes conf. */
struct daemon *daemon_new(struct conf *conf, bool check_only, char *err, size_t errlen);
/* Drops privileges to conf->user when running as root. */
int daemon_drop_privileges(struct daemon *d, char *err, size_t errlen);
/* Opens the spool, starts the relay and the workers, then waits for
 * SIGTERM/SIGINT. */
int daemon_run(struct daemon *d);
void daemon_free(struct daemon *d);

/* Session table of a worker (habit: late work finds its session by id). */
void worker_add_session(struct worker *w, struct session *s);
void worker_remove_session(struct worker *w, struct session *s);
struct session *worker_find_session(struct worker *w, uint64_t sid);

/* Opens the listening sockets of a listener, one per worker. */
int listener_bind(struct listener *l, unsigned nworkers, char *err, size_t errlen);
/* Starts accepting on worker w. */
int listener_start(struct worker *w, size_t index);
/* Stops accepting on every listener of w and closes their sockets. */
void listener_stop_all(struct worker *w);

#endif
