/*
 * rdns.c - reverse lookup with forward confirmation (FCrDNS): PTR of the
 * client address, then A/AAAA of its names in parallel; the first name
 * whose addresses include the client's is the verified one. Only such a
 * name goes into the Received header and the trace record, since anyone
 * controlling a reverse zone can make its PTR say anything.
 *
 * Ownership: a job is owned by this file from dns_rdns() until its last
 * query has answered; it reports once (job->done) and may outlive the
 * report while slower forward queries finish.
 */
#include "dns/dns_int.h"
#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct rdns_job;

struct rdns_fwd {
	struct rdns_job *job;
	char name[DNS_NAME_MAX];
};

struct rdns_job {
	struct dns_resolver *r;
	struct dns__addr addr;
	uint64_t deadline;
	dns_rdns_cb cb;
	void *arg;
	unsigned outstanding;
	bool done;
	enum dns_status fail;           /* first undecided forward lookup */
	char ptr_name[DNS_NAME_MAX];
	struct rdns_fwd fwd[DNS_RDNS_MAX_NAMES];
};

static void report(struct rdns_job *job, enum dns_status st, const char *name)
{
	job->done = true;
	job->cb(job->arg, st, name, job->ptr_name[0] ? job->ptr_name : NULL);
}

static bool has_addr(const struct rdns_job *job, const ldns_pkt *p)
{
	ldns_rr_type want = job->addr.family == AF_INET ? LDNS_RR_TYPE_A : LDNS_RR_TYPE_AAAA;
	size_t alen = job->addr.family == AF_INET ? 4 : 16;
	const ldns_rr_list *an = ldns_pkt_answer(p);
	for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++) {
		const ldns_rr *rr = ldns_rr_list_rr(an, i);
		const ldns_rdf *rd = ldns_rr_rdf(rr, 0);
		if (ldns_rr_get_type(rr) == want && rd && ldns_rdf_size(rd) == alen &&
		    memcmp(ldns_rdf_data(rd), job->addr.bytes, alen) == 0)
			return true;
	}
	return false;
}

static void fwd_done(void *arg, enum dns_status st, const ldns_pkt *reply)
{
	struct rdns_fwd *f = arg;
	struct rdns_job *job = f->job;
	job->outstanding--;
	if (!job->done) {
		if (st == DNS_OK && has_addr(job, reply))
			report(job, DNS_OK, f->name);
		else if (st == DNS_CANCELLED)
			job->fail = DNS_CANCELLED;
		else if (st != DNS_OK && st != DNS_NXDOMAIN && st != DNS_NODATA &&
		         job->fail == DNS_OK)
			job->fail = st;
		if (!job->done && job->outstanding == 0)
			report(job, job->fail, NULL);
	}
	if (job->outstanding == 0)
		free(job);
}

/* PTR rdata as a name we accept, without its final dot. */
static bool ptr_target(const ldns_rr *rr, char *out, size_t outlen)
{
	const ldns_rdf *rd = ldns_rr_rdf(rr, 0);
	char *s = rd ? ldns_rdf2str(rd) : NULL;
	bool ok = s && dns__name_ok(s) && strlen(s) < outlen;
	if (ok) {
		str_lcpy(out, s, outlen);
		size_t n = strlen(out);
		if (n > 1 && out[n - 1] == '.')
			out[n - 1] = '\0';
	}
	free(s);
	return ok;
}

static void ptr_done(void *arg, enum dns_status st, const ldns_pkt *reply)
{
	struct rdns_job *job = arg;
	ldns_rr_type type = job->addr.family == AF_INET ? LDNS_RR_TYPE_A : LDNS_RR_TYPE_AAAA;
	size_t nnames = 0;
	job->outstanding--;
	if (st != DNS_OK) {
		report(job, st, NULL);
		free(job);
		return;
	}
	const ldns_rr_list *an = ldns_pkt_answer(reply);
	for (size_t i = 0; i < ldns_rr_list_rr_count(an) && nnames < DNS_RDNS_MAX_NAMES; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(an, i);
		struct rdns_fwd *f = &job->fwd[nnames];
		if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_PTR || !ptr_target(rr, f->name, sizeof(f->name)))
			continue;
		if (nnames == 0)
			str_lcpy(job->ptr_name, f->name, sizeof(job->ptr_name));
		f->job = job;
		nnames++;
	}
	if (nnames == 0) {
		report(job, DNS_NODATA, NULL);   /* only names we would not show */
		free(job);
		return;
	}
	for (size_t i = 0; i < nnames; i++) {
		int rc = dns__query(job->r, job->fwd[i].name, type, job->deadline, fwd_done, &job->fwd[i]);
		if (rc == 0)
			job->outstanding++;
		else if (job->fail == DNS_OK)
			job->fail = rc == -ECANCELED ? DNS_CANCELLED : rc == -ETIMEDOUT ? DNS_TIMEOUT : DNS_ERROR;
	}
	if (job->outstanding == 0) {
		report(job, job->fail, NULL);
		free(job);
	}
}

int dns_rdns(struct dns_resolver *r, const char *ip, dns_rdns_cb cb, void *arg)
{
	char name[DNS_NAME_MAX];
	struct rdns_job *job = xcalloc(1, sizeof(*job));
	int rc = dns__parse_addr(ip, &job->addr);
	if (rc == 0)
		rc = dns__reverse(&job->addr, false, name, sizeof(name));
	if (rc == 0) {
		job->r = r;
		job->deadline = dns__deadline(r);
		job->cb = cb;
		job->arg = arg;
		job->fail = DNS_OK;
		rc = dns__query(r, name, LDNS_RR_TYPE_PTR, job->deadline, ptr_done, job);
	}
	if (rc < 0) {
		free(job);
		return rc;
	}
	job->outstanding = 1;
	return 0;
}
