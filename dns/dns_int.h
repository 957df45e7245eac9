/*
 * dns_int.h - private to dns/: single-question queries (resolve.c) that the
 * lookups (rdns.c, dnsbl.c) build on, and address helpers (name.c).
 */
#ifndef POSTERN_DNS_INT_H
#define POSTERN_DNS_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <ldns/ldns.h>
#include "dns/dns.h"

/* A client address in binary; IPv4-mapped IPv6 is stored as IPv4. */
struct dns__addr {
	int family;          /* AF_INET or AF_INET6 */
	uint8_t bytes[16];   /* 4 or 16 used */
};

int dns__parse_addr(const char *ip, struct dns__addr *out);
/* The reverse name of a, without "in-addr.arpa"/"ip6.arpa" when bare. */
int dns__reverse(const struct dns__addr *a, bool bare, char *out, size_t outlen);
/* Reads up to max nameserver lines from path. Returns the count or -errno. */
int dns__read_resolv_conf(const char *path, struct sockaddr_storage *out, size_t max);
/* Whether s is a host name we accept and show: LDH labels (and '_'), at
 * most 253 characters, no empty label; a final dot is allowed. */
bool dns__name_ok(const char *s);

/*
 * One question, one answer. reply is borrowed for the callback only; it is
 * set for DNS_OK, DNS_NODATA and DNS_NXDOMAIN. The callback runs exactly
 * once and never from inside dns__query(); on error (-ECANCELED when
 * closing, -ETIMEDOUT when the deadline has passed, -EINVAL for a bad name)
 * it never runs.
 */
typedef void (*dns__query_cb)(void *arg, enum dns_status st, const ldns_pkt *reply);
int dns__query(struct dns_resolver *r, const char *name, ldns_rr_type type,
               uint64_t deadline, dns__query_cb cb, void *arg);
/* Loop time (ms) by which a lookup started now must end. */
uint64_t dns__deadline(const struct dns_resolver *r);
uint64_t dns__now(const struct dns_resolver *r);

#endif
