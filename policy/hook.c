/*
 * hook.c - the policy verdicts in the phase pipeline: connection limits at
 * CONNECT (and the count's release when the session ends), the AUTH guard
 * before and after the exchange, sender ownership and the message rate at
 * MAIL, relay rules and the recipient rate at RCPT, the header From at
 * EOM. The verdicts themselves stay pure (policy.c, limits.c, ...); this
 * file only turns them into hook verdicts.
 *
 * Ownership: policy_hook_new() returns an object owned by the caller that
 * borrows pc and st; they outlive it (the runtime generation holds pc,
 * the daemon st).
 */
#include "policy/policy.h"
#include "hook/hook.h"
#include "common/common.h"

#include <stdlib.h>
#include <string.h>

struct policy_hook {
	const struct policy_conf *pc;
	struct policy_state *st;
};

struct policy_hook_state {
	bool counted;            /* by the connection limits */
	char ip[64];
};

struct policy_hook *policy_hook_new(const struct policy_conf *pc, struct policy_state *st)
{
	struct policy_hook *h = xcalloc(1, sizeof(*h));
	h->pc = pc;
	h->st = st;
	return h;
}

void policy_hook_free(struct policy_hook *h)
{
	free(h);
}

static enum hook_result verdict(const struct policy_verdict *pv, struct hook_verdict *out)
{
	if (pv->code == 0)
		return HOOK_OK;
	hook_verdict_set(out, pv->code, pv->enh, pv->rule, "%s", pv->text ? pv->text : "Refused");
	return out->result;
}

static void session_of(const struct hook_view *v, struct policy_session *ps)
{
	ps->tls = v->tls != NULL;
	ps->authenticated = v->account != NULL;
	ps->account = v->account;
	ps->client_ip = v->client_ip;
}

static enum hook_result check_auth(struct policy_hook *h, const struct hook_view *v,
                                   struct hook_verdict *out)
{
	struct policy_verdict pv;
	const char *account = v->auth_outcome ? v->arg : NULL;
	policy_auth_check(h->st->guard, h->pc, v->client_ip, account, v->auth_typed, v->now, &pv);
	if (pv.code) {
		enum hook_result r = verdict(&pv, out);
		return pv.code == 421 ? HOOK_DROP : r;
	}
	if (v->auth_outcome > 0) {
		policy_auth_succeeded(h->st->guard, v->client_ip, account, v->auth_typed);
	} else if (v->auth_outcome < 0) {
		/* The delay grows with the failures of this (address, account). */
		unsigned ms = policy_auth_failed(h->st->guard, h->pc, v->client_ip,
		                                 account ? account : "", v->auth_typed, v->now);
		hook_verdict_set(out, 535, "5.7.8", "auth_failed", "Authentication credentials invalid");
		out->delay_ms = ms;
		return HOOK_PERM;
	}
	return HOOK_OK;
}

static enum hook_result check_header_from(struct policy_hook *h, const struct hook_view *v,
                                          struct hook_verdict *out)
{
	if (!h->pc->check_header_from || !v->account)
		return HOOK_OK;
	if (v->header_cut) {
		/* A field past what was kept (a second From, or the rest of this
		 * one) would go unchecked: refuse rather than check a part. */
		hook_verdict_set(out, 552, "5.3.4", "header_too_big",
		                 "Message header section too large to check (64 KiB)");
		return HOOK_PERM;
	}
	struct policy_session ps = { .tls = true, .authenticated = true, .account = v->account,
		                     .client_ip = v->client_ip };
	struct policy_verdict pv;
	policy_check_header_from(h->pc, &ps, v->header, v->header_len, &pv);
	return verdict(&pv, out);
}

static enum hook_result policy_check(void *self, void *state, enum hook_phase phase,
                                     const struct hook_view *v, struct hook_token t,
                                     struct hook_verdict *out)
{
	struct policy_hook *h = self;
	struct policy_hook_state *hs = state;
	struct policy_session ps;
	struct policy_verdict pv;
	session_of(v, &ps);
	switch (phase) {
	case HOOK_CONNECT:
		policy_check_connect(h->pc, h->st, v->client_ip, v->now, &pv);
		if (pv.code == 0) {
			hs->counted = true;
			str_lcpy(hs->ip, v->client_ip, sizeof(hs->ip));
			return HOOK_OK;
		}
		verdict(&pv, out);
		return HOOK_DROP;
	case HOOK_AUTH:
		return check_auth(h, v, out);
	case HOOK_MAIL:
		policy_check_mail(h->pc, &ps, v->arg, &pv);
		if (pv.code == 0 && pv.rule) /* accepted by an exception: say which */
			log_info("event=policy sid=%s client=%s rule=%s", v->sid, v->client_ip, pv.rule);
		if (pv.code == 0)
			policy_check_rate_message(h->pc, h->st, &ps, v->now, &pv);
		return verdict(&pv, out);
	case HOOK_RCPT:
		policy_check_rcpt(h->pc, &ps, v->arg, v->nrcpts, &pv);
		if (pv.code == 0)
			policy_check_rate_rcpt(h->pc, h->st, &ps, v->now, &pv);
		if (pv.code == 452 && pv.enh && strcmp(pv.enh, "4.5.3") == 0) {
			/* RFC 5321 4.5.3.1.10: "too many recipients" asks the client
			 * to send the rest in another transaction; it is not the
			 * client's error and must not end a pipelined session. */
			enum hook_result r = verdict(&pv, out);
			out->not_an_error = true;
			return r;
		}
		return verdict(&pv, out);
	case HOOK_EOM:
		return check_header_from(h, v, out);
	default:
		return HOOK_OK;
	}
}

static void policy_close(void *self, void *state)
{
	struct policy_hook *h = self;
	struct policy_hook_state *hs = state;
	if (hs->counted)
		policy_note_disconnect(h->st, hs->ip);
}

const struct hook_ops policy_hook_ops = {
	.name = "policy",
	.phases = HOOK_BIT(HOOK_CONNECT) | HOOK_BIT(HOOK_AUTH) | HOOK_BIT(HOOK_MAIL) |
	          HOOK_BIT(HOOK_RCPT) | HOOK_BIT(HOOK_EOM),
	.state_size = sizeof(struct policy_hook_state),
	.check = policy_check,
	.close = policy_close,
};
