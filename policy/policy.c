/*
 * policy.c - who may send, and to whom. Pure functions of their arguments;
 * the session turns a verdict into a reply. Also loads and frees the
 * reloadable tables as one unit.
 *
 * Rule names: tls_required, auth_required, trusted_network (an accepting
 * verdict: relay without AUTH from a trusted network, submission only),
 * sender_mismatch, null_sender, max_recipients, relay_denied,
 * untrusted_routing.
 *
 * policy_tables_load() returns tables freed with policy_tables_free().
 */
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"

static void verdict(struct policy_verdict *v, int code, const char *enh,
                    const char *text, const char *rule)
{
	v->code = code;
	v->enh = enh;
	v->text = text;
	v->rule = rule;
}

bool policy_is_trusted(const struct policy_conf *pc, const struct policy_session *ps)
{
	return pc->trusted && ps->client_ip && policy_netlist_match(pc->trusted, ps->client_ip);
}

static void not_owned(struct policy_verdict *v, const char *account)
{
	char acc[96];
	str_sanitize(acc, sizeof(acc), account, strlen(account));
	snprintf(v->textbuf, sizeof(v->textbuf), "Sender address not owned by %s", acc);
	verdict(v, 553, "5.7.1", v->textbuf, "sender_mismatch");
}

void policy_check_mail(const struct policy_conf *pc, const struct policy_session *ps,
                       const char *from, struct policy_verdict *v)
{
	verdict(v, 0, NULL, NULL, NULL);
	if (pc->require_tls && !ps->tls) {
		verdict(v, 530, "5.7.0", "Must issue a STARTTLS command first", "tls_required");
	} else if (pc->require_auth && !ps->authenticated) {
		/* local_only never relays, so a trusted client gains nothing there. */
		if (!pc->local_only && policy_is_trusted(pc, ps))
			verdict(v, 0, NULL, NULL, "trusted_network");
		else
			verdict(v, 530, "5.7.0", "Authentication required", "auth_required");
	} else if (pc->check_sender && ps->authenticated && ps->account &&
	           !policy_sender_owned(pc->sendermap, ps->account, from)) {
		if (from[0] == '\0' || strcmp(from, "<>") == 0)
			verdict(v, 553, "5.7.1", "Null sender not allowed for authenticated users",
			        "null_sender");
		else
			not_owned(v, ps->account);
	}
}

bool policy_is_local(const struct policy_conf *pc, const char *addr)
{
	const char *at = strrchr(addr, '@');
	const char *domain = at ? at + 1 : addr;
	for (size_t i = 0; i < pc->nlocal_domains; i++)
		if (strcasecmp(domain, pc->local_domains[i]) == 0)
			return true;
	return false;
}

/* Sender-specified routing: '%', '!' or '@' anywhere in the local part
 * (everything before the last '@'), inside quotes or escaped too, since a
 * downstream may unquote "victim@evil.example"@local and relay it. */
static bool routed(const char *rcpt)
{
	const char *at = strrchr(rcpt, '@');
	return at && strcspn(rcpt, "%!@") < (size_t)(at - rcpt);
}

void policy_check_rcpt(const struct policy_conf *pc, const struct policy_session *ps,
                       const char *rcpt, size_t nrcpts, struct policy_verdict *v)
{
	verdict(v, 0, NULL, NULL, NULL);
	unsigned max = pc->max_recipients;
	if (ps->authenticated && ps->account) {
		struct policy_account_limits al;
		policy_sendermap_limits(pc->sendermap, ps->account, &al);
		if (al.mask & POLICY_LIMIT_RECIPIENTS_PER_MESSAGE)
			max = al.recipients_per_message;
	}
	if (max && nrcpts >= max) {
		/* RFC 5321 4.5.3.1.8: 452 and the client sends the rest later. */
		verdict(v, 452, "4.5.3", "Too many recipients", "max_recipients");
		return;
	}
	/* RFC 5321 4.5.1: postmaster must always be accepted. */
	if (strcasecmp(rcpt, "postmaster") == 0)
		return;
	if (pc->local_only && !policy_is_local(pc, rcpt))
		verdict(v, 550, "5.7.1", "Relay access denied", "relay_denied");
	else if (pc->local_only && !pc->allow_untrusted_routing && routed(rcpt))
		verdict(v, 550, "5.7.1", "Relay access denied: routing in the local part",
		        "untrusted_routing");
	else if (!pc->local_only && pc->require_auth && !ps->authenticated) {
		if (policy_is_trusted(pc, ps))
			verdict(v, 0, NULL, NULL, "trusted_network");
		else
			verdict(v, 530, "5.7.0", "Authentication required", "auth_required");
	}
}

struct policy_tables *policy_tables_load(const char *sendermap_path,
                                         const char *const *trusted, size_t ntrusted,
                                         char *err, size_t errlen)
{
	struct policy_tables *t = xcalloc(1, sizeof(*t));
	if (sendermap_path && !(t->sendermap = policy_sendermap_load(sendermap_path, err, errlen)))
		goto fail;
	if (ntrusted) {
		char why[256];
		t->trusted = policy_netlist_parse(trusted, ntrusted, why, sizeof(why));
		if (!t->trusted) {
			snprintf(err, errlen, "trusted networks: %s", why);
			goto fail;
		}
	}
	return t;
fail:
	policy_tables_free(t);
	return NULL;
}

void policy_tables_free(struct policy_tables *t)
{
	if (!t)
		return;
	policy_sendermap_free(t->sendermap);
	policy_netlist_free(t->trusted);
	free(t);
}
