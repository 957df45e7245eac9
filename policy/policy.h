/*
 * policy.h - pure verdicts on a read-only description of the session and
 * the transaction. No I/O, no uv.h: table-driven tests call these directly.
 *
 * A verdict with code 0 accepts; otherwise code/enh/text are the SMTP
 * reply and rule names the rule for logs and statistics. An accepting
 * verdict may still name a rule ("trusted_network") for the log.
 * Verdict strings are static, except that text may point into the
 * verdict's own textbuf: use a verdict where it was filled, do not copy it.
 *
 * Three kinds of objects:
 *   - struct policy_conf: numbers and switches per listener, plus pointers
 *     to the tables (sender map, trusted networks). Rebuilt on reload.
 *   - struct policy_tables: the loaded files, owned by whoever loaded them;
 *     freed only when no session can still read them (the server's grace).
 *   - struct policy_state: the shared mutable counters (rate limiter,
 *     connection counts, auth guard). Created once, survives reloads,
 *     safe to use from every event loop at once.
 * Times ("now") are monotonic seconds supplied by the caller.
 */
#ifndef POSTERN_POLICY_H
#define POSTERN_POLICY_H

#include <stdbool.h>
#include <stddef.h>

struct policy_sendermap;
struct policy_netlist;
struct policy_limiter;
struct policy_conncount;
struct policy_authguard;

struct policy_conf {
	bool require_auth;       /* submission, smtps */
	bool require_tls;        /* every listener: Postern takes mail only over TLS */
	bool local_only;         /* mx: recipients in local domains only */
	/* mx: accept '%', '!' and '@' in a local part (sender-specified
	 * routing, which a downstream may honour: Postfix's setting of the
	 * same name). */
	bool allow_untrusted_routing;
	unsigned max_recipients; /* per message; 0: unlimited */
	const char *const *local_domains;
	size_t nlocal_domains;

	/* Sender ownership (listeners that require AUTH). */
	bool check_sender;       /* MAIL FROM must be owned by the account */
	bool check_header_from;  /* so must every mailbox of the header From */
	const struct policy_sendermap *sendermap;  /* NULL: default rule only */
	/* Clients that may relay without AUTH on submission (never on mx). */
	const struct policy_netlist *trusted;      /* NULL: nobody */

	/* Rate limits; 0: unlimited. The sender map may override the
	 * per-account ones (!limit lines). */
	unsigned messages_per_hour;        /* per account */
	unsigned recipients_per_hour;      /* per account */
	unsigned max_conn_per_ip;          /* concurrent, all listeners */
	unsigned max_conn_total;           /* concurrent, all listeners */
	unsigned conn_per_ip_per_minute;   /* new connections */

	/* Failed AUTH throttling; 0 disables the matching part. */
	unsigned auth_max_failures;  /* per (client IP, account) within the window */
	unsigned auth_window;        /* seconds a failure is remembered */
	unsigned auth_lockout;       /* seconds a pair stays locked */
	unsigned auth_ip_budget;     /* failures per IP, any account, within the window */
	unsigned auth_ip_lockout;    /* seconds an IP stays locked; 0: auth_lockout */
	unsigned auth_delay_ms;      /* delay before 535, doubled per recent failure */
	unsigned auth_delay_max_ms;  /* cap of that delay */
};

struct policy_session {
	bool tls;
	bool authenticated;
	const char *account;     /* authenticated identity or NULL */
	const char *client_ip;   /* textual IPv4/IPv6, or NULL */
};

struct policy_verdict {
	int code;                /* 0: accept */
	const char *enh;         /* "5.7.0" */
	const char *text;
	const char *rule;        /* "auth_required", "relay_denied", ... */
	char textbuf[200];       /* text naming the account, when there is one */
};

/* ---- verdicts (policy.c) ---------------------------------------------------- */

/* MAIL: tls_required, auth_required (530); sender_mismatch, null_sender
 * (553 5.7.1) when pc->check_sender and the session is authenticated.
 * from is the path without brackets, "" for the null sender. */
void policy_check_mail(const struct policy_conf *pc, const struct policy_session *ps,
                       const char *from, struct policy_verdict *v);
/* RCPT: max_recipients (452 4.5.3), relay_denied and untrusted_routing
 * (550 5.7.1), auth_required (530). nrcpts: recipients already accepted
 * in this transaction. */
void policy_check_rcpt(const struct policy_conf *pc, const struct policy_session *ps,
                       const char *rcpt, size_t nrcpts, struct policy_verdict *v);
/* Whether the domain of addr (after the last '@') is one of the local
 * domains, compared without case. */
bool policy_is_local(const struct policy_conf *pc, const char *addr);
/* Whether the session's client is in pc->trusted. */
bool policy_is_trusted(const struct policy_conf *pc, const struct policy_session *ps);

/* ---- header From (header_from.c) -------------------------------------------- */

/* With pc->check_header_from and an authenticated session: the header
 * block (the whole header section as received, CRLF or LF, folded or not;
 * the caller refuses a message whose header section it could not keep
 * whole) must have exactly one From field, header_from_multiple (554
 * 5.6.0), and every mailbox in it must be owned by the account:
 * header_from_mismatch (553 5.7.1), header_from_missing (550 5.6.0: no
 * From field or no mailbox in it). Returns v->code. */
int policy_check_header_from(const struct policy_conf *pc, const struct policy_session *ps,
                             const char *header_block, size_t len, struct policy_verdict *v);
/* The mailboxes of every From field, for tests and logs: calls fn with
 * each addr-spec (not NUL-terminated; "" for <>). Returns how many, -1
 * when there is no From field. */
int policy_header_from_each(const char *header_block, size_t len,
                            void (*fn)(const char *addr, size_t alen, void *arg), void *arg);

/* ---- sender map (sendermap.c) ----------------------------------------------- */

/* Loads a sender map; NULL with "path:line: reason" in err on failure.
 * The caller frees the result with policy_sendermap_free(). */
struct policy_sendermap *policy_sendermap_load(const char *path, char *err, size_t errlen);
void policy_sendermap_free(struct policy_sendermap *m);
/* Whether account may use sender ("" or "<>": the null sender). m may be
 * NULL: then an account named like an address owns exactly that address. */
bool policy_sender_owned(const struct policy_sendermap *m, const char *account,
                         const char *sender);

/* Per-account limits from "!limit" lines; a field applies only when its
 * bit is set in mask, and then 0 means unlimited. */
enum {
	POLICY_LIMIT_MESSAGES_PER_HOUR = 1u << 0,
	POLICY_LIMIT_RECIPIENTS_PER_HOUR = 1u << 1,
	POLICY_LIMIT_RECIPIENTS_PER_MESSAGE = 1u << 2,
};
struct policy_account_limits {
	unsigned mask;
	unsigned messages_per_hour;
	unsigned recipients_per_hour;
	unsigned recipients_per_message;
};
/* Fills *out (mask 0 when the account has no !limit line). m may be NULL. */
void policy_sendermap_limits(const struct policy_sendermap *m, const char *account,
                             struct policy_account_limits *out);

/* ---- networks (netlist.c) --------------------------------------------------- */

/* Parses "10.0.0.0/8", "2001:db8::/32", "192.0.2.7" (a host). NULL with
 * "cidr: reason" in err on a bad entry; free with policy_netlist_free(). */
struct policy_netlist *policy_netlist_parse(const char *const *cidrs, size_t n, char *err,
                                            size_t errlen);
void policy_netlist_free(struct policy_netlist *nl);
/* An IPv4-mapped IPv6 client (::ffff:a.b.c.d) matches IPv4 entries. */
bool policy_netlist_match(const struct policy_netlist *nl, const char *ip);

/* The key per-address counters use for a client (connections, connection
 * rate, AUTH budget and lockouts): an IPv4 address as it is, an
 * IPv4-mapped one as IPv4, an IPv6 address as its network under
 * ipv6_prefix (1..128) in canonical text, "2001:db8:1::/64" (one
 * subscriber gets a /64 and can pick any address in it), or the address
 * itself at 128. Anything else is copied, cut to fit. out gets at most
 * size bytes, NUL included. */
#define POLICY_IPV6_PREFIX 64
#define POLICY_CLIENT_KEY_MAX 64
void policy_client_key(const char *ip, unsigned ipv6_prefix, char *out, size_t size);

/* ---- reloadable tables (policy.c) -------------------------------------------- */

struct policy_tables {
	struct policy_sendermap *sendermap;   /* NULL without a sender map file */
	struct policy_netlist *trusted;       /* NULL without trusted networks */
};
/* Loads everything or nothing: on error returns NULL, err says why and the
 * caller keeps its old tables. sendermap_path may be NULL. */
struct policy_tables *policy_tables_load(const char *sendermap_path,
                                         const char *const *trusted, size_t ntrusted,
                                         char *err, size_t errlen);
void policy_tables_free(struct policy_tables *t);

/* ---- rate limiter (limiter.c) ------------------------------------------------- */

/* Token buckets by key (case-insensitive), sharded, bounded in memory. */
struct policy_limiter *policy_limiter_new(void);
void policy_limiter_free(struct policy_limiter *l);
/* Takes n tokens from key's bucket (rate tokens per second, at most burst)
 * if it holds them; otherwise takes nothing, sets *retry_after (seconds;
 * -1 when n exceeds burst; may be NULL) and returns false. A rate or burst
 * of 0 means no limit. */
bool policy_limiter_take(struct policy_limiter *l, const char *key, double rate_per_sec,
                         double burst, double n, double now, double *retry_after);
size_t policy_limiter_size(struct policy_limiter *l);

/* ---- concurrent connections (conncount.c) ------------------------------------ */

/* Counts per client key (policy_client_key with ipv6_prefix). */
struct policy_conncount *policy_conncount_new(unsigned ipv6_prefix);
void policy_conncount_free(struct policy_conncount *cc);
/* Both return the IP's new count; *total (may be NULL) gets the new total. */
unsigned policy_conncount_inc(struct policy_conncount *cc, const char *ip, unsigned *total);
unsigned policy_conncount_dec(struct policy_conncount *cc, const char *ip, unsigned *total);

/* ---- auth guard (authguard.c) ---------------------------------------------------- */

/* Counts per client key (policy_client_key with ipv6_prefix). */
struct policy_authguard *policy_authguard_new(unsigned ipv6_prefix);
void policy_authguard_free(struct policy_authguard *g);
/* An attempt names an account (auth_account_name(): one name for every
 * spelling) and typed, the name as the client spelled it; failures count
 * under both (once when they are the same, without case), so that
 * guesses under several spellings add up and a lock on either holds.
 * Either may be NULL.
 *
 * Before the SASL exchange (both NULL): the IP's lockout only,
 * auth_ip_locked (421 4.7.0: answer and close). Once the exchange decoded
 * the name: also the pairs' lockouts, auth_locked (454 4.7.0). */
void policy_auth_check(struct policy_authguard *g, const struct policy_conf *pc, const char *ip,
                       const char *account, const char *typed, double now,
                       struct policy_verdict *v);
/* Records a failure (no names when none was decoded) and returns the
 * milliseconds to wait before answering 535, from the higher count.
 * Logs "event=auth_lockout" when it arms a lockout. */
unsigned policy_auth_failed(struct policy_authguard *g, const struct policy_conf *pc,
                            const char *ip, const char *account, const char *typed, double now);
/* Forgets the failures of the names of a successful login. */
void policy_auth_succeeded(struct policy_authguard *g, const char *ip, const char *account,
                           const char *typed);

/* ---- shared state and the checks that use it (limits.c) ---------------------- */

struct policy_state {
	struct policy_limiter *limiter;
	struct policy_conncount *conns;
	struct policy_authguard *guard;
	unsigned ipv6_prefix;  /* of every per-address key; fixed for the state's life */
};
/* ipv6_prefix (1..128, POLICY_IPV6_PREFIX) is fixed here, not in
 * struct policy_conf: the counters outlive reloads, and a connection must
 * be counted out under the key it was counted in. */
struct policy_state *policy_state_new(unsigned ipv6_prefix);
void policy_state_free(struct policy_state *st);

/* At accept: connection_rate, max_connections, max_connections_per_ip
 * (421 4.7.0). Counts the connection only when it accepts; the server then
 * calls policy_note_disconnect() exactly once when it closes. */
void policy_check_connect(const struct policy_conf *pc, struct policy_state *st, const char *ip,
                          double now, struct policy_verdict *v);
void policy_note_disconnect(struct policy_state *st, const char *ip);
/* After policy_check_mail accepted, authenticated sessions only:
 * message_rate (450 4.7.1). Spends one message of the account's hour. */
void policy_check_rate_message(const struct policy_conf *pc, struct policy_state *st,
                               const struct policy_session *ps, double now,
                               struct policy_verdict *v);
/* After policy_check_rcpt accepted: recipient_rate (450 4.7.1). */
void policy_check_rate_rcpt(const struct policy_conf *pc, struct policy_state *st,
                            const struct policy_session *ps, double now,
                            struct policy_verdict *v);

/* ---- in the phase pipeline (hook.c) -------------------------------------- */

/* Connection limits (CONNECT; the count is released when the session ends),
 * the AUTH guard (AUTH), sender ownership and the message rate (MAIL), relay
 * rules and the recipient rate (RCPT), the header From (EOM). Borrows pc and
 * st, which outlive it. */
struct hook_ops;
struct policy_hook;
struct policy_hook *policy_hook_new(const struct policy_conf *pc, struct policy_state *st);
void policy_hook_free(struct policy_hook *h);
extern const struct hook_ops policy_hook_ops;

#endif
