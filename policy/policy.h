/*
 * policy.h - pure verdicts on a read-only description of the session and
 * the transaction. No I/O, no uv.h: table-driven tests call these directly.
 *
 * A verdict with code 0 accepts; otherwise code/enh/text are the SMTP
 * reply and rule names the rule for logs and statistics. Verdict strings
 * are static.
 */
#ifndef POSTERN_POLICY_H
#define POSTERN_POLICY_H

#include <stdbool.h>
#include <stddef.h>

struct policy_conf {
	bool require_auth;       /* submission, smtps */
	bool require_tls;        /* every listener: Postern takes mail only over TLS */
	bool local_only;         /* mx: recipients in local domains only */
	unsigned max_recipients;
	const char *const *local_domains;
	size_t nlocal_domains;
};

struct policy_session {
	bool tls;
	bool authenticated;
	const char *account;     /* authenticated identity or NULL */
};

struct policy_verdict {
	int code;                /* 0: accept */
	const char *enh;         /* "5.7.0" */
	const char *text;
	const char *rule;        /* "auth_required", "relay_denied", ... */
};

void policy_check_mail(const struct policy_conf *pc, const struct policy_session *ps,
                       const char *from, struct policy_verdict *v);
/* nrcpts: recipients already accepted in this transaction. */
void policy_check_rcpt(const struct policy_conf *pc, const struct policy_session *ps,
                       const char *rcpt, size_t nrcpts, struct policy_verdict *v);
/* Whether the domain of addr (after the last '@') is one of the local
 * domains, compared without case. */
bool policy_is_local(const struct policy_conf *pc, const char *addr);

#endif
