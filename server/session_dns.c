/*
 * session_dns.c - what DNS says about the client: a reverse name confirmed
 * by a forward lookup (for the Received header and the trace record) and,
 * on mx listeners, DNSBL listings. Both start at connect and run on the
 * worker's resolver while the client talks; MAIL waits for the DNSBL
 * verdict and DATA for the name, bounded by the DNS timeout. Results find
 * their session by id.
 */
#include "server/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct dns_ctx {
	struct worker *w;
	uint64_t sid;
};

static struct dns_ctx *dns_ctx_new(struct session *s)
{
	struct dns_ctx *c = xmalloc(sizeof(*c));
	c->w = s->w;
	c->sid = s->id;
	return c;
}

/* An answer is in: a command held back for it may go on. */
static void session_dns_settled(struct session *s)
{
	if (!s->dns_waiting)
		return;
	s->dns_waiting = false;
	session_process(s);
	session_flush(s);
}

static void session_rdns_done(void *arg, enum dns_status st, const char *name,
                              const char *ptr_name)
{
	struct dns_ctx *c = arg;
	struct session *s = worker_find_session(c->w, c->sid);
	free(c);
	if (!s)
		return;
	s->rdns_pending = false;
	if (st == DNS_OK && name)
		s->client_name = str_dup(name);
	log_info("event=rdns sid=%s client=%s status=%s name=%s ptr=%s", s->sid, s->client_ip,
	         dns_status_str(st), log_q(name), log_q(ptr_name));
	session_dns_settled(s);
}

static void session_dnsbl_done(void *arg, enum dns_status st, const char *zone, const char *txt)
{
	struct dns_ctx *c = arg;
	struct session *s = worker_find_session(c->w, c->sid);
	free(c);
	if (!s)
		return;
	s->dnsbl_pending = false;
	if (st == DNS_OK && zone) {
		s->dnsbl_zone = str_dup(zone);
		s->dnsbl_txt = txt ? str_dup(txt) : NULL;
		log_info("event=dnsbl sid=%s client=%s zone=%s listed=yes action=%s txt=%s",
		         s->sid, s->client_ip, zone, s->w->d->conf->dnsbl_reject ? "reject" : "tag",
		         log_q(txt));
	} else if (st != DNS_OK && st != DNS_CANCELLED) {
		s->dnsbl_undecided = true;
		log_warn("event=dnsbl sid=%s client=%s zone=%s status=%s outcome=%s", s->sid,
		         s->client_ip, zone ? zone : "-", dns_status_str(st),
		         s->w->d->conf->dns_timeout_tempfail ? "tempfail" : "pass");
	}
	session_dns_settled(s);
}

void session_dns_start(struct session *s)
{
	const struct conf *c = s->w->d->conf;
	struct dns_resolver *r = s->w->dns;
	if (!r)
		return;
	if (c->dns_reverse) {
		struct dns_ctx *ctx = dns_ctx_new(s);
		s->rdns_pending = dns_rdns(r, s->client_ip, session_rdns_done, ctx) == 0;
		if (!s->rdns_pending)
			free(ctx);
	}
	if (s->l->conf->mode == CONF_MODE_MX && c->ndnsbl_zones) {
		struct dns_ctx *ctx = dns_ctx_new(s);
		s->dnsbl_pending = dns_dnsbl(r, s->client_ip, (const char *const *)c->dnsbl_zones,
		                             c->ndnsbl_zones, session_dnsbl_done, ctx) == 0;
		if (!s->dnsbl_pending)
			free(ctx);
	}
}

/* MAIL waits for the DNSBL verdict; DATA and BDAT wait for the reverse
 * name, which the Received header and the trace record need. Anything
 * else goes on: a slow resolver must not stall TLS or AUTH. */
bool session_dns_hold(struct session *s)
{
	if (!s->rdns_pending && !s->dnsbl_pending)
		return false;
	size_t len;
	const char *p = smtp_reader_peek(&s->reader, &len);
	if (len < 4)
		return false;
	bool hold = (s->dnsbl_pending && strncasecmp(p, "MAIL", 4) == 0) ||
	            (s->rdns_pending && (strncasecmp(p, "DATA", 4) == 0 ||
	                                 strncasecmp(p, "BDAT", 4) == 0));
	s->dns_waiting = hold;
	return hold;
}

bool session_dnsbl_refuse(struct session *s)
{
	const struct conf *c = s->w->d->conf;
	char text[512];
	if (s->dnsbl_zone && c->dnsbl_reject) {
		snprintf(text, sizeof(text), "Client host [%s] blocked using %s%s%s", s->client_ip,
		         s->dnsbl_zone, s->dnsbl_txt ? "; " : "", s->dnsbl_txt ? s->dnsbl_txt : "");
		session_trace_reject(s, "MAIL", "dnsbl", 554, "5.7.1", text, NULL);
		session_error(s, 554, "5.7.1", "%s", text);
		return true;
	}
	if (s->dnsbl_undecided && c->dns_timeout_tempfail) {
		snprintf(text, sizeof(text), "Client host [%s] could not be checked; try again later",
		         s->client_ip);
		session_trace_reject(s, "MAIL", "dnsbl_unavailable", 451, "4.7.1", text, NULL);
		session_error(s, 451, "4.7.1", "%s", text);
		return true;
	}
	return false;
}
