/*
 * auth.h - Cyrus SASL behind a small object (see Postfix xsasl.h).
 *
 * Every step answers AUTH_OK, AUTH_CONTINUE (send the challenge, read a
 * response), AUTH_FAIL (wrong credentials, unknown user, bad encoding) or
 * AUTH_TEMPFAIL (the backend is unavailable). auth_start()/auth_step() may
 * block on password backends: call them from a worker thread, never from an
 * event loop. One session is never used by two threads at once.
 *
 * The SMTP AUTH command itself (RFC 4954 syntax, "*" to cancel, 334/235
 * replies) lives in server/; this module takes and returns base64 text.
 *
 * Ownership: auth_session_new() returns a session owned by the caller,
 * freed by auth_session_free(). Strings returned by getters live as long
 * as the session.
 */
#ifndef POSTERN_AUTH_H
#define POSTERN_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include "common/common.h"

enum auth_result {
	AUTH_OK = 0,
	AUTH_CONTINUE = 1,
	AUTH_FAIL = 2,
	AUTH_TEMPFAIL = 3,
};

struct auth_conf {
	const char *service;    /* SASL service name, "smtp" */
	const char *app_name;   /* "postern": Cyrus reads <config_dir>/postern.conf */
	const char *config_dir; /* NULL: Cyrus's default search path */
	const char *sasldb;     /* sasldb path; NULL: Cyrus's default */
	const char *mech_list;  /* space-separated, e.g. "PLAIN LOGIN SCRAM-SHA-256" */
	bool cache;             /* remember PLAIN logins while the sasldb is unchanged */
};

/* Once per process, before any session. Returns 0 or -1 with err filled. */
int auth_init(const struct auth_conf *conf, char *err, size_t errlen);
void auth_shutdown(void);

struct auth_session;

/* local/remote are "ip;port" as Cyrus wants them; may be NULL. ssf is the
 * TLS cipher strength (bits) or 0; external_id is the identity taken from
 * a verified client certificate for EXTERNAL, or NULL. */
struct auth_session *auth_session_new(const char *server_fqdn, const char *local,
                                      const char *remote, unsigned ssf,
                                      const char *external_id);
void auth_session_free(struct auth_session *s);

/* Space-separated mechanisms this session offers (for EHLO). */
const char *auth_mechanisms(struct auth_session *s);
/* Whether mech (case-insensitive) is offered. */
bool auth_mech_offered(struct auth_session *s, const char *mech);

/* initial is the base64 initial response, "=" for an empty one, or NULL
 * when the client sent none. On AUTH_CONTINUE, challenge receives the
 * base64 challenge text (possibly empty). When the mechanism finishes with
 * server data (SCRAM's server-final message) the step answers
 * AUTH_CONTINUE with that data and the next step (the client's empty
 * response) answers AUTH_OK, as RFC 4954 requires. */
int auth_start(struct auth_session *s, const char *mech, const char *initial,
               struct buf *challenge);
int auth_step(struct auth_session *s, const char *response, struct buf *challenge);

/* The credential cache (auth/cache.h), for the event loop: these answer
 * true, with the session authenticated, when PLAIN data that Cyrus
 * accepted before comes again and the sasldb has not changed since; they
 * cost one stat() and an HMAC and never block. false: nothing happened,
 * run auth_start()/auth_step() on a worker as usual. */
bool auth_start_cached(struct auth_session *s, const char *mech, const char *initial);
bool auth_step_cached(struct auth_session *s, const char *response);
/* Whether this session's login came from the cache (auth_cache_enabled()
 * in auth/cache.h says whether there is one). */
bool auth_cached(struct auth_session *s);

/* After AUTH_OK: the account (the identity Cyrus reports, as
 * auth_account_name() names it: "alice" whether the client typed alice or
 * alice@<server name>) and the mechanism used; after a failure
 * auth_mech() names the mechanism tried. */
const char *auth_username(struct auth_session *s);
const char *auth_mech(struct auth_session *s);
/* After AUTH_FAIL/AUTH_TEMPFAIL: a short reason for the log (no secrets). */
const char *auth_error(struct auth_session *s);
/* After AUTH_FAIL: whether the client's data could not be decoded (a
 * syntax error, RFC 4954 501) rather than wrong credentials. */
bool auth_malformed(struct auth_session *s);
/* The user name the client tried, when known (NULL otherwise), for
 * throttling and logs: as typed, raw bytes up to the first NUL and at
 * most 256 of them (quote it with log_q()); and the account that name
 * would be, by the same rule as auth_username(), also when Cyrus refused
 * it. */
const char *auth_attempted_user(struct auth_session *s);
const char *auth_attempted_account(struct auth_session *s);

/* The account a user name stands for (account.c), realm being the server
 * name given to auth_session_new() (the configured hostname, the realm
 * of bare names in the sasldb): a user of that realm is its bare name
 * ("alice@MX.example" -> "alice"), a user of another realm is name@realm
 * with the realm in lower case ("carol@Example.ORG" ->
 * "carol@example.org"). The user part keeps its case, as Cyrus looks it
 * up; the first '@' splits, as Cyrus splits. The result is freed by the
 * caller; applied to its own result it changes nothing. */
char *auth_account_name(const char *name, const char *realm);

#endif
