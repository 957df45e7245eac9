/*
 * limits.c - the verdicts that consult shared counters: connections at
 * accept, messages and recipients per account per hour. The numbers come
 * from struct policy_conf (per listener, reloadable) and the sender map's
 * !limit lines (per account); the counters from struct policy_state,
 * which outlives reloads.
 *
 * policy_state_new() returns a state freed with policy_state_free(),
 * after every event loop has stopped using it.
 */
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/common.h"

#define KEY_MAX 600

struct policy_state *policy_state_new(unsigned ipv6_prefix)
{
	struct policy_state *st = xcalloc(1, sizeof(*st));
	st->ipv6_prefix = ipv6_prefix;
	st->limiter = policy_limiter_new();
	st->conns = policy_conncount_new(ipv6_prefix);
	st->guard = policy_authguard_new(ipv6_prefix);
	return st;
}

void policy_state_free(struct policy_state *st)
{
	if (!st)
		return;
	policy_limiter_free(st->limiter);
	policy_conncount_free(st->conns);
	policy_authguard_free(st->guard);
	free(st);
}

static void refuse(struct policy_verdict *v, int code, const char *enh, const char *text,
                   const char *rule)
{
	v->code = code;
	v->enh = enh;
	v->text = text;
	v->rule = rule;
}

void policy_check_connect(const struct policy_conf *pc, struct policy_state *st, const char *ip,
                          double now, struct policy_verdict *v)
{
	char key[KEY_MAX], client[POLICY_CLIENT_KEY_MAX];
	unsigned total;
	*v = (struct policy_verdict){ 0 };
	policy_client_key(ip, st->ipv6_prefix, client, sizeof(client));
	/* Refused attempts spend tokens too: a reconnect loop stays refused. */
	if (pc->conn_per_ip_per_minute && snprintf(key, sizeof(key), "c:%s", client) < KEY_MAX &&
	    !policy_limiter_take(st->limiter, key, pc->conn_per_ip_per_minute / 60.0,
	                         pc->conn_per_ip_per_minute, 1, now, NULL)) {
		refuse(v, 421, "4.7.0", "Too many connections from your address; try later",
		       "connection_rate");
		return;
	}
	unsigned per_ip = policy_conncount_inc(st->conns, ip, &total);
	if (pc->max_conn_total && total > pc->max_conn_total)
		refuse(v, 421, "4.7.0", "Too many connections; try later", "max_connections");
	else if (pc->max_conn_per_ip && per_ip > pc->max_conn_per_ip)
		refuse(v, 421, "4.7.0", "Too many connections from your address; try later",
		       "max_connections_per_ip");
	if (v->code)
		policy_conncount_dec(st->conns, ip, NULL);
}

void policy_note_disconnect(struct policy_state *st, const char *ip)
{
	policy_conncount_dec(st->conns, ip, NULL);
}

/* The account's limit: its !limit line when it has one, else the listener's. */
static unsigned account_limit(const struct policy_conf *pc, const char *account, unsigned bit,
                              unsigned listener)
{
	struct policy_account_limits al;
	policy_sendermap_limits(pc->sendermap, account, &al);
	if (!(al.mask & bit))
		return listener;
	return bit == POLICY_LIMIT_MESSAGES_PER_HOUR ? al.messages_per_hour
	       : bit == POLICY_LIMIT_RECIPIENTS_PER_HOUR ? al.recipients_per_hour
	                                                  : al.recipients_per_message;
}

/* Spends one unit of an hourly budget; false when it is exhausted. */
static bool spend_hourly(struct policy_state *st, char prefix, const char *account,
                         unsigned per_hour, double now)
{
	char key[KEY_MAX];
	if (!per_hour || snprintf(key, sizeof(key), "%c:%s", prefix, account) >= KEY_MAX)
		return true;
	return policy_limiter_take(st->limiter, key, per_hour / 3600.0, per_hour, 1, now, NULL);
}

void policy_check_rate_message(const struct policy_conf *pc, struct policy_state *st,
                               const struct policy_session *ps, double now,
                               struct policy_verdict *v)
{
	*v = (struct policy_verdict){ 0 };
	if (!ps->authenticated || !ps->account)
		return;  /* unauthenticated mail is limited per connection instead */
	unsigned limit = account_limit(pc, ps->account, POLICY_LIMIT_MESSAGES_PER_HOUR,
	                               pc->messages_per_hour);
	if (!spend_hourly(st, 'm', ps->account, limit, now))
		refuse(v, 450, "4.7.1", "Message rate limit exceeded; try again later",
		       "message_rate");
}

void policy_check_rate_rcpt(const struct policy_conf *pc, struct policy_state *st,
                            const struct policy_session *ps, double now,
                            struct policy_verdict *v)
{
	*v = (struct policy_verdict){ 0 };
	if (!ps->authenticated || !ps->account)
		return;
	unsigned limit = account_limit(pc, ps->account, POLICY_LIMIT_RECIPIENTS_PER_HOUR,
	                               pc->recipients_per_hour);
	if (!spend_hourly(st, 'r', ps->account, limit, now))
		refuse(v, 450, "4.7.1", "Recipient rate limit exceeded; try again later",
		       "recipient_rate");
}
