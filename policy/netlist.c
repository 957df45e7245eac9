/*
 * netlist.c - lists of IPv4/IPv6 networks in CIDR notation, for the
 * trusted-network exception. A linear scan: these lists hold a handful of
 * entries, and the check runs once per unauthenticated transaction. Also
 * the client key of per-address counters (policy_client_key), which
 * reads addresses the same way.
 *
 * policy_netlist_parse() returns a list the caller frees with
 * policy_netlist_free().
 */
#include "policy/policy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

struct net {
	int family;              /* AF_INET or AF_INET6 */
	unsigned char addr[16];  /* host bits cleared */
	unsigned prefix;
};

struct policy_netlist {
	struct net *nets;
	size_t n;
};

static void mask_bits(unsigned char *a, size_t len, unsigned prefix)
{
	for (size_t i = 0; i < len; i++) {
		unsigned keep = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * (unsigned)i : 0;
		a[i] &= (unsigned char)(0xff00u >> keep);
	}
}

/* IPv4-mapped IPv6 becomes IPv4, so a v4 entry matches a dual-stack socket. */
static int parse_ip(const char *s, unsigned char out[16])
{
	if (inet_pton(AF_INET, s, out) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, s, out) != 1)
		return 0;
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (memcmp(out, mapped, 12) == 0) {
		memmove(out, out + 12, 4);
		return AF_INET;
	}
	return AF_INET6;
}

static const char *parse_one(const char *cidr, struct net *net)
{
	char ip[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(cidr, '/');
	size_t len = slash ? (size_t)(slash - cidr) : strlen(cidr);
	if (len == 0 || len >= sizeof(ip))
		return "not an address";
	memcpy(ip, cidr, len);
	ip[len] = '\0';
	/* A mapped address in the list would silently become IPv4: refuse it. */
	if (strchr(ip, ':') && strchr(ip, '.'))
		return "write IPv4 networks in IPv4 notation";
	net->family = parse_ip(ip, net->addr);
	if (!net->family)
		return "not an address";
	unsigned max = net->family == AF_INET ? 32 : 128;
	net->prefix = max;
	if (slash) {
		char *end;
		const char *d = slash + 1;
		if (*d < '0' || *d > '9')
			return "bad prefix length";
		unsigned long p = strtoul(d, &end, 10);
		if (*end || p > max)
			return "bad prefix length";
		net->prefix = (unsigned)p;
	}
	unsigned char orig[16];
	memcpy(orig, net->addr, 16);
	mask_bits(net->addr, max / 8, net->prefix);
	/* 10.1.2.3/8 is almost always a typo for a host or a smaller net. */
	if (memcmp(orig, net->addr, max / 8) != 0)
		return "host bits set";
	return NULL;
}

struct policy_netlist *policy_netlist_parse(const char *const *cidrs, size_t n, char *err,
                                            size_t errlen)
{
	struct policy_netlist *nl = xcalloc(1, sizeof(*nl));
	nl->nets = xcalloc(n ? n : 1, sizeof(*nl->nets));
	for (size_t i = 0; i < n; i++) {
		const char *why = parse_one(cidrs[i], &nl->nets[i]);
		if (why) {
			char safe[64];
			str_sanitize(safe, sizeof(safe), cidrs[i], strlen(cidrs[i]));
			snprintf(err, errlen, "%s: %s", safe, why);
			policy_netlist_free(nl);
			return NULL;
		}
	}
	nl->n = n;
	return nl;
}

void policy_netlist_free(struct policy_netlist *nl)
{
	if (!nl)
		return;
	free(nl->nets);
	free(nl);
}

bool policy_netlist_match(const struct policy_netlist *nl, const char *ip)
{
	unsigned char a[16];
	if (!nl || !ip)
		return false;
	int family = parse_ip(ip, a);
	if (!family)
		return false;
	for (size_t i = 0; i < nl->n; i++) {
		const struct net *net = &nl->nets[i];
		if (net->family != family)
			continue;
		unsigned char m[16];
		size_t len = family == AF_INET ? 4 : 16;
		memcpy(m, a, len);
		mask_bits(m, len, net->prefix);
		if (memcmp(m, net->addr, len) == 0)
			return true;
	}
	return false;
}

void policy_client_key(const char *ip, unsigned ipv6_prefix, char *out, size_t size)
{
	unsigned char a[16];
	char text[INET6_ADDRSTRLEN];
	if (size == 0)
		return;
	int family = ip ? parse_ip(ip, a) : 0;
	if (family == AF_INET && inet_ntop(AF_INET, a, text, sizeof(text))) {
		snprintf(out, size, "%s", text);
	} else if (family == AF_INET6 && ipv6_prefix >= 1 && ipv6_prefix < 128) {
		mask_bits(a, 16, ipv6_prefix);
		if (inet_ntop(AF_INET6, a, text, sizeof(text)))
			snprintf(out, size, "%s/%u", text, ipv6_prefix);
		else
			out[0] = '\0';
	} else if (family == AF_INET6 && inet_ntop(AF_INET6, a, text, sizeof(text))) {
		snprintf(out, size, "%s", text);
	} else {
		/* Not an address (a scoped one, a test's name): itself. */
		str_lcpy(out, ip ? ip : "", size);
	}
}
