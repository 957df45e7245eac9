/*
 * runtime.c - runtime generations. One per configuration load: for each
 * listener its policy numbers, its hook chain (the order of the phase
 * pipeline, fixed here: DNS, policy, trace) and the engine's config; the
 * tables loaded from files; the trace hook. Immutable once built; a
 * connection pins the generation it started under and keeps it to its
 * end, so a reload never changes anything under a session in the middle
 * of a step, and the old generation goes with its last connection.
 *
 * SIGHUP builds a complete new generation or keeps the old one and logs
 * why. What a generation cannot change needs a restart: the listeners'
 * addresses and modes, the loops, the spool, the store, the relay, DNS
 * servers, and (until the certificates come into it) TLS files.
 *
 * Ownership: a generation owns its conf, tables, hooks and chains, and a
 * reference on each listener's SSL_CTX; runtime_unpin() frees it at 0.
 */
#include "server/daemon.h"
#include "server/startup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The verdicts' view of a listener: numbers from the configuration, tables
 * loaded from files. Points into c and t, which must outlive it. */
static void policy_conf_fill(struct policy_conf *pc, const struct conf *c,
                             const struct conf_listen *lc, const struct policy_tables *t)
{
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
}

static enum hook_mode mode_of(enum conf_listen_mode m)
{
	switch (m) {
	case CONF_MODE_SMTPS: return HOOK_MODE_SMTPS;
	case CONF_MODE_SUBMISSION: return HOOK_MODE_SUBMISSION;
	default: return HOOK_MODE_MX;
	}
}

static void smtp_config_fill(struct smtp_config *sc, struct daemon *d, const struct conf *c,
                             const struct conf_listen *lc, const struct hook_chain *chain)
{
	*sc = (struct smtp_config){
		.hostname = c->hostname,
		.listener = lc->name,
		.mode = mode_of(lc->mode),
		.max_message_size = c->max_message_size,
		.max_command_line = c->max_command_line,
		.max_text_line = c->max_text_line,
		.idle_timeout = c->idle_timeout,
		.data_timeout = c->data_timeout,
		.data_progress = c->data_progress,
		.session_lifetime = c->session_lifetime,
		.stress_threshold = c->stress_threshold,
		.stress_idle_timeout = c->stress_idle_timeout,
		.stress_data_timeout = c->stress_data_timeout,
		.max_connections = c->max_connections,
		.nloops = d->nworkers,
		.handshake_timeout = c->tls_handshake_timeout,
		.max_errors = c->max_errors,
		.auth_mechs = d->auth_mechs,
		.hooks = chain,
		.auth = &server_auth_ops,
		.auth_ctx = d,
		.queue = &server_queue_ops,
		.queue_ctx = d,
	};
}

static void runtime_free(struct runtime *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nlisteners; i++) {
		struct runtime_listener *rl = &r->listeners[i];
		hook_chain_free(rl->chain);
		policy_hook_free(rl->policy_hook);
		if (rl->ssl_ctx)
			SSL_CTX_free(rl->ssl_ctx);
	}
	free(r->listeners);
	trace_hook_free(r->trace_hook);
	policy_tables_free(r->tables);
	if (r->owns_conf)
		conf_free(r->conf);
	free(r);
}

/* The listeners are bound once: a generation must have the same ones. */
static int same_listeners(const struct daemon *d, const struct conf *c, char *err, size_t errlen)
{
	if (c->nlistens != d->nlisteners)
		goto differ;
	for (size_t i = 0; i < c->nlistens; i++) {
		const struct conf_listen *a = &c->listens[i], *b = &d->conf->listens[i];
		if (a->mode != b->mode || strcmp(a->address, b->address) != 0 ||
		    a->client_cert != b->client_cert)
			goto differ;
	}
	return 0;
differ:
	snprintf(err, errlen, "%s: the listeners (addresses, modes, client_cert) need a restart",
	         c->path);
	return -1;
}

struct runtime *runtime_build(struct daemon *d, struct conf *c, char *err, size_t errlen)
{
	if (same_listeners(d, c, err, errlen) < 0)
		return NULL;
	char why[512];
	struct policy_tables *t = policy_tables_load(c->sender_map,
	                                             (const char *const *)c->trusted_networks,
	                                             c->ntrusted_networks, why, sizeof(why));
	if (!t) {
		snprintf(err, errlen, "%s: policy: %s", c->path, why);
		return NULL;
	}
	struct runtime *r = xcalloc(1, sizeof(*r));
	r->conf = c;
	r->owns_conf = c != d->conf;
	r->tables = t;
	r->trace_hook = trace_hook_new(d->trace, d->ntrace_keys ? &d->trace_keys[0] : NULL,
	                               c->hostname, c->trace_show_account);
	r->nlisteners = d->nlisteners;
	r->listeners = xcalloc(r->nlisteners, sizeof(*r->listeners));
	for (size_t i = 0; i < r->nlisteners; i++) {
		struct runtime_listener *rl = &r->listeners[i];
		rl->conf = &c->listens[i];
		rl->ssl_ctx = d->listeners[i].ssl_ctx;
		if (rl->ssl_ctx)
			SSL_CTX_up_ref(rl->ssl_ctx);
		policy_conf_fill(&rl->policy, c, rl->conf, t);
		rl->policy_hook = policy_hook_new(&rl->policy, d->pstate);
		/* The phase pipeline's order: DNS first (MAIL waits for the
		 * DNSBL verdict before sender checks spend a rate token), then
		 * policy, then the trace store (the record at commit, the
		 * refusals, the trace mark stage). */
		rl->chain = hook_chain_new();
		if (d->dns_hook)
			hook_chain_add(rl->chain, &dns_hook_ops, d->dns_hook);
		hook_chain_add(rl->chain, &policy_hook_ops, rl->policy_hook);
		hook_chain_add(rl->chain, &trace_hook_ops, r->trace_hook);
		smtp_config_fill(&rl->smtp, d, c, rl->conf, rl->chain);
	}
	return r;
}

void runtime_install(struct daemon *d, struct runtime *r)
{
	pthread_mutex_lock(&d->runtime_lock);
	struct runtime *old = d->current;
	r->generation = atomic_fetch_add(&d->generations, 1) + 1;
	r->refs = 1;             /* the daemon's own */
	d->current = r;
	bool gone = old && --old->refs == 0;
	pthread_mutex_unlock(&d->runtime_lock);
	if (gone) {
		log_info("event=generation_retired generation=%u", old->generation);
		runtime_free(old);
	}
}

struct runtime *runtime_pin(struct daemon *d)
{
	pthread_mutex_lock(&d->runtime_lock);
	struct runtime *r = d->current;
	r->refs++;
	pthread_mutex_unlock(&d->runtime_lock);
	return r;
}

void runtime_unpin(struct daemon *d, struct runtime *r)
{
	pthread_mutex_lock(&d->runtime_lock);
	bool gone = --r->refs == 0;
	bool retired = r->generation != atomic_load(&d->generations);
	pthread_mutex_unlock(&d->runtime_lock);
	if (gone) {
		if (retired)
			log_info("event=generation_retired generation=%u note=\"its last connection"
			         " has ended or moved on\"", r->generation);
		runtime_free(r);
	}
}

void runtime_reload(struct daemon *d)
{
	char err[1024];
	struct conf *nc = conf_load_flags(d->conf->path, CONF_NO_FILE_CHECKS, err, sizeof(err));
	if (!nc) {
		log_err("event=reload_error error=%s note=\"keeping the running configuration\"",
		        log_q(err));
		return;
	}
	/* Open connections were counted under the running prefix. */
	if (nc->ipv6_prefix != d->pstate->ipv6_prefix)
		log_warn("event=reload ipv6_prefix=%u note=\"needs a restart; keeping /%u\"",
		         nc->ipv6_prefix, d->pstate->ipv6_prefix);
	/* The connection limit must still fit the descriptors. */
	if (startup_fd_limit(nc, d->nworkers, err, sizeof(err)) < 0) {
		log_err("event=reload_error error=%s note=\"keeping the running configuration\"",
		        log_q(err));
		conf_free(nc);
		return;
	}
	struct runtime *r = runtime_build(d, nc, err, sizeof(err));
	if (!r) {
		log_err("event=reload_error error=%s note=\"keeping the running configuration\"",
		        log_q(err));
		conf_free(nc);
		return;
	}
	runtime_install(d, r);
	log_info("event=reload policy=updated generation=%u note=\"open sessions move to it at"
	         " their next transaction; listeners, loops, TLS, DNS, spool, store and relay"
	         " settings need a restart\"", r->generation);
	log_info("event=reload_done generation=%u", r->generation);
}

/* ---- for the listeners' connections ---------------------------------------------------- */

static const struct smtp_config *listener_acquire(void *ctx, void **pin, SSL_CTX **ssl)
{
	struct listener *l = ctx;
	struct runtime *r = runtime_pin(l->d);
	*pin = r;
	*ssl = r->listeners[l->index].ssl_ctx;
	return &r->listeners[l->index].smtp;
}

static void listener_release(void *ctx, void *pin)
{
	struct listener *l = ctx;
	runtime_unpin(l->d, pin);
}

static const struct smtp_config *listener_refresh(void *ctx, void **pin, SSL_CTX **ssl)
{
	struct listener *l = ctx;
	struct runtime *old = *pin;
	if (old->generation == atomic_load(&l->d->generations))
		return NULL;
	const struct smtp_config *cfg = listener_acquire(ctx, pin, ssl);
	runtime_unpin(l->d, old);
	return cfg;
}

const struct conn_listener_ops runtime_listener_ops = {
	.acquire = listener_acquire,
	.release = listener_release,
	.refresh = listener_refresh,
};
