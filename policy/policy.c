/*
 * policy.c - who may send, and to whom. Pure functions of their arguments;
 * the session turns a verdict into a reply. Nothing here allocates.
 */
#include "policy/policy.h"

#include <string.h>
#include <strings.h>

static void verdict(struct policy_verdict *v, int code, const char *enh,
                    const char *text, const char *rule)
{
	v->code = code;
	v->enh = enh;
	v->text = text;
	v->rule = rule;
}

void policy_check_mail(const struct policy_conf *pc, const struct policy_session *ps,
                       const char *from, struct policy_verdict *v)
{
	verdict(v, 0, NULL, NULL, NULL);
	if (pc->require_tls && !ps->tls)
		verdict(v, 530, "5.7.0", "Must issue a STARTTLS command first", "tls_required");
	else if (pc->require_auth && !ps->authenticated)
		verdict(v, 530, "5.7.0", "Authentication required", "auth_required");
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

void policy_check_rcpt(const struct policy_conf *pc, const struct policy_session *ps,
                       const char *rcpt, size_t nrcpts, struct policy_verdict *v)
{
	verdict(v, 0, NULL, NULL, NULL);
	if (nrcpts >= pc->max_recipients) {
		/* RFC 5321 4.5.3.1.8: 452 and the client sends the rest later. */
		verdict(v, 452, "4.5.3", "Too many recipients", "max_recipients");
		return;
	}
	/* RFC 5321 4.5.1: postmaster must always be accepted. */
	if (strcasecmp(rcpt, "postmaster") == 0)
		return;
	if (pc->local_only && !policy_is_local(pc, rcpt))
		verdict(v, 550, "5.7.1", "Relay access denied", "relay_denied");
	else if (!pc->local_only && pc->require_auth && !ps->authenticated)
		verdict(v, 530, "5.7.0", "Authentication required", "auth_required");
}
