/*
 * resolve.c - the resolver: single-question UDP queries on the caller's
 * loop. ldns builds and parses packets; libuv sends, receives and times.
 *
 * Each query has its own timer: it resends at half its time to the next
 * server (UDP loses packets, servers die) and ends with DNS_TIMEOUT at its
 * deadline. Replies are matched on server address, random id and question,
 * since the socket (one per address family, for the resolver's lifetime)
 * keeps one source port. There is no TCP fallback: PTR, A, AAAA and DNSBL
 * TXT answers fit in the 1232-byte EDNS buffer we announce.
 *
 * Ownership: the resolver owns its queries. A finished query is unlinked at
 * once and freed in its timer's close callback; the resolver itself is
 * freed when its last handle (sockets, query timers) has closed.
 */
#include "dns/dns_int.h"
#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define EDNS_SIZE 1232
#define NBUCKETS 256

struct dns__q {
	uv_timer_t timer;             /* timer.data = this query */
	struct dns_resolver *r;
	struct dns__q *prev, *next;   /* r->pending */
	struct dns__q *hnext;         /* r->bucket[id % NBUCKETS] */
	uint16_t id;
	ldns_rr_type type;
	ldns_rdf *qname;
	uint8_t *wire;
	size_t wirelen;
	size_t server;
	bool retried;
	uint64_t deadline;
	dns__query_cb cb;
	void *arg;
};

struct dns_resolver {
	uv_loop_t *loop;
	uv_udp_t udp4, udp6;
	bool has4, has6, closing;
	unsigned nhandles;            /* open handles; freed at 0 when closing */
	unsigned timeout_ms;
	struct sockaddr_storage servers[DNS_MAX_SERVERS];
	size_t nservers;
	size_t cur;                   /* the server that answered last */
	struct dns__q *pending;
	struct dns__q *bucket[NBUCKETS];
	uint16_t ids[64];
	size_t nids;
	char rbuf[4096];              /* receive buffer: replies are handled at once */
};

uint64_t dns__now(const struct dns_resolver *r)
{
	return uv_now(r->loop);
}

uint64_t dns__deadline(const struct dns_resolver *r)
{
	return uv_now(r->loop) + r->timeout_ms;
}

static void handle_closed(uv_handle_t *h)
{
	struct dns_resolver *r = h->data;
	if (--r->nhandles == 0 && r->closing)
		free(r);
}

static void query_closed(uv_handle_t *h)
{
	struct dns__q *q = h->data;
	struct dns_resolver *r = q->r;
	ldns_rdf_deep_free(q->qname);
	free(q->wire);
	free(q);
	if (--r->nhandles == 0 && r->closing)
		free(r);
}

/* ---- sending --------------------------------------------------------- */

struct send_req {
	uv_udp_send_t req;
	size_t len;
	uint8_t data[];
};

static void send_done(uv_udp_send_t *req, int status)
{
	/* A lost packet is the timer's business. */
	free(req->data);
}

static void query_send(struct dns__q *q)
{
	struct dns_resolver *r = q->r;
	const struct sockaddr *sa = (const struct sockaddr *)&r->servers[q->server];
	uv_udp_t *u = sa->sa_family == AF_INET ? &r->udp4 : &r->udp6;
	uv_buf_t b = uv_buf_init((char *)q->wire, (unsigned)q->wirelen);
	int rc = uv_udp_try_send(u, &b, 1, sa);
	if (rc >= 0 || (rc != UV_EAGAIN && rc != UV_ENOSYS))
		return;
	/* The query may end before the send does, so the request has its
	 * own copy of the packet. */
	struct send_req *s = xmalloc(sizeof(*s) + q->wirelen);
	memcpy(s->data, q->wire, q->wirelen);
	s->req.data = s;
	b = uv_buf_init((char *)s->data, (unsigned)q->wirelen);
	if (uv_udp_send(&s->req, u, &b, 1, sa, send_done) < 0)
		free(s);
}

/* ---- the pending set ------------------------------------------------- */

static struct dns__q *find_id(struct dns_resolver *r, uint16_t id)
{
	for (struct dns__q *q = r->bucket[id % NBUCKETS]; q; q = q->hnext)
		if (q->id == id)
			return q;
	return NULL;
}

static uint16_t fresh_id(struct dns_resolver *r)
{
	for (;;) {
		if (r->nids == 0) {
			/* Unpredictable ids are what stands between a spoofer and
			 * our verdicts, so they come from the kernel, in batches. */
			if (getrandom(r->ids, sizeof(r->ids), 0) != (ssize_t)sizeof(r->ids))
				fatal("event=dns_error reason=getrandom errno=%d", errno);
			r->nids = ARRAY_LEN(r->ids);
		}
		uint16_t id = r->ids[--r->nids];
		if (!find_id(r, id))
			return id;
	}
}

static void unlink_query(struct dns__q *q)
{
	struct dns_resolver *r = q->r;
	struct dns__q **pp = &r->bucket[q->id % NBUCKETS];
	while (*pp != q)
		pp = &(*pp)->hnext;
	*pp = q->hnext;
	if (q->prev)
		q->prev->next = q->next;
	else
		r->pending = q->next;
	if (q->next)
		q->next->prev = q->prev;
}

/* Ends q: it leaves the pending set before its callback runs, so the
 * callback may start queries or close the resolver. */
static void query_finish(struct dns__q *q, enum dns_status st, const ldns_pkt *reply)
{
	unlink_query(q);
	uv_timer_stop(&q->timer);
	uv_close((uv_handle_t *)&q->timer, query_closed);
	q->cb(q->arg, st, reply);
}

static void query_timer(uv_timer_t *t)
{
	struct dns__q *q = t->data;
	uint64_t now = uv_now(q->r->loop);
	if (q->retried || now >= q->deadline) {
		query_finish(q, DNS_TIMEOUT, NULL);
		return;
	}
	q->retried = true;
	q->server = (q->server + 1) % q->r->nservers;
	query_send(q);
	uv_timer_start(&q->timer, query_timer, q->deadline - now, 0);
}

int dns__query(struct dns_resolver *r, const char *name, ldns_rr_type type,
               uint64_t deadline, dns__query_cb cb, void *arg)
{
	uint64_t now = uv_now(r->loop);
	if (r->closing)
		return -ECANCELED;
	if (deadline <= now)
		return -ETIMEDOUT;
	if (!dns__name_ok(name))
		return -EINVAL;
	ldns_rdf *qname = ldns_dname_new_frm_str(name);
	if (!qname)
		return -EINVAL;
	ldns_pkt *pkt = ldns_pkt_query_new(ldns_rdf_clone(qname), type, LDNS_RR_CLASS_IN, LDNS_RD);
	if (!pkt)
		fatal("event=dns_error reason=out_of_memory");
	struct dns__q *q = xcalloc(1, sizeof(*q));
	q->r = r;
	q->id = fresh_id(r);
	q->type = type;
	q->qname = qname;
	q->deadline = deadline;
	q->cb = cb;
	q->arg = arg;
	q->server = r->cur;
	ldns_pkt_set_id(pkt, q->id);
	ldns_pkt_set_edns_udp_size(pkt, EDNS_SIZE);
	ldns_status ls = ldns_pkt2wire(&q->wire, pkt, &q->wirelen);
	ldns_pkt_free(pkt);
	if (ls != LDNS_STATUS_OK) {
		ldns_rdf_deep_free(qname);
		free(q);
		return -EINVAL;
	}
	uv_timer_init(r->loop, &q->timer);
	q->timer.data = q;
	r->nhandles++;
	q->hnext = r->bucket[q->id % NBUCKETS];
	r->bucket[q->id % NBUCKETS] = q;
	q->next = r->pending;
	if (q->next)
		q->next->prev = q;
	r->pending = q;
	query_send(q);
	uint64_t left = deadline - now;
	uv_timer_start(&q->timer, query_timer, left >= 4 ? left / 2 : left, 0);
	return 0;
}

/* ---- receiving ------------------------------------------------------- */

static bool same_addr(const struct sockaddr *a, const struct sockaddr_storage *b)
{
	if (a->sa_family != b->ss_family)
		return false;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port &&
	       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

static bool question_matches(const struct dns__q *q, const ldns_pkt *p)
{
	if (!ldns_pkt_qr(p) || ldns_pkt_qdcount(p) != 1)
		return false;
	const ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_question(p), 0);
	return rr && ldns_rr_get_type(rr) == q->type &&
	       ldns_rr_get_class(rr) == LDNS_RR_CLASS_IN &&
	       ldns_dname_compare(ldns_rr_owner(rr), q->qname) == 0;
}

static enum dns_status reply_status(const struct dns__q *q, const ldns_pkt *p)
{
	switch (ldns_pkt_get_rcode(p)) {
	case LDNS_RCODE_NOERROR:
		break;
	case LDNS_RCODE_NXDOMAIN:
		return DNS_NXDOMAIN;
	case LDNS_RCODE_SERVFAIL:
	case LDNS_RCODE_REFUSED:
		return DNS_SERVFAIL;
	default:
		return DNS_ERROR;
	}
	const ldns_rr_list *an = ldns_pkt_answer(p);
	for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++)
		if (ldns_rr_get_type(ldns_rr_list_rr(an, i)) == q->type)
			return DNS_OK;
	/* A truncated reply without the records may have lost them. */
	return ldns_pkt_tc(p) ? DNS_ERROR : DNS_NODATA;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct dns_resolver *r = h->data;
	*buf = uv_buf_init(r->rbuf, sizeof(r->rbuf));
}

static void on_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *from, unsigned flags)
{
	struct dns_resolver *r = u->data;
	ldns_pkt *p = NULL;
	size_t server;
	if (nread < 12 || !from || (flags & UV_UDP_PARTIAL) || r->closing)
		return;
	for (server = 0; server < r->nservers; server++)
		if (same_addr(from, &r->servers[server]))
			break;
	if (server == r->nservers)
		return;
	if (ldns_wire2pkt(&p, (const uint8_t *)buf->base, (size_t)nread) != LDNS_STATUS_OK)
		return;
	struct dns__q *q = find_id(r, ldns_pkt_id(p));
	if (q && question_matches(q, p)) {
		r->cur = server;
		query_finish(q, reply_status(q, p), p);
	} else {
		log_debug("event=dns_stray id=%u", (unsigned)ldns_pkt_id(p));
	}
	ldns_pkt_free(p);
}

/* ---- life cycle ------------------------------------------------------ */

static int open_udp(struct dns_resolver *r, uv_udp_t *u, int family, char *err, size_t errlen)
{
	struct sockaddr_storage any;
	int rc;
	memset(&any, 0, sizeof(any));
	if (family == AF_INET)
		rc = uv_ip4_addr("0.0.0.0", 0, (struct sockaddr_in *)&any);
	else
		rc = uv_ip6_addr("::", 0, (struct sockaddr_in6 *)&any);
	if (rc == 0)
		rc = uv_udp_init(r->loop, u);
	if (rc < 0) {
		snprintf(err, errlen, "dns: socket: %s", uv_strerror(rc));
		return rc;
	}
	u->data = r;
	r->nhandles++;
	rc = uv_udp_bind(u, (const struct sockaddr *)&any, family == AF_INET6 ? UV_UDP_IPV6ONLY : 0);
	if (rc == 0)
		rc = uv_udp_recv_start(u, on_alloc, on_recv);
	if (rc < 0)
		snprintf(err, errlen, "dns: bind: %s", uv_strerror(rc));
	return rc;
}

struct dns_resolver *dns_resolver_new(uv_loop_t *loop, const struct dns_conf *conf,
                                      char *err, size_t errlen)
{
	struct dns_resolver *r = xcalloc(1, sizeof(*r));
	r->loop = loop;
	r->timeout_ms = conf->timeout_ms ? conf->timeout_ms : DNS_DEFAULT_TIMEOUT_MS;
	if (conf->nservers > DNS_MAX_SERVERS) {
		snprintf(err, errlen, "dns: more than %d servers", DNS_MAX_SERVERS);
		goto fail;
	}
	for (size_t i = 0; i < conf->nservers; i++) {
		if (dns_parse_server(conf->servers[i], &r->servers[i]) < 0) {
			snprintf(err, errlen, "dns: bad server address '%s'", conf->servers[i]);
			goto fail;
		}
	}
	r->nservers = conf->nservers;
	if (r->nservers == 0) {
		const char *path = conf->resolv_conf ? conf->resolv_conf : "/etc/resolv.conf";
		int n = dns__read_resolv_conf(path, r->servers, DNS_MAX_SERVERS);
		if (n <= 0) {
			snprintf(err, errlen, "dns: %s: %s", path,
			         n < 0 ? strerror(-n) : "no usable nameserver line");
			goto fail;
		}
		r->nservers = (size_t)n;
	}
	for (size_t i = 0; i < r->nservers; i++) {
		if (r->servers[i].ss_family == AF_INET)
			r->has4 = true;
		else
			r->has6 = true;
	}
	if ((r->has4 && open_udp(r, &r->udp4, AF_INET, err, errlen) < 0) ||
	    (r->has6 && open_udp(r, &r->udp6, AF_INET6, err, errlen) < 0)) {
		dns_resolver_close(r);
		return NULL;
	}
	return r;
fail:
	free(r);
	return NULL;
}

void dns_resolver_close(struct dns_resolver *r)
{
	if (r->closing)
		return;
	r->closing = true;
	while (r->pending)
		query_finish(r->pending, DNS_CANCELLED, NULL);
	if (r->has4 && r->udp4.data)
		uv_close((uv_handle_t *)&r->udp4, handle_closed);
	if (r->has6 && r->udp6.data)
		uv_close((uv_handle_t *)&r->udp6, handle_closed);
	if (r->nhandles == 0)
		free(r);
}
