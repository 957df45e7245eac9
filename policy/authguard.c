/*
 * authguard.c - failed AUTH throttling. Failures are counted per (client
 * IP, account) pair, so that an attacker elsewhere cannot lock the real
 * user out, and per IP across accounts, which catches password spraying
 * (one try per account). Each failure also earns a growing delay before
 * the 535 reply. An attempt is known by the account it names (auth/'s
 * one name for every spelling, so that alice and alice@realm are one
 * count) and by the name as the client typed it, when that differs: a
 * lock on either holds. Counts reset when the window since the first counted
 * failure has passed; a lockout starts a fresh count when it ends.
 *
 * Lockouts are logged as
 *   event=auth_lockout scope=pair|ip client=<ip> user=<account> failures=N lockout=S
 * for fail2ban: failregex = event=auth_lockout .* client=<HOST>
 *
 * Records live in the sharded table (shard.c): no global lock, memory
 * bounded; under a flood of more than 262144 distinct failing keys the
 * least recently failing are forgotten first.
 * policy_authguard_new() returns a guard freed with policy_authguard_free().
 */
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "policy/policy_int.h"

#define CAP_PER_SHARD 4096
#define KEY_MAX 600
/* The separator cannot occur in an IP, so "ip SEP account" is unambiguous. */
#define SEP "\x1f"

struct policy_authguard {
	struct policy__shardmap *map;
	unsigned ipv6_prefix;
};

struct fails {
	double first;            /* first failure of the current count */
	double window_end;       /* when that count is forgotten */
	double locked_until;
	unsigned count;
};

static bool fails_expired(const void *rec, double now)
{
	const struct fails *f = rec;
	return now >= f->window_end && now >= f->locked_until;
}

struct policy_authguard *policy_authguard_new(unsigned ipv6_prefix)
{
	struct policy_authguard *g = xcalloc(1, sizeof(*g));
	g->ipv6_prefix = ipv6_prefix;
	g->map = policy__shardmap_new(sizeof(struct fails), CAP_PER_SHARD, fails_expired);
	return g;
}

void policy_authguard_free(struct policy_authguard *g)
{
	if (!g)
		return;
	policy__shardmap_free(g->map);
	free(g);
}

/* Fills key, the client being its address or its IPv6 network (an
 * attacker's /64 is one client); false if the account is too long to be
 * real. */
static bool make_key(const struct policy_authguard *g, char *key, const char *ip,
                     const char *account)
{
	char client[POLICY_CLIENT_KEY_MAX];
	policy_client_key(ip, g->ipv6_prefix, client, sizeof(client));
	int n = account ? snprintf(key, KEY_MAX, "%s" SEP "%s", client, account)
	                : snprintf(key, KEY_MAX, "%s", client);
	return n >= 0 && n < KEY_MAX;
}

/* ---- check ----------------------------------------------------------------------- */

struct peek {
	double now;
	bool locked;
};

static bool peek_locked(void *rec, bool fresh, void *arg)
{
	const struct fails *f = rec;
	struct peek *p = arg;
	p->locked = f->locked_until > p->now;
	return false;
}

static bool is_locked(struct policy_authguard *g, const char *key, double now)
{
	struct peek p = { .now = now };
	policy__shardmap_with(g->map, key, now, false, peek_locked, &p);
	return p.locked;
}

/* The names an attempt is counted under: the account, and the typed
 * name unless it is the same (keys compare without case). Returns how
 * many, at most 2. */
static size_t names_of(const char *account, const char *typed, const char *names[2])
{
	size_t n = 0;
	if (account)
		names[n++] = account;
	if (typed && (!account || strcasecmp(typed, account) != 0))
		names[n++] = typed;
	return n;
}

void policy_auth_check(struct policy_authguard *g, const struct policy_conf *pc, const char *ip,
                       const char *account, const char *typed, double now,
                       struct policy_verdict *v)
{
	char key[KEY_MAX];
	const char *names[2];
	*v = (struct policy_verdict){ 0 };
	if (make_key(g, key, ip, NULL) && is_locked(g, key, now)) {
		v->code = 421;
		v->enh = "4.7.0";
		v->text = "Too many failed authentications from your address; try later";
		v->rule = "auth_ip_locked";
		return;
	}
	size_t n = names_of(account, typed, names);
	for (size_t i = 0; i < n; i++) {
		if (make_key(g, key, ip, names[i]) && is_locked(g, key, now)) {
			v->code = 454;
			v->enh = "4.7.0";
			v->text = "Too many failed authentications; try later";
			v->rule = "auth_locked";
			return;
		}
	}
}

/* ---- failure ----------------------------------------------------------------------- */

struct fail_arg {
	double now;
	unsigned window, max, lockout;
	unsigned count;          /* failures counted, this one included */
	bool locked;             /* this failure armed a lockout */
};

static bool record_failure(void *rec, bool fresh, void *arg)
{
	struct fails *f = rec;
	struct fail_arg *a = arg;
	if (a->now >= f->window_end) {
		f->count = 0;
		f->first = a->now;
		f->window_end = a->now + a->window;
	}
	a->count = ++f->count;
	if (a->max && f->count >= a->max && f->locked_until <= a->now) {
		f->locked_until = a->now + a->lockout;
		f->count = 0;
		f->window_end = f->locked_until;  /* start afresh once it ends */
		a->locked = true;
	}
	return false;
}

static struct fail_arg count_failure(struct policy_authguard *g, const char *key, double now,
                                     unsigned window, unsigned max, unsigned lockout)
{
	struct fail_arg a = { .now = now, .window = window, .max = max, .lockout = lockout };
	policy__shardmap_with(g->map, key, now, true, record_failure, &a);
	return a;
}

static void log_lockout(const char *scope, const char *ip, const char *account,
                        unsigned failures, unsigned lockout)
{
	char sip[64];
	str_sanitize(sip, sizeof(sip), ip ? ip : "", ip ? strlen(ip) : 0);
	log_warn("event=auth_lockout scope=%s client=%s user=%s failures=%u lockout=%u", scope, sip,
	         log_q(account), failures, lockout);
}

static unsigned delay_for(const struct policy_conf *pc, unsigned count)
{
	unsigned cap = pc->auth_delay_max_ms ? pc->auth_delay_max_ms : 30000;
	unsigned d = pc->auth_delay_ms;
	for (unsigned i = 1; i < count && d < cap; i++)
		d *= 2;
	return d < cap ? d : cap;
}

unsigned policy_auth_failed(struct policy_authguard *g, const struct policy_conf *pc,
                            const char *ip, const char *account, const char *typed, double now)
{
	char key[KEY_MAX];
	const char *names[2];
	unsigned count = 1;
	if (!pc->auth_window)
		return delay_for(pc, 1);  /* failures are not remembered */
	if (make_key(g, key, ip, NULL)) {
		unsigned lockout = pc->auth_ip_lockout ? pc->auth_ip_lockout : pc->auth_lockout;
		struct fail_arg a = count_failure(g, key, now, pc->auth_window, pc->auth_ip_budget,
		                                  lockout);
		if (a.locked)
			log_lockout("ip", ip, NULL, a.count, lockout);
	}
	size_t n = names_of(account, typed, names);
	for (size_t i = 0; i < n; i++) {
		if (!make_key(g, key, ip, names[i]))
			continue;
		struct fail_arg a = count_failure(g, key, now, pc->auth_window, pc->auth_max_failures,
		                                  pc->auth_lockout);
		if (a.locked)
			log_lockout("pair", ip, names[i], a.count, pc->auth_lockout);
		if (a.count > count)
			count = a.count;
	}
	return delay_for(pc, count);
}

static bool drop(void *rec, bool fresh, void *arg)
{
	return true;
}

void policy_auth_succeeded(struct policy_authguard *g, const char *ip, const char *account,
                           const char *typed)
{
	char key[KEY_MAX];
	const char *names[2];
	size_t n = names_of(account, typed, names);
	for (size_t i = 0; i < n; i++)
		if (make_key(g, key, ip, names[i]))
			policy__shardmap_with(g->map, key, 0, false, drop, NULL);
}
