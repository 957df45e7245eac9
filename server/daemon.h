/*
 * daemon.h - the process: configuration, listening sockets, one event loop
 * per worker thread, the runtime generation the sessions run under, the
 * spool, the trace store and the relay. Nothing includes server/.
 *
 * Ownership: daemon_new() returns the process object, freed by
 * daemon_free() after daemon_run() returns. Generations are refcounted:
 * every connection pins the one it started under (runtime.c).
 */
#ifndef POSTERN_DAEMON_H
#define POSTERN_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>
#include <openssl/ssl.h>

#include "conf/conf.h"
#include "conn/conn.h"
#include "dns/dns.h"
#include "policy/policy.h"
#include "relay/relay.h"
#include "smtp/smtp.h"
#include "trace/trace.h"

struct daemon;

/* One listener's sockets and TLS context, made once (as root). */
struct listener {
	struct daemon *d;
	size_t index;
	int *fds;                 /* one SO_REUSEPORT socket per worker */
	SSL_CTX *ssl_ctx;
};

/* One configuration load: everything a session reads, immutable, shared
 * by every loop, pinned by each connection for its life. */
struct runtime_listener {
	const struct conf_listen *conf;
	SSL_CTX *ssl_ctx;         /* a reference of the listener's */
	struct policy_conf policy;
	struct policy_hook *policy_hook;
	struct hook_chain *chain;
	struct smtp_config smtp;
};

struct runtime {
	unsigned refs;            /* under the daemon's runtime lock */
	unsigned generation;
	struct conf *conf;        /* owned unless it is the daemon's own */
	bool owns_conf;
	struct policy_tables *tables;
	struct trace_hook *trace_hook;
	struct runtime_listener *listeners;
	size_t nlisteners;
};

struct worker {
	struct daemon *d;
	unsigned index;
	uv_loop_t loop;
	uv_thread_t thread;
	struct conn_loop *conn;
	uv_async_t stop_async;
	uv_async_t commit_async;  /* the spool's threads wake us */
	uv_timer_t stop_timer;    /* bounds a graceful stop */
	bool stopping;
	struct dns_resolver *dns; /* NULL when no lookups are configured */
	uint64_t stop_deadline;   /* loop time when a graceful stop gives up */
	unsigned inflight;        /* queue file creates and commits not yet called back */
};

struct daemon {
	struct conf *conf;        /* the configuration read at start */
	struct listener *listeners;
	size_t nlisteners;
	struct worker *workers;
	unsigned nworkers;
	struct relay_spool *spool;
	struct relay *relay;
	struct trace_store *trace;  /* NULL when trace { enabled = false } */
	struct policy_state *pstate;     /* rate limits, connection counts, AUTH guard */
	struct dns_hook *dns_hook;       /* resolvers per loop; NULL without lookups */
	struct trace_key *trace_keys;
	size_t ntrace_keys;       /* 0: no trace header */
	char *auth_mechs;         /* what EHLO offers after TLS */
	pthread_mutex_t runtime_lock;
	struct runtime *current;  /* the generation new connections get */
	atomic_uint generations;  /* the newest's number: read without the lock */
	atomic_bool stopping;
	atomic_uint workers_running;
	uv_async_t main_wake;     /* a worker's loop has ended */
	uv_timer_t force_timer;   /* bounds a graceful stop */
};

/* Binds every listener (as root if needed), loads keys and certificates,
 * initialises SASL. With check_only, only loads and checks (posternd -t):
 * binds nothing. On error returns NULL with err filled. Takes conf. */
struct daemon *daemon_new(struct conf *conf, bool check_only, char *err, size_t errlen);
/* Drops privileges to conf->user when running as root. */
int daemon_drop_privileges(struct daemon *d, char *err, size_t errlen);
/* Opens the spool, starts the relay and the workers, then waits for
 * SIGTERM/SIGINT. */
int daemon_run(struct daemon *d);
void daemon_free(struct daemon *d);

/* ---- runtime.c: generations ------------------------------------------------- */

/* Builds a generation from conf (taken on success unless it is the
 * daemon's own d->conf): tables loaded, one chain per listener. NULL with
 * err filled; conf is then the caller's. */
struct runtime *runtime_build(struct daemon *d, struct conf *conf, char *err, size_t errlen);
/* Makes r the generation new connections get; the old one goes when its
 * last connection does. */
void runtime_install(struct daemon *d, struct runtime *r);
/* SIGHUP: a complete new generation, or the old one kept and the reason
 * logged. */
void runtime_reload(struct daemon *d);
struct runtime *runtime_pin(struct daemon *d);
void runtime_unpin(struct daemon *d, struct runtime *r);
/* For a listener's connections (struct conn_listener_ops). */
extern const struct conn_listener_ops runtime_listener_ops;

/* ---- services.c: SASL and the queue for the engine -------------------------------- */

extern const struct smtp_auth_ops server_auth_ops;
extern const struct smtp_queue_ops server_queue_ops;
/* The worker of a loop, for the services (route is its conn_loop). */
struct worker *server_worker_of(struct daemon *d, void *route);

/* ---- records.c: the trace store beside the spool ------------------------------------ */

/* Start-up: queue files with no record go to hold/, records of files left
 * in tmp/ are taken back; then the riders are set. */
int records_start(struct daemon *d);
void records_relay_result(void *arg, const char *qid, const char *rcpt, const char *event,
                          const char *relay, const char *reply);

#endif
