/*
 * daemon.c - the process: binds the listeners and makes their TLS
 * contexts (as root), drops privileges, opens the spool and the trace
 * store, starts the relay and one event loop per worker thread, and stops
 * them all gracefully on SIGTERM/SIGINT; SIGHUP loads a new runtime
 * generation (runtime.c).
 *
 * Ownership: daemon_new() returns a daemon owned by the caller; it owns
 * the conf it was given and frees it in daemon_free().
 */
#include "config.h"
#include "server/daemon.h"
#include "server/sandbox.h"
#include "server/startup.h"
#include "auth/auth.h"
#include "certs/certs.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A graceful stop waits this long for messages in flight. */
#define STOP_GRACE_MS 20000
#define STOP_POLL_MS 100
/* ...and then this much more for work the sessions no longer wait for. */
#define STOP_FORCE_MS 5000

/* ---- set-up ------------------------------------------------------------------ */

static enum certs_client_verify daemon_verify_mode(enum conf_client_cert cc)
{
	switch (cc) {
	case CONF_CLIENT_CERT_OPTIONAL: return CERTS_CLIENT_OPTIONAL;
	case CONF_CLIENT_CERT_REQUIRE: return CERTS_CLIENT_REQUIRE;
	default: return CERTS_CLIENT_NONE;
	}
}

static int daemon_listeners(struct daemon *d, bool bind, char *err, size_t errlen)
{
	const struct conf *c = d->conf;
	d->nlisteners = c->nlistens;
	d->listeners = xcalloc(c->nlistens, sizeof(*d->listeners));
	for (size_t i = 0; i < c->nlistens; i++) {
		struct listener *l = &d->listeners[i];
		const struct conf_listen *lc = &c->listens[i];
		l->d = d;
		l->index = i;
		struct certs_server_conf sc = {
			.cert_file = c->tls_cert, .key_file = c->tls_key, .ca_file = c->tls_ca,
			.ciphers = c->tls_ciphers, .client_verify = daemon_verify_mode(lc->client_cert),
		};
		char why[512];
		l->ssl_ctx = certs_server_ctx(&sc, why, sizeof(why));
		if (!l->ssl_ctx) {
			snprintf(err, errlen, "%s:%d: tls: %s", c->path, c->tls_line, why);
			return -1;
		}
		if (!bind)
			continue;
		l->fds = xcalloc(d->nworkers, sizeof(int));
		if (conn_bind(lc->host, lc->port, lc->address, d->nworkers, l->fds, err, errlen) < 0)
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
	pthread_mutex_init(&d->runtime_lock, NULL);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	d->nworkers = conf->loops ? conf->loops : (unsigned)(ncpu > 0 ? ncpu : 1);
	if (startup_fd_limit(conf, d->nworkers, err, errlen) < 0)
		goto fail;
	char why[512];
	/* The tables are read now too, so that -t and a start report a bad
	 * sender map before anything else. */
	struct policy_tables *t = policy_tables_load(conf->sender_map,
	                                             (const char *const *)conf->trusted_networks,
	                                             conf->ntrusted_networks, why, sizeof(why));
	if (!t) {
		snprintf(err, errlen, "%s: policy: %s", conf->path, why);
		goto fail;
	}
	policy_tables_free(t);
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

static void worker_close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void worker_stop_poll(uv_timer_t *t)
{
	struct worker *w = t->data;
	if (conn_loop_sessions(w->conn) > 0 && uv_now(&w->loop) < w->stop_deadline)
		return;
	/* Past the grace period: whatever is still open is cut off. Messages
	 * not yet acknowledged are lost to us but not to the client, which
	 * got no 250 and will try again. */
	conn_close_all(w->conn);
	/* A queue file being created or committed still holds our async
	 * handles; it ends soon, or the forced stop does. */
	if (w->inflight > 0)
		return;
	uv_timer_stop(t);
	if (w->dns) {
		if (w->d->dns_hook)
			dns_hook_set_resolver(w->d->dns_hook, w->index, NULL);
		dns_resolver_close(w->dns);
		w->dns = NULL;
	}
	worker_close_handle((uv_handle_t *)t);
	worker_close_handle((uv_handle_t *)&w->stop_async);
	worker_close_handle((uv_handle_t *)&w->commit_async);
}

static void worker_stop(uv_async_t *a)
{
	struct worker *w = a->data;
	if (w->stopping)
		return;
	w->stopping = true;
	conn_stop_listening(w->conn);
	conn_shutdown_all(w->conn);
	w->stop_deadline = uv_now(&w->loop) + STOP_GRACE_MS;
	uv_timer_start(&w->stop_timer, worker_stop_poll, 0, STOP_POLL_MS);
}

static void worker_commit_done(uv_async_t *async)
{
	struct worker *w = async->data;
	relay_spool_drain(w->d->spool, &w->loop);
}

static void worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_setname_np(pthread_self(), "loop");
	uv_run(&w->loop, UV_RUN_DEFAULT);
	atomic_fetch_sub(&w->d->workers_running, 1);
	uv_async_send(&w->d->main_wake);
}

static int worker_init(struct daemon *d, struct worker *w, unsigned index)
{
	w->d = d;
	w->index = index;
	uv_loop_init(&w->loop);
	w->loop.data = w;
	uv_async_init(&w->loop, &w->stop_async, worker_stop);
	uv_async_init(&w->loop, &w->commit_async, worker_commit_done);
	uv_timer_init(&w->loop, &w->stop_timer);
	w->stop_async.data = w;
	w->commit_async.data = w;
	w->stop_timer.data = w;
	const struct conf *c = d->conf;
	struct conn_loop_conf cc = { .hostname = c->hostname, .index = index };
	w->conn = conn_loop_new(&w->loop, &cc);
	if (d->dns_hook) {
		struct dns_conf dc = {
			.servers = (const char *const *)c->dns_servers, .nservers = c->ndns_servers,
			.timeout_ms = c->dns_timeout_ms,
		};
		char err[256];
		w->dns = dns_resolver_new(&w->loop, &dc, err, sizeof(err));
		if (!w->dns)
			log_warn("event=dns_error worker=%u error=%s note=\"no DNS lookups\"", index,
			         log_q(err));
		dns_hook_set_resolver(d->dns_hook, index, w->dns);
	}
	for (size_t i = 0; i < d->nlisteners; i++) {
		struct listener *l = &d->listeners[i];
		struct conn_listener_ops ops = runtime_listener_ops;
		ops.ctx = l;
		ops.implicit_tls = c->listens[i].mode == CONF_MODE_SMTPS;
		int fd = l->fds[index];
		l->fds[index] = -1;   /* the loop's now */
		if (conn_listen(w->conn, fd, &ops) < 0)
			return -1;
	}
	return 0;
}

static void worker_close_any(uv_handle_t *h, void *arg)
{
	worker_close_handle(h);
}

/* A worker whose set-up failed: its thread never ran. */
static void worker_abort(struct worker *w)
{
	if (w->conn)
		conn_stop_listening(w->conn);
	uv_walk(&w->loop, worker_close_any, NULL);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	uv_loop_close(&w->loop);
	conn_loop_free(w->conn);
	w->conn = NULL;
}

static void worker_fini(struct worker *w)
{
	uv_run(&w->loop, UV_RUN_DEFAULT); /* close callbacks */
	if (uv_loop_close(&w->loop) != 0)
		log_warn("event=loop_busy worker=%u", w->index);
	conn_loop_free(w->conn);
	w->conn = NULL;
}

/* ---- the main loop: signals ----------------------------------------------------- */

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
			runtime_reload(d);
		return;
	}
	if (atomic_exchange(&d->stopping, true)) {
		log_info("event=stopping signal=%d note=\"already stopping\"", signum);
		return;
	}
	log_info("event=stopping signal=%d", signum);
	for (unsigned i = 0; i < d->nworkers; i++)
		uv_async_send(&d->workers[i].stop_async);
	uv_timer_start(&d->force_timer, daemon_force_stop, STOP_GRACE_MS + STOP_FORCE_MS, 0);
}

/* The main loop lives until the last worker has finished, so that a
 * second signal during a graceful stop is heard rather than fatal. */
static void daemon_worker_gone(uv_async_t *a)
{
	struct daemon *d = a->data;
	if (atomic_load(&d->workers_running) == 0)
		uv_stop(a->loop);
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
		.on_result = d->trace ? records_relay_result : NULL, .on_result_arg = d,
	};
	char err[512];
	struct relay *r = relay_start(&rc, d->spool, err, sizeof(err));
	if (!r)
		log_err("event=relay_error error=%s", log_q(err));
	return r;
}

/* Spool, store, records, relay, the first generation: everything the
 * loops need before they accept. */
static int daemon_open_stores(struct daemon *d)
{
	char err[1024];
	/* Opened as the unprivileged user, so that what it creates is ours. */
	d->spool = relay_spool_open(d->conf->spool_dir, err, sizeof(err));
	if (!d->spool) {
		log_err("event=spool_error error=%s", log_q(err));
		return -1;
	}
	if (d->conf->trace_enabled) {
		d->trace = trace_store_open(d->conf->trace_db, err, sizeof(err));
		if (!d->trace) {
			log_err("event=trace_error error=%s", log_q(err));
			return -1;
		}
	}
	records_start(d);
	d->relay = daemon_relay(d);
	if (!d->relay)
		return -1;
	const struct conf *c = d->conf;
	if (c->dns_reverse || c->ndnsbl_zones)
		d->dns_hook = dns_hook_new(d->nworkers, c->dns_reverse,
		                           (const char *const *)c->dnsbl_zones, c->ndnsbl_zones,
		                           c->dnsbl_reject, c->dns_timeout_tempfail);
	struct runtime *r = runtime_build(d, d->conf, err, sizeof(err));
	if (!r) {
		log_err("event=runtime_error error=%s", log_q(err));
		return -1;
	}
	runtime_install(d, r);
	return 0;
}

int daemon_run(struct daemon *d)
{
	signal(SIGPIPE, SIG_IGN);
	char err[512];
	if (sandbox_no_new_privs(err, sizeof(err)) < 0) {
		log_err("event=sandbox_error error=%s", log_q(err));
		return 1;
	}
	if (daemon_open_stores(d) < 0)
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
	uv_async_init(&main_loop, &d->main_wake, daemon_worker_gone);
	d->main_wake.data = d;
	uv_timer_init(&main_loop, &d->force_timer);
	d->force_timer.data = d;
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
	/* Join before closing the wake: a worker may still be sending to it. */
	for (unsigned i = 0; i < started; i++) {
		uv_thread_join(&d->workers[i].thread);
		worker_fini(&d->workers[i]);
	}
	for (int i = 0; i < 3; i++)
		uv_close((uv_handle_t *)&sigs[i], NULL);
	uv_close((uv_handle_t *)&d->main_wake, NULL);
	uv_close((uv_handle_t *)&d->force_timer, NULL);
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
	d->trace = NULL;
	if (d->current) {
		/* Every connection has gone with the loops: this is the last pin. */
		struct runtime *r = d->current;
		d->current = NULL;
		runtime_unpin(d, r);
	}
	for (size_t i = 0; i < d->nlisteners; i++) {
		struct listener *l = &d->listeners[i];
		if (l->ssl_ctx)
			SSL_CTX_free(l->ssl_ctx);
		for (unsigned j = 0; l->fds && j < d->nworkers; j++)
			if (l->fds[j] >= 0)
				close(l->fds[j]);
		free(l->fds);
	}
	free(d->listeners);
	free(d->workers);
	dns_hook_free(d->dns_hook);
	policy_state_free(d->pstate);
	free(d->auth_mechs);
	if (d->trace_keys)
		explicit_bzero(d->trace_keys, d->ntrace_keys * sizeof(*d->trace_keys));
	free(d->trace_keys);
	auth_shutdown();
	pthread_mutex_destroy(&d->runtime_lock);
	conf_free(d->conf);
	free(d);
}
