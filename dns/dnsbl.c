/*
 * dnsbl.c - DNSBL checks (RFC 5782): an A query under every zone at once;
 * the first zone to answer with a listing code wins, and its TXT record
 * (the list's reason) is fetched before reporting, within the same
 * deadline. Zones that fail only matter when no zone lists the address.
 *
 * Ownership: a job (with copies of the query names) is owned by this file
 * from dns_dnsbl() until its last query has answered; it reports once and
 * may outlive the report while slower zones finish.
 */
#include "dns/dns_int.h"
#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TXT_MAX 256

struct dnsbl_job;

struct dnsbl_zone {
	struct dnsbl_job *job;
	char qname[DNS_NAME_MAX];
	const char *zone;            /* the zone part of qname */
};

struct dnsbl_job {
	struct dns_resolver *r;
	uint64_t deadline;
	dns_dnsbl_cb cb;
	void *arg;
	unsigned outstanding;
	bool done;                   /* reported */
	struct dnsbl_zone *listed;   /* waiting for its TXT */
	enum dns_status fail;
	const char *fail_zone;
	size_t nzones;
	struct dnsbl_zone z[];
};

static void report(struct dnsbl_job *job, enum dns_status st, const char *zone, const char *txt)
{
	job->done = true;
	job->cb(job->arg, st, zone, txt);
}

static void release(struct dnsbl_job *job)
{
	if (job->outstanding == 0)
		free(job);
}

/* 1 listed, 0 not listed, -1 no verdict (an answer that is no listing
 * code: 127.0.0.1, Spamhaus' 127.255.255.x errors, or outside 127/8). */
static int verdict(const ldns_pkt *p)
{
	const ldns_rr_list *an = ldns_pkt_answer(p);
	int v = 0;
	for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++) {
		const ldns_rr *rr = ldns_rr_list_rr(an, i);
		const ldns_rdf *rd = ldns_rr_rdf(rr, 0);
		if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_A || !rd || ldns_rdf_size(rd) != 4)
			continue;
		const uint8_t *a = ldns_rdf_data(rd);
		bool err = a[0] != 127 || (a[1] == 255 && a[2] == 255) ||
		           (a[1] == 0 && a[2] == 0 && a[3] == 1);
		if (!err)
			return 1;
		v = -1;
	}
	return v;
}

/* The first TXT record's strings, joined and made safe for a reply line. */
static void txt_text(const ldns_pkt *p, char *out, size_t outlen)
{
	const ldns_rr_list *an = ldns_pkt_answer(p);
	char raw[TXT_MAX];
	size_t n = 0;
	for (size_t i = 0; i < ldns_rr_list_rr_count(an); i++) {
		const ldns_rr *rr = ldns_rr_list_rr(an, i);
		if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_TXT)
			continue;
		for (size_t j = 0; j < ldns_rr_rd_count(rr); j++) {
			const ldns_rdf *rd = ldns_rr_rdf(rr, j);
			size_t len = ldns_rdf_size(rd);
			if (len < 1)
				continue;
			/* each rdf is one <character-string>: a length byte, then text */
			len = len - 1 < sizeof(raw) - n ? len - 1 : sizeof(raw) - n;
			memcpy(raw + n, ldns_rdf_data(rd) + 1, len);
			n += len;
		}
		break;
	}
	str_sanitize(out, outlen, raw, n);
}

static void txt_done(void *arg, enum dns_status st, const ldns_pkt *reply)
{
	struct dnsbl_zone *z = arg;
	struct dnsbl_job *job = z->job;
	char txt[TXT_MAX];
	job->outstanding--;
	if (st == DNS_CANCELLED) {
		report(job, DNS_CANCELLED, NULL, NULL);
	} else {
		txt[0] = '\0';
		if (st == DNS_OK)
			txt_text(reply, txt, sizeof(txt));
		report(job, DNS_OK, z->zone, txt[0] ? txt : NULL);
	}
	release(job);
}

static void list_found(struct dnsbl_job *job, struct dnsbl_zone *z)
{
	job->listed = z;
	if (dns__query(job->r, z->qname, LDNS_RR_TYPE_TXT, job->deadline, txt_done, z) == 0)
		job->outstanding++;
	else
		report(job, DNS_OK, z->zone, NULL);   /* the reason is a nicety */
}

static void a_done(void *arg, enum dns_status st, const ldns_pkt *reply)
{
	struct dnsbl_zone *z = arg;
	struct dnsbl_job *job = z->job;
	job->outstanding--;
	if (!job->done && !job->listed) {
		int v = st == DNS_OK ? verdict(reply) : 0;
		if (v > 0) {
			list_found(job, z);
		} else if (v < 0 || (st != DNS_OK && st != DNS_NXDOMAIN && st != DNS_NODATA)) {
			if (job->fail == DNS_OK || st == DNS_CANCELLED) {
				job->fail = v < 0 ? DNS_ERROR : st;
				job->fail_zone = z->zone;
			}
		}
		if (!job->done && !job->listed && job->outstanding == 0)
			report(job, job->fail,
			       job->fail == DNS_OK || job->fail == DNS_CANCELLED ? NULL : job->fail_zone,
			       NULL);
	}
	release(job);
}

int dns_dnsbl(struct dns_resolver *r, const char *ip, const char *const *zones,
              size_t nzones, dns_dnsbl_cb cb, void *arg)
{
	if (nzones == 0)
		return -EINVAL;
	struct dnsbl_job *job = xcalloc(1, sizeof(*job) + nzones * sizeof(job->z[0]));
	char rev[80];
	int rc = 0;
	for (size_t i = 0; i < nzones && rc == 0; i++) {
		struct dnsbl_zone *z = &job->z[i];
		rc = dns_dnsbl_name(ip, zones[i], z->qname, sizeof(z->qname));
		z->job = job;
	}
	if (rc == 0)
		rc = dns_dnsbl_name(ip, "x", rev, sizeof(rev));
	if (rc < 0) {
		free(job);
		return rc == -ENAMETOOLONG ? -EINVAL : rc;
	}
	size_t prefix = strlen(rev) - 1;   /* "<reversed ip>." */
	job->r = r;
	job->deadline = dns__deadline(r);
	job->cb = cb;
	job->arg = arg;
	job->fail = DNS_OK;
	job->nzones = nzones;
	for (size_t i = 0; i < nzones; i++) {
		job->z[i].zone = job->z[i].qname + prefix;
		rc = dns__query(r, job->z[i].qname, LDNS_RR_TYPE_A, job->deadline, a_done, &job->z[i]);
		if (rc < 0)
			break;
		job->outstanding++;
	}
	if (rc < 0 && job->outstanding == 0) {
		free(job);
		return rc;
	}
	if (rc < 0) {
		/* Cannot happen (names were checked, the resolver is open), but
		 * the queries already out must still report: count it a failure. */
		job->fail = DNS_ERROR;
		job->fail_zone = job->z[0].zone;
	}
	return 0;
}
