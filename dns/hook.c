/*
 * hook.c - what DNS says about the client, in the phase pipeline: a reverse
 * name confirmed by a forward lookup (for the Received header and the
 * trace record) and, on mx listeners, DNSBL listings. Both start at
 * CONNECT (once the connection limits let the client in) and run on the
 * loop's resolver while the client talks; MAIL waits (PENDING) for the
 * DNSBL verdict and DATA for the name, bounded by the resolver's timeout.
 * Answers find their session by id (hook_state); a session that has gone
 * is not found.
 *
 * Ownership: dns_hook_new() returns an object owned by the caller; the
 * resolvers are set per loop (dns_hook_set_resolver) and stay the loop's.
 * A lookup's context is freed by its callback.
 */
#include "dns/dns.h"
#include "hook/hook.h"
#include "common/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dns_hook {
	struct dns_resolver **resolvers;  /* per loop, NULL where none */
	unsigned nloops;
	bool reverse;
	char **zones;
	size_t nzones;
	bool reject;              /* a listed client is refused (else only tagged) */
	bool tempfail;            /* an unchecked client gets 451 (else passes) */
};

struct dns_hook_state {
	bool rdns_pending;
	bool dnsbl_pending;
	bool undecided;           /* a zone could not be checked in time */
	char *txt;
};

struct dns_lookup {
	struct hook_token token;
	bool reject, tempfail;    /* for the log line */
};

struct dns_hook *dns_hook_new(unsigned nloops, bool reverse, const char *const *zones,
                              size_t nzones, bool reject, bool tempfail)
{
	struct dns_hook *h = xcalloc(1, sizeof(*h));
	h->resolvers = xcalloc(nloops ? nloops : 1, sizeof(*h->resolvers));
	h->nloops = nloops;
	h->reverse = reverse;
	h->zones = xcalloc(nzones ? nzones : 1, sizeof(*h->zones));
	for (size_t i = 0; i < nzones; i++)
		h->zones[i] = str_dup(zones[i]);
	h->nzones = nzones;
	h->reject = reject;
	h->tempfail = tempfail;
	return h;
}

void dns_hook_set_resolver(struct dns_hook *h, unsigned loop, struct dns_resolver *r)
{
	if (loop < h->nloops)
		h->resolvers[loop] = r;
}

void dns_hook_free(struct dns_hook *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->nzones; i++)
		free(h->zones[i]);
	free(h->zones);
	free(h->resolvers);
	free(h);
}

static void rdns_done(void *arg, enum dns_status st, const char *name, const char *ptr_name)
{
	struct dns_lookup *l = arg;
	struct dns_hook_state *hs = hook_state(&l->token);
	if (hs) {
		hs->rdns_pending = false;
		struct hook_facts *f = hook_facts(&l->token);
		if (st == DNS_OK && name)
			hook_facts_set(&f->client_name, name);
		log_info("event=rdns sid=%llx status=%s name=%s ptr=%s",
		         (unsigned long long)l->token.sid, dns_status_str(st), log_q(name),
		         log_q(ptr_name));
		hook_wake(&l->token);
	}
	free(l);
}

static void dnsbl_done(void *arg, enum dns_status st, const char *zone, const char *txt)
{
	struct dns_lookup *l = arg;
	struct dns_hook_state *hs = hook_state(&l->token);
	if (hs) {
		hs->dnsbl_pending = false;
		if (st == DNS_OK && zone) {
			struct hook_facts *f = hook_facts(&l->token);
			hook_facts_set(&f->dnsbl_zone, zone);
			hs->txt = txt ? str_dup(txt) : NULL;
			log_info("event=dnsbl sid=%llx zone=%s listed=yes action=%s txt=%s",
			         (unsigned long long)l->token.sid, zone, /* ours: configured */
			         l->reject ? "reject" : "tag", log_q(txt));
		} else if (st != DNS_OK && st != DNS_CANCELLED) {
			hs->undecided = true;
			log_warn("event=dnsbl sid=%llx zone=%s status=%s outcome=%s",
			         (unsigned long long)l->token.sid, zone ? zone : "-", dns_status_str(st),
			         l->tempfail ? "tempfail" : "pass");
		}
		hook_wake(&l->token);
	}
	free(l);
}

static struct dns_lookup *lookup_new(const struct dns_hook *h, struct hook_token t)
{
	struct dns_lookup *l = xmalloc(sizeof(*l));
	l->token = t;
	l->reject = h->reject;
	l->tempfail = h->tempfail;
	return l;
}

static void start(struct dns_hook *h, struct dns_hook_state *hs, const struct hook_view *v,
                  struct hook_token t)
{
	unsigned loop = hook_loop(&t);
	struct dns_resolver *r = loop < h->nloops ? h->resolvers[loop] : NULL;
	if (!r)
		return;
	if (h->reverse) {
		struct dns_lookup *l = lookup_new(h, t);
		hs->rdns_pending = dns_rdns(r, v->client_ip, rdns_done, l) == 0;
		if (!hs->rdns_pending)
			free(l);
	}
	if (v->mode == HOOK_MODE_MX && h->nzones) {
		struct dns_lookup *l = lookup_new(h, t);
		hs->dnsbl_pending = dns_dnsbl(r, v->client_ip, (const char *const *)h->zones,
		                              h->nzones, dnsbl_done, l) == 0;
		if (!hs->dnsbl_pending)
			free(l);
	}
}

static enum hook_result dns_check(void *self, void *state, enum hook_phase phase,
                                  const struct hook_view *v, struct hook_token t,
                                  struct hook_verdict *out)
{
	struct dns_hook *h = self;
	struct dns_hook_state *hs = state;
	switch (phase) {
	case HOOK_CONNECT:
		start(h, hs, v, t);
		return HOOK_OK;
	case HOOK_MAIL:
		if (hs->dnsbl_pending)
			return HOOK_PENDING;
		if (v->facts->dnsbl_zone && h->reject) {
			hook_verdict_set(out, 554, "5.7.1", "dnsbl", "Client host [%s] blocked using %s%s%s",
			                 v->client_ip, v->facts->dnsbl_zone, hs->txt ? "; " : "",
			                 hs->txt ? hs->txt : "");
			return HOOK_PERM;
		}
		if (hs->undecided && h->tempfail) {
			hook_verdict_set(out, 451, "4.7.1", "dnsbl_unavailable",
			                 "Client host [%s] could not be checked; try again later",
			                 v->client_ip);
			return HOOK_TEMP;
		}
		return HOOK_OK;
	case HOOK_DATA:
		/* The Received header and the trace record need the name. */
		return hs->rdns_pending ? HOOK_PENDING : HOOK_OK;
	default:
		return HOOK_OK;
	}
}

static void dns_close(void *self, void *state)
{
	struct dns_hook_state *hs = state;
	free(hs->txt);
}

const struct hook_ops dns_hook_ops = {
	.name = "dns",
	.phases = HOOK_BIT(HOOK_CONNECT) | HOOK_BIT(HOOK_MAIL) | HOOK_BIT(HOOK_DATA),
	.state_size = sizeof(struct dns_hook_state),
	.check = dns_check,
	.close = dns_close,
};
