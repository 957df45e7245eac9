/*
 * dns.h - asynchronous DNS for the event loops: reverse lookup with forward
 * confirmation (FCrDNS) and DNSBL checks, over libldns.
 *
 * Queries are UDP packets built and parsed with ldns and sent from the
 * caller's libuv loop; nothing blocks and no thread is used. Create one
 * resolver per event loop and use it only from that loop's thread.
 *
 * Every lookup ends: each dns_rdns()/dns_dnsbl() call that returns 0 calls
 * its callback exactly once, on the loop, never from inside the call itself,
 * at the latest timeout_ms after the call (plus loop latency). The callback
 * gets the caller's opaque arg back and nothing else of the caller's: pass a
 * session id (not a session pointer) and look the session up, so a session
 * closed in the meantime is simply not found.
 *
 * Ownership: dns_resolver_new() returns a resolver owned by the caller and
 * released by dns_resolver_close(), which calls every pending callback with
 * DNS_CANCELLED before it returns; the memory goes in libuv close callbacks,
 * so keep running the loop after it. Strings passed to callbacks belong to
 * this module and live only during the callback: copy what you keep. The
 * module copies whatever it needs from its arguments (ip, zones).
 */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

enum dns_status {
	DNS_OK = 0,     /* an answer (for rdns/dnsbl: a verdict, see below) */
	DNS_NXDOMAIN,   /* the name does not exist */
	DNS_NODATA,     /* the name exists, with no record of the type asked */
	DNS_TIMEOUT,    /* no answer within timeout_ms */
	DNS_SERVFAIL,   /* the server answered SERVFAIL or REFUSED */
	DNS_CANCELLED,  /* dns_resolver_close() ran first */
	DNS_ERROR,      /* malformed or unusable answer, or a local error */
};

/* "ok", "nxdomain", "nodata", "timeout", "servfail", "cancelled", "error". */
const char *dns_status_str(enum dns_status st);

#define DNS_MAX_SERVERS 8
/* Longest name any callback or helper produces, with its NUL. */
#define DNS_NAME_MAX 254
#define DNS_DEFAULT_TIMEOUT_MS 5000

struct dns_conf {
	/* "192.0.2.1", "192.0.2.1:5353", "2001:db8::1", "[2001:db8::1]:53";
	 * up to DNS_MAX_SERVERS. When nservers is 0, the nameserver lines of
	 * resolv_conf are used (NULL: /etc/resolv.conf). */
	const char *const *servers;
	size_t nservers;
	const char *resolv_conf;
	/* Bound on each whole dns_rdns()/dns_dnsbl() call; 0: the default. */
	unsigned timeout_ms;
};

/* Returns NULL with err filled on a bad server or a socket error (after a
 * socket error, run the loop once more: handles are freed as they close). */
struct dns_resolver *dns_resolver_new(uv_loop_t *loop, const struct dns_conf *conf,
                                      char *err, size_t errlen);
/* Cancels pending lookups (their callbacks run now, with DNS_CANCELLED),
 * then closes the handles; the loop frees the rest. Lookups started from
 * those callbacks fail with -ECANCELED. */
void dns_resolver_close(struct dns_resolver *r);

/*
 * Reverse lookup with forward confirmation: PTR of ip, then A (or AAAA) of
 * up to DNS_RDNS_MAX_NAMES of the PTR names; a name is verified when its
 * addresses include ip. Outcomes:
 *   DNS_OK, name set:          verified name (for Received and the trace)
 *   DNS_OK, name NULL:         PTR names exist but none confirms
 *   DNS_NXDOMAIN / DNS_NODATA: no PTR record
 *   DNS_TIMEOUT / DNS_SERVFAIL / DNS_ERROR: undecided, a temporary failure
 *   DNS_CANCELLED
 * ptr_name is the first PTR name, unverified, for logs only (or NULL).
 * Returns 0, or -EINVAL (ip not an address) or -ECANCELED (closing); the
 * callback runs only when 0 is returned.
 */
#define DNS_RDNS_MAX_NAMES 4
typedef void (*dns_rdns_cb)(void *arg, enum dns_status st, const char *name,
                            const char *ptr_name);
int dns_rdns(struct dns_resolver *r, const char *ip, dns_rdns_cb cb, void *arg);

/*
 * DNSBL check of ip against zones, all queried at once: an A record in
 * 127.0.0.2 - 127.255.254.255 under <reversed ip>.<zone> means listed
 * (RFC 5782); other answers (127.255.255.x are Spamhaus' error codes,
 * 127.0.0.1, anything outside 127/8) are no verdict. Outcomes:
 *   DNS_OK, zone set:   listed by zone; txt is its sanitized TXT reason
 *                       (printable ASCII, no quotes) or NULL
 *   DNS_OK, zone NULL:  every zone answered, none lists ip
 *   DNS_TIMEOUT / DNS_SERVFAIL / DNS_ERROR: no zone lists ip but zone (set,
 *                       for the log) could not be checked; the caller
 *                       applies its configured outcome (tempfail or pass)
 *   DNS_CANCELLED
 * A listing is reported as soon as it arrives, without waiting for slower
 * zones. Returns 0, or -EINVAL (bad ip, no zone, a zone name that does not
 * fit) or -ECANCELED; the callback runs only when 0 is returned.
 */
typedef void (*dns_dnsbl_cb)(void *arg, enum dns_status st, const char *zone,
                             const char *txt);
int dns_dnsbl(struct dns_resolver *r, const char *ip, const char *const *zones,
              size_t nzones, dns_dnsbl_cb cb, void *arg);

/* ---- pure helpers (no loop, no network) ------------------------------ */

/* "192.0.2.10" -> "10.2.0.192.in-addr.arpa"; IPv6 -> 32 nibbles +
 * ".ip6.arpa"; an IPv4-mapped IPv6 address counts as IPv4. Returns 0 or
 * -EINVAL (bad address) / -ENAMETOOLONG (out too small). */
int dns_reverse_name(const char *ip, char *out, size_t outlen);
/* "192.0.2.10", "bl.example" -> "10.2.0.192.bl.example". Returns 0 or
 * -EINVAL (bad address or zone) / -ENAMETOOLONG (over 253 characters or
 * out too small). Config checks can call it with "::" to vet a zone. */
int dns_dnsbl_name(const char *ip, const char *zone, char *out, size_t outlen);
/* Parses a server as in struct dns_conf; the port defaults to 53.
 * Returns 0 or -EINVAL. */
int dns_parse_server(const char *s, struct sockaddr_storage *out);

/* ---- in the phase pipeline (hook.c) -------------------------------------- */

/* Starts the reverse lookup and, on mx, the DNSBL checks at CONNECT; MAIL
 * waits for the DNSBL verdict (554 5.7.1 "dnsbl" when reject, 451 4.7.1
 * "dnsbl_unavailable" when undecided and tempfail), DATA for the name. */
struct hook_ops;
struct dns_hook;
struct dns_hook *dns_hook_new(unsigned nloops, bool reverse, const char *const *zones,
                              size_t nzones, bool reject, bool tempfail);
/* The resolver of a loop (NULL: no lookups there); the loop's thread only. */
void dns_hook_set_resolver(struct dns_hook *h, unsigned loop, struct dns_resolver *r);
void dns_hook_free(struct dns_hook *h);
extern const struct hook_ops dns_hook_ops;

#endif
