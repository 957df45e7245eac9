/*
 * daemon.c - the process: builds listeners and TLS contexts, opens the
 * spool, starts the relay and one event loop per worker thread, and stops
 * them all gracefully on SIGTERM/SIGINT.
 *
 * Ownership: daemon_new() returns a daemon owned by the caller; it owns
 * the conf it was given and frees it in daemon_free().
 */
#include "config.h"
#include "server/daemon.h"
#include "server/sandbox.h"
#include "server/session.h"
#include "server/startup.h"
#include "auth/auth.h"
#include "certs/certs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A graceful stop waits this long for messages in flight. */
#define STOP_GRACE_MS 20000
#define STOP_POLL_MS 100
/* ...and then this much more for work the sessions no longer wait for. */
#define STOP_FORCE_MS 5000

/* ---- session table -------------------------------------------------------- */

void worker_add_session(struct worker *w, struct session *s)
{
	struct session **head = &w->buckets[s->id % WORKER_BUCKETS];
	s->hnext = *head;
	*head = s;
	w->nsessions++;
}

void worker_remove_session(struct worker *w, struct session *s)
{
	for (struct session **p = &w->buckets[s->id % WORKER_BUCKETS]; *p; p = &(*p)->hnext) {
		if (*p == s) {
			*p = s->hnext;
			w->nsessions--;
			return;
		}
	}
}

struct session *worker_find_session(struct worker *w, uint64_t sid)
{
	for (struct session *s = w->buckets[sid % WORKER_BUCKETS]; s; s = s->hnext)
		if (s->id == sid)
			return s;
	return NULL;
}

/* ---- set-up ------------------------------------------------------------------ */

static enum certs_client_verify daemon_verify_mode(enum conf_client_cert cc)
{
	switch (cc) {
	case CONF_CLIENT_CERT_OPTIONAL: return CERTS_CLIENT_OPTIONAL;
	case CONF_CLIENT_CERT_REQUIRE: return CERTS_CLIENT_REQUIRE;
	default: return CERTS_CLIENT_NONE;
	}
}

/* The verdicts' view of a listener: numbers from the configuration, tables
 * loaded from files. Points into c and t, which must outlive it. */
static struct policy_conf *daemon_policy_conf(const struct conf *c, const struct conf_listen *lc,
                                              const struct policy_tables *t)
{
	struct policy_conf *pc = xcalloc(1, sizeof(*pc));
	*pc = (struct policy_conf){
		.require_auth = lc->require_auth,
		.require_tls = lc->require_tls,
		.local_only = lc->mode == CONF_MODE_MX,
		.allow_untrusted_routing = c->allow_untrusted_routing,
		.max_recipients = c->max_recipients,
		.local_domains = (const char *const *)c->local_domains,
		.nlocal_domains = c->nlocal_domains,
		.check_sender = lc->require_auth,
		.check_header_from = c->check_header_from && lc->require_auth,
		.sendermap = t->sendermap,
		.trusted = t->trusted,
		.messages_per_hour = c->messages_per_hour,
		.recipients_per_hour = c->recipients_per_hour,
		.max_conn_per_ip = c->max_connections_per_ip,
		.max_conn_total = c->max_connections,
		.conn_per_ip_per_minute = c->connections_per_ip_per_minute,
		.auth_max_failures = c->auth_max_failures,
		.auth_window = c->auth_window,
		.auth_lockout = c->auth_lockout,
		.auth_ip_budget = c->auth_ip_budget,
		.auth_delay_ms = c->auth_fail_delay_ms,
		.auth_delay_max_ms = c->auth_delay_max_ms,
	};
	/* A listener may set its own numbers. */
	if (lc->max_recipients >= 0)
		pc->max_recipients = (unsigned)lc->max_recipients;
	if (lc->messages_per_hour >= 0)
		pc->messages_per_hour = (unsigned)lc->messages_per_hour;
	if (lc->recipients_per_hour >= 0)
		pc->recipients_per_hour = (unsigned)lc->recipients_per_hour;
	if (lc->max_connections_per_ip >= 0)
		pc->max_conn_per_ip = (unsigned)lc->max_connections_per_ip;
	if (lc->connections_per_ip_per_minute >= 0)
		pc->conn_per_ip_per_minute = (unsigned)lc->connections_per_ip_per_minute;
	return pc;
}

static struct policy_tables *daemon_tables(const struct conf *c, char *err, size_t errlen)
{
	return policy_tables_load(c->sender_map, (const char *const *)c->trusted_networks,
	                          c->ntrusted_networks, err, errlen);
}

static int daemon_listeners(struct daemon *d, bool bind, char *err, size_t errlen)
{
	const struct conf *c = d->conf;
	d->nlisteners = c->nlistens;
	d->listeners = xcalloc(c->nlistens, sizeof(*d->listeners));
	for (size_t i = 0; i < c->nlistens; i++) {
		struct listener *l = &d->listeners[i];
		l->conf = &c->listens[i];
		struct certs_server_conf sc = {
			.cert_file = c->tls_cert, .key_file = c->tls_key, .ca_file = c->tls_ca,
			.ciphers = c->tls_ciphers, .client_verify = daemon_verify_mode(l->conf->client_cert),
		};
		char why[512];
		l->ssl_ctx = certs_server_ctx(&sc, why, sizeof(why));
		if (!l->ssl_ctx) {
			snprintf(err, errlen, "%s:%d: tls: %s", c->path, c->tls_line, why);
			return -1;
		}
		atomic_store(&l->policy, daemon_policy_conf(c, l->conf, d->tables));
		if (bind && listener_bind(l, d->nworkers, err, errlen) < 0)
			return -1;
	}
	return 0;
}

static int daemon_auth(struct daemon *d, char *err, size_t errlen)
{
	const struct conf *c = d->conf;
	struct auth_conf ac = {
		.service = c->sasl_service, .app_name = "postern", .config_dir = c->sasl_config_dir,
		.sasldb = c->sasl_sasldb, .mech_list = c->sasl_mechanisms,
		.cache = c->sasl_credential_cache,
	};
	if (auth_init(&ac, err, errlen) < 0)
		return -1;
	/* What EHLO offers after TLS: ask Cyrus once, with TLS-level strength. */
	struct auth_session *probe = auth_session_new(c->hostname, NULL, NULL, 256, NULL);
	d->auth_mechs = str_dup(probe ? auth_mechanisms(probe) : "");
	auth_session_free(probe);
	return 0;
}

struct daemon *daemon_new(struct conf *conf, bool check_only, char *err, size_t errlen)
{
	struct daemon *d = xcalloc(1, sizeof(*d));
	d->conf = conf;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	d->nworkers = conf->loops ? conf->loops : (unsigned)(ncpu > 0 ? ncpu : 1);
	if (startup_fd_limit(conf, d->nworkers, err, errlen) < 0)
		goto fail;
	char why[512];
	d->tables = daemon_tables(conf, why, sizeof(why));
	if (!d->tables) {
		snprintf(err, errlen, "%s: policy: %s", conf->path, why);
		goto fail;
	}
	d->pstate = policy_state_new(conf->ipv6_prefix);
	if (daemon_listeners(d, !check_only, err, errlen) < 0 || daemon_auth(d, err, errlen) < 0)
		goto fail;
	/* Keys are read now: the file may be readable by root only. */
	if (conf->trace_key_file &&
	    trace_keys_load(conf->trace_key_file, &d->trace_keys, &d->ntrace_keys, err, errlen) < 0)
		goto fail;
	/* posternd -t answers for the daemon user too: a sasldb it cannot read
	 * would make every login a 454. A start checks in
	 * daemon_drop_privileges(), once its directories are made. */
	if (check_only) {
		struct startup_user u;
		if (startup_user(conf, &u, err, errlen) < 0 ||
		    startup_check_files(conf, &u, err, errlen) < 0)
			goto fail;
	}
	return d;
fail:
	daemon_free(d);
	return NULL;
}

int daemon_drop_privileges(struct daemon *d, char *err, size_t errlen)
{
	const struct conf *c = d->conf;
	struct startup_user u;
	if (startup_user(c, &u, err, errlen) < 0 || startup_make_dirs(c, &u, err, errlen) < 0 ||
	    startup_check_files(c, &u, err, errlen) < 0)
		return -1;
	if (!u.become)
		return 0;
	if (initgroups(u.name, u.gid) < 0 || setgid(u.gid) < 0 || setuid(u.uid) < 0) {
		snprintf(err, errlen, "cannot become user %s: %s", u.name, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		snprintf(err, errlen, "could regain root after dropping to %s", u.name);
		return -1;
	}
	log_info("event=privileges user=%s uid=%u", u.name, (unsigned)u.uid);
	/* The child's verdict again, with the credentials this process has now
	 * (nothing should differ; if anything does, better to stop here). */
	u.become = false;
	return startup_check_files(c, &u, err, errlen);
}

/* ---- workers ------------------------------------------------------------------- */

static void worker_reload_ack(uv_async_t *a);
static void daemon_reload(struct daemon *d);

static void worker_close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void worker_stop_poll(uv_timer_t *t)
{
	struct worker *w = t->data;
	if (w->nsessions > 0 && uv_now(&w->loop) < w->stop_deadline)
		return;
	/* A queue file being created or committed still holds our async handles; it
	 * ends soon, or the forced stop does. */
	if (w->inflight > 0) {
		for (size_t i = 0; i < WORKER_BUCKETS; i++)
			while (w->buckets[i])
				session_close(w->buckets[i], false);
		return;
	}
	/* Past the grace period: whatever is still open is cut off. Messages
	 * not yet acknowledged are lost to us but not to the client, which
	 * got no 250 and will try again. */
	for (size_t i = 0; i < WORKER_BUCKETS; i++)
		while (w->buckets[i])
			session_close(w->buckets[i], false);
	uv_timer_stop(t);
	if (w->dns) {
		dns_resolver_close(w->dns);
		w->dns = NULL;
	}
	worker_close_handle((uv_handle_t *)t);
	worker_close_handle((uv_handle_t *)&w->stop_async);
	worker_close_handle((uv_handle_t *)&w->commit_async);
	worker_close_handle((uv_handle_t *)&w->reload_async);
}

static void worker_stop(uv_async_t *a)
{
	struct worker *w = a->data;
	if (w->stopping)
		return;
	w->stopping = true;
	listener_stop_all(w);
	for (size_t i = 0; i < WORKER_BUCKETS; i++) {
		struct session *next;
		for (struct session *s = w->buckets[i]; s; s = next) {
			next = s->hnext;
			session_shutdown(s);
		}
	}
	w->stop_deadline = uv_now(&w->loop) + STOP_GRACE_MS;
	uv_timer_start(&w->stop_timer, worker_stop_poll, 0, STOP_POLL_MS);
}

static void worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_setname_np(pthread_self(), "loop");
	uv_run(&w->loop, UV_RUN_DEFAULT);
	atomic_fetch_sub(&w->d->workers_running, 1);
	uv_async_send(w->d->main_wake);
}

static int worker_init(struct daemon *d, struct worker *w, unsigned index)
{
	w->d = d;
	w->index = index;
	w->reserve_fd = -1;
	uv_loop_init(&w->loop);
	w->loop.data = w;
	uv_async_init(&w->loop, &w->stop_async, worker_stop);
	uv_async_init(&w->loop, &w->commit_async, worker_commit_done);
	uv_async_init(&w->loop, &w->reload_async, worker_reload_ack);
	w->reload_async.data = w;
	uv_timer_init(&w->loop, &w->stop_timer);
	w->stop_async.data = w;
	w->commit_async.data = w;
	w->stop_timer.data = w;
	const struct conf *c = d->conf;
	if (c->dns_reverse || c->ndnsbl_zones) {
		struct dns_conf dc = {
			.servers = (const char *const *)c->dns_servers, .nservers = c->ndns_servers,
			.timeout_ms = c->dns_timeout_ms,
		};
		char err[256];
		w->dns = dns_resolver_new(&w->loop, &dc, err, sizeof(err));
		if (!w->dns)
			log_warn("event=dns_error worker=%u error=\"%s\" note=\"no DNS lookups\"", index, err);
	}
	/* Opened now, while descriptors are plenty: see listener_out_of_fds. */
	w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	w->servers = xcalloc(d->nlisteners, sizeof(*w->servers));
	for (size_t i = 0; i < d->nlisteners; i++)
		if (listener_start(w, i) < 0)
			return -1;
	return 0;
}

static void worker_close_any(uv_handle_t *h, void *arg)
{
	worker_close_handle(h);
}

/* A worker whose set-up failed: its thread never ran. */
static void worker_abort(struct worker *w)
{
	listener_stop_all(w);
	uv_walk(&w->loop, worker_close_any, NULL);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	uv_loop_close(&w->loop);
	free(w->servers);
	w->servers = NULL;
	if (w->reserve_fd >= 0)
		close(w->reserve_fd);
	w->reserve_fd = -1;
}

static void worker_fini(struct worker *w)
{
	uv_run(&w->loop, UV_RUN_DEFAULT); /* close callbacks */
	if (uv_loop_close(&w->loop) != 0)
		log_warn("event=loop_busy worker=%u", w->index);
	free(w->servers);
	if (w->reserve_fd >= 0)
		close(w->reserve_fd);
}

/* ---- main loop: signals ------------------------------------------------------- */

/* Something outlived the grace period (a password backend or an fsync
 * that never returns). Everything acknowledged is durable already, so
 * leaving without joining loses nothing. */
static void daemon_force_stop(uv_timer_t *t)
{
	log_err("event=stop_forced note=\"work still running after the grace period\"");
	_exit(1);
}

static void daemon_signal(uv_signal_t *sig, int signum)
{
	struct daemon *d = sig->data;
	if (signum == SIGHUP) {
		if (!atomic_load(&d->stopping))
			daemon_reload(d);
		return;
	}
	if (atomic_exchange(&d->stopping, true)) {
		log_info("event=stopping signal=%d note=\"already stopping\"", signum);
		return;
	}
	log_info("event=stopping signal=%d", signum);
	for (unsigned i = 0; i < d->nworkers; i++)
		uv_async_send(&d->workers[i].stop_async);
	uv_timer_start(d->force_timer, daemon_force_stop, STOP_GRACE_MS + STOP_FORCE_MS, 0);
}

/* ---- SIGHUP: new policy without dropping connections ------------------- */

struct daemon_retired {
	struct policy_tables *tables;
	struct policy_conf **confs;  /* one per listener */
	struct conf *src;            /* NULL: d->conf, which stays */
};

static void daemon_retired_free(struct daemon *d)
{
	struct daemon_retired *r = d->retired;
	if (!r)
		return;
	for (size_t i = 0; i < d->nlisteners; i++)
		free(r->confs[i]);
	free(r->confs);
	policy_tables_free(r->tables);
	conf_free(r->src);
	free(r);
	d->retired = NULL;
}

/* Every loop has run since the swap, so none still holds the old policy:
 * verdicts are taken and dropped within one callback. */
static void daemon_reload_check(struct daemon *d)
{
	if (d->retired && atomic_load(&d->reload_acks) >= d->nworkers) {
		daemon_retired_free(d);
		log_info("event=reload_done");
	}
}

static void daemon_reload(struct daemon *d)
{
	char err[512];
	if (d->retired) {
		log_warn("event=reload_error error=\"the previous reload is still settling; try again\"");
		return;
	}
	struct conf *nc = conf_load_flags(d->conf->path, CONF_NO_FILE_CHECKS, err, sizeof(err));
	if (!nc) {
		log_err("event=reload_error error=\"%s\" note=\"keeping the running policy\"", err);
		return;
	}
	/* Open connections were counted under the running prefix. */
	if (nc->ipv6_prefix != d->pstate->ipv6_prefix)
		log_warn("event=reload ipv6_prefix=%u note=\"needs a restart; keeping /%u\"",
		         nc->ipv6_prefix, d->pstate->ipv6_prefix);
	/* The connection limit the policy gets must still fit the descriptors. */
	if (startup_fd_limit(nc, d->nworkers, err, sizeof(err)) < 0) {
		log_err("event=reload_error error=%s note=\"keeping the running policy\"", log_q(err));
		conf_free(nc);
		return;
	}
	struct policy_tables *t = daemon_tables(nc, err, sizeof(err));
	if (!t) {
		log_err("event=reload_error error=\"%s: policy: %s\" note=\"keeping the running policy\"",
		        nc->path, err);
		conf_free(nc);
		return;
	}
	struct daemon_retired *r = xcalloc(1, sizeof(*r));
	r->confs = xcalloc(d->nlisteners, sizeof(*r->confs));
	for (size_t i = 0; i < d->nlisteners; i++) {
		struct listener *l = &d->listeners[i];
		r->confs[i] = atomic_exchange(&l->policy, daemon_policy_conf(nc, l->conf, t));
	}
	r->tables = d->tables;
	r->src = d->policy_src;
	d->tables = t;
	d->policy_src = nc;
	d->retired = r;
	atomic_store(&d->reload_acks, 0);
	for (unsigned i = 0; i < d->nworkers; i++)
		uv_async_send(&d->workers[i].reload_async);
	log_info("event=reload policy=updated note=\"listeners, TLS and limits outside policy need a restart\"");
}

static void worker_reload_ack(uv_async_t *a)
{
	struct worker *w = a->data;
	atomic_fetch_add(&w->d->reload_acks, 1);
	uv_async_send(w->d->main_wake);
}

/* The main loop lives until the last worker has finished, so that a
 * second signal during a graceful stop is heard rather than fatal. */
static void daemon_worker_gone(uv_async_t *a)
{
	struct daemon *d = a->data;
	daemon_reload_check(d);
	if (atomic_load(&d->workers_running) == 0)
		uv_stop(a->loop);
}

/* A queue file enters queue/ only after its record is durable, so one
 * without a record comes from elsewhere (a trace database restored from
 * an older copy, tracing switched on over an existing queue); relaying it
 * would relay untraced mail. They go to hold/ for the operator. Bounces
 * the relay wrote itself (from <>) have no record by design. One read of
 * the store answers for the whole queue. */
static void daemon_hold_untraced(struct daemon *d)
{
	char dir[4096], path[4096 + 256], err[512];
	snprintf(dir, sizeof(dir), "%s/queue", d->conf->spool_dir);
	DIR *dp = opendir(dir);
	if (!dp)
		return;
	char **qids = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(dp)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		struct relay_envelope env;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (relay_envelope_read(path, &env) < 0)
			continue; /* the runner logs what it cannot read */
		bool bounce = env.from[0] == '\0';
		relay_envelope_free(&env);
		if (bounce)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			qids = xrealloc(qids, cap * sizeof(*qids));
		}
		qids[n++] = str_dup(e->d_name);
	}
	closedir(dp);
	bool *known = xcalloc(n ? n : 1, sizeof(*known));
	if (n && trace_known_qids(d->conf->trace_db, (const char *const *)qids, n, known, err,
	                          sizeof(err)) < 0) {
		/* The store cannot say: leave the queue as it is. */
		log_err("event=trace_error op=start_check error=\"%s\"", err);
	} else {
		for (size_t i = 0; i < n; i++) {
			if (known[i])
				continue;
			int rc = relay_spool_hold(d->spool, qids[i]);
			log_warn("event=held qid=%s reason=\"no trace record\" result=%s", qids[i],
			         rc == 0 ? "held" : strerror(-rc));
		}
	}
	for (size_t i = 0; i < n; i++)
		free(qids[i]);
	free(qids);
	free(known);
}

/* Delivery results go to the trace record of the message. */
static void daemon_relay_result(void *arg, const char *qid, const char *rcpt, const char *event,
                                const char *relay, const char *reply)
{
	struct daemon *d = arg;
	struct trace_delivery td = {
		.qid = qid, .rcpt = rcpt, .status = event, .relay = relay, .reply = reply,
		.time = time(NULL),
	};
	trace_store_delivery(d->trace, &td);
}

static struct relay *daemon_relay(struct daemon *d)
{
	const struct conf *c = d->conf;
	struct relay_conf rc = {
		.downstream = c->relay_downstream, .maildir = c->relay_maildir,
		.tls = (enum relay_tls)c->relay_tls, .tls_verify = c->relay_tls_verify,
		.tls_ca = c->relay_tls_ca, .hostname = c->hostname, .workers = c->relay_workers,
		.retry_min = c->relay_retry_min, .retry_max = c->relay_retry_max,
		.max_queue_time = c->relay_max_queue_time, .timeout = c->relay_timeout,
		.on_result = d->trace ? daemon_relay_result : NULL, .on_result_arg = d,
	};
	char err[512];
	struct relay *r = relay_start(&rc, d->spool, err, sizeof(err));
	if (!r)
		log_err("event=relay_error error=\"%s\"", err);
	return r;
}

/* A crash between a record's commit and its file's rename leaves the file
 * in tmp/ (no client heard 250) and a record standing for no accepted
 * message. The records are taken back, durably, before the files go, so
 * a second crash loses neither; if the store cannot write, the files
 * stay for the next start. */
static void daemon_drop_unacknowledged(struct daemon *d)
{
	const char *const *names;
	size_t n = relay_spool_unacknowledged(d->spool, &names);
	if (n && d->trace) {
		if (trace_store_retract_now(d->trace, names, n) < 0) {
			log_warn("event=spool_clean files=%zu note=\"kept in tmp/ until their records"
			         " can be taken back\"", n);
			return;
		}
	}
	relay_spool_drop_unacknowledged(d->spool);
}

/* The spool's riders are trace records: a batch's records go to the trace
 * store's writer while the spool syncs the files, in one transaction. */
static void *daemon_records_start(void *ctx, void *const *riders, size_t n)
{
	return trace_store_submit(ctx, (struct trace_entry *const *)riders, n);
}

static void daemon_records_finish(void *ctx, void *started, void *const *riders, int *status,
                                  size_t n)
{
	trace_store_wait(ctx, started);
	for (size_t i = 0; i < n; i++)
		status[i] = trace_entry_status(riders[i]);
}

/* Records written for files that then failed: a record stands for an
 * accepted message, so they go before the clients hear 451. */
static void daemon_records_cancel(void *ctx, void *const *riders, size_t n)
{
	const char **qids = xcalloc(n, sizeof(*qids));
	for (size_t i = 0; i < n; i++)
		qids[i] = trace_entry_qid(riders[i]);
	if (trace_store_retract_now(ctx, qids, n) < 0)
		log_err("event=trace_error op=retract records=%zu note=\"tried again\"", n);
	free(qids);
}

int daemon_run(struct daemon *d)
{
	signal(SIGPIPE, SIG_IGN);
	char err[512];
	if (sandbox_no_new_privs(err, sizeof(err)) < 0) {
		log_err("event=sandbox_error error=%s", log_q(err));
		return 1;
	}
	/* Opened as the unprivileged user, so that what it creates is ours. */
	d->spool = relay_spool_open(d->conf->spool_dir, err, sizeof(err));
	if (!d->spool) {
		log_err("event=spool_error error=\"%s\"", err);
		return 1;
	}
	if (d->conf->trace_enabled) {
		d->trace = trace_store_open(d->conf->trace_db, err, sizeof(err));
		if (!d->trace) {
			log_err("event=trace_error error=\"%s\"", err);
			return 1;
		}
		daemon_hold_untraced(d);
		const struct relay_riders records = { daemon_records_start, daemon_records_finish,
			                              daemon_records_cancel, d->trace };
		relay_spool_set_riders(d->spool, &records);
	} else {
		log_warn("event=trace_disabled note=\"messages are accepted without a trace record\"");
	}
	daemon_drop_unacknowledged(d);
	d->relay = daemon_relay(d);
	if (!d->relay)
		return 1;
	/* Everything that needed more than the daemon's daily calls is done
	 * (binding, keys, the privilege drop, the spool, the store, the relay);
	 * the loops start inside the filter. */
	if (sandbox_apply(d->conf->sandbox_seccomp, err, sizeof(err)) < 0) {
		log_err("event=sandbox_error error=%s", log_q(err));
		return 1;
	}
	d->workers = xcalloc(d->nworkers, sizeof(*d->workers));
	uv_loop_t main_loop;
	uv_loop_init(&main_loop);
	uv_async_t wake;
	uv_async_init(&main_loop, &wake, daemon_worker_gone);
	wake.data = d;
	d->main_wake = &wake;
	uv_timer_t force;
	uv_timer_init(&main_loop, &force);
	force.data = d;
	d->force_timer = &force;
	/* Signals first: a SIGTERM while the workers start must be heard. */
	uv_signal_t sigs[3];
	const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	for (int i = 0; i < 3; i++) {
		uv_signal_init(&main_loop, &sigs[i]);
		sigs[i].data = d;
		uv_signal_start(&sigs[i], daemon_signal, signums[i]);
	}
	int rc = 0;
	unsigned started = 0;
	for (unsigned i = 0; i < d->nworkers && rc == 0; i++) {
		rc = worker_init(d, &d->workers[i], i);
		atomic_fetch_add(&d->workers_running, 1);
		if (rc == 0 && uv_thread_create(&d->workers[i].thread, worker_main, &d->workers[i]) == 0) {
			started++;
		} else {
			atomic_fetch_sub(&d->workers_running, 1);
			worker_abort(&d->workers[i]);
			rc = -1;
		}
	}
	if (rc == 0) {
		log_info("event=started version=%s loops=%u listeners=%zu", PACKAGE_VERSION, d->nworkers,
		         d->nlisteners);
	} else {
		atomic_store(&d->stopping, true);
		for (unsigned i = 0; i < started; i++)
			uv_async_send(&d->workers[i].stop_async);
	}
	if (started > 0)
		uv_run(&main_loop, UV_RUN_DEFAULT);
	/* Join before closing `wake`: a worker may still be sending to it. */
	for (unsigned i = 0; i < started; i++) {
		uv_thread_join(&d->workers[i].thread);
		worker_fini(&d->workers[i]);
	}
	for (int i = 0; i < 3; i++)
		uv_close((uv_handle_t *)&sigs[i], NULL);
	uv_close((uv_handle_t *)&wake, NULL);
	uv_close((uv_handle_t *)&force, NULL);
	uv_run(&main_loop, UV_RUN_DEFAULT);
	uv_loop_close(&main_loop);
	relay_stop(d->relay);
	d->relay = NULL;
	/* The spool's last commits still write trace records. */
	relay_spool_close(d->spool);
	d->spool = NULL;
	if (d->trace)
		trace_store_close(d->trace);
	d->trace = NULL;
	log_info("event=stopped");
	return rc == 0 ? 0 : 1;
}

void daemon_free(struct daemon *d)
{
	if (!d)
		return;
	if (d->relay)
		relay_stop(d->relay);
	if (d->spool)
		relay_spool_close(d->spool);
	if (d->trace)
		trace_store_close(d->trace);
	daemon_retired_free(d);
	for (size_t i = 0; i < d->nlisteners; i++) {
		struct listener *l = &d->listeners[i];
		free(atomic_load(&l->policy));
		if (l->ssl_ctx)
			SSL_CTX_free(l->ssl_ctx);
		for (unsigned j = 0; l->fds && j < d->nworkers; j++)
			if (l->fds[j] >= 0)
				close(l->fds[j]);
		free(l->fds);
	}
	free(d->listeners);
	free(d->workers);
	policy_tables_free(d->tables);
	policy_state_free(d->pstate);
	conf_free(d->policy_src);
	free(d->auth_mechs);
	if (d->trace_keys)
		explicit_bzero(d->trace_keys, d->ntrace_keys * sizeof(*d->trace_keys));
	free(d->trace_keys);
	auth_shutdown();
	conf_free(d->conf);
	free(d);
}
