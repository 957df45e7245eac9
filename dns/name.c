/*
 * name.c - the pure parts of dns/: client addresses, reverse and DNSBL
 * query names, name server addresses and resolv.conf. No loop, no
 * network; everything writes into caller-provided buffers.
 */
#include "dns/dns_int.h"
#include "common/common.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *dns_status_str(enum dns_status st)
{
	switch (st) {
	case DNS_OK: return "ok";
	case DNS_NXDOMAIN: return "nxdomain";
	case DNS_NODATA: return "nodata";
	case DNS_TIMEOUT: return "timeout";
	case DNS_SERVFAIL: return "servfail";
	case DNS_CANCELLED: return "cancelled";
	case DNS_ERROR: return "error";
	}
	return "error";
}

int dns__parse_addr(const char *ip, struct dns__addr *out)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, ip, out->bytes) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, ip, out->bytes) != 1)
		return -EINVAL;
	/* A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; they
	 * are listed and named under in-addr.arpa. */
	if (memcmp(out->bytes, mapped, sizeof(mapped)) == 0) {
		memmove(out->bytes, out->bytes + 12, 4);
		memset(out->bytes + 4, 0, 12);
		out->family = AF_INET;
	} else {
		out->family = AF_INET6;
	}
	return 0;
}

int dns__reverse(const struct dns__addr *a, bool bare, char *out, size_t outlen)
{
	char tmp[80];
	size_t n = 0;
	if (a->family == AF_INET) {
		n = (size_t)snprintf(tmp, sizeof(tmp), "%u.%u.%u.%u", a->bytes[3],
		                     a->bytes[2], a->bytes[1], a->bytes[0]);
	} else {
		for (int i = 15; i >= 0; i--) {
			tmp[n++] = codec_hexdigit(a->bytes[i]);
			tmp[n++] = '.';
			tmp[n++] = codec_hexdigit(a->bytes[i] >> 4);
			tmp[n++] = '.';
		}
		tmp[--n] = '\0';
	}
	const char *suffix = bare ? "" : a->family == AF_INET ? ".in-addr.arpa" : ".ip6.arpa";
	if ((size_t)snprintf(out, outlen, "%s%s", tmp, suffix) >= outlen)
		return -ENAMETOOLONG;
	return 0;
}

int dns_reverse_name(const char *ip, char *out, size_t outlen)
{
	struct dns__addr a;
	if (dns__parse_addr(ip, &a) < 0)
		return -EINVAL;
	return dns__reverse(&a, false, out, outlen);
}

bool dns__name_ok(const char *s)
{
	size_t len = strlen(s), label = 0;
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0;
}

int dns_dnsbl_name(const char *ip, const char *zone, char *out, size_t outlen)
{
	struct dns__addr a;
	char rev[80];
	if (dns__parse_addr(ip, &a) < 0 || !dns__name_ok(zone))
		return -EINVAL;
	dns__reverse(&a, true, rev, sizeof(rev));
	size_t zlen = strlen(zone);
	if (zone[zlen - 1] == '.')
		zlen--;
	size_t total = strlen(rev) + 1 + zlen;
	if (total > 253 || total >= outlen)
		return -ENAMETOOLONG;
	snprintf(out, outlen, "%s.%.*s", rev, (int)zlen, zone);
	return 0;
}

static int parse_port(const char *s, int *port)
{
	char *end;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	long v = strtol(s, &end, 10);
	if (*end != '\0' || v < 1 || v > 65535)
		return -EINVAL;
	*port = (int)v;
	return 0;
}

int dns_parse_server(const char *s, struct sockaddr_storage *out)
{
	char host[INET6_ADDRSTRLEN + 32];
	int port = 53;
	const char *colon = strchr(s, ':');
	memset(out, 0, sizeof(*out));
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || (size_t)(close - s - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, (size_t)(close - s - 1));
		host[close - s - 1] = '\0';
		if (close[1] != '\0' && (close[1] != ':' || parse_port(close + 2, &port) < 0))
			return -EINVAL;
		return uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) == 0 ? 0 : -EINVAL;
	}
	if (colon && strchr(colon + 1, ':'))   /* bare IPv6, no port */
		return uv_ip6_addr(s, port, (struct sockaddr_in6 *)out) == 0 ? 0 : -EINVAL;
	size_t hlen = colon ? (size_t)(colon - s) : strlen(s);
	if (hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (colon && parse_port(colon + 1, &port) < 0)
		return -EINVAL;
	return uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0 ? 0 : -EINVAL;
}

int dns__read_resolv_conf(const char *path, struct sockaddr_storage *out, size_t max)
{
	FILE *f = fopen(path, "r");
	char line[512];
	size_t n = 0;
	if (!f)
		return -errno;
	while (n < max && fgets(line, sizeof(line), f)) {
		char *save, *key = strtok_r(line, " \t\r\n", &save);
		char *val = key ? strtok_r(NULL, " \t\r\n", &save) : NULL;
		if (!key || !val || strcmp(key, "nameserver") != 0)
			continue;
		/* resolv.conf takes no port; scoped IPv6 ("fe80::1%eth0") works. */
		if (uv_ip4_addr(val, 53, (struct sockaddr_in *)&out[n]) == 0 ||
		    uv_ip6_addr(val, 53, (struct sockaddr_in6 *)&out[n]) == 0)
			n++;
	}
	fclose(f);
	return (int)n;
}
