/*
 * session.h - one client connection: the I/O glue (conn.c), the SMTP state
 * machine and command table (session.c), AUTH (session_auth.c) and the
 * message transfer (session_data.c). Private to server/.
 *
 * Ownership: a session is created by session_accept() and freed only in
 * the close callback of its TCP handle (libuv rule); work that completes
 * later looks it up by id and does nothing when it is gone.
 */
#ifndef POSTERN_SESSION_H
#define POSTERN_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "auth/auth.h"
#include "common/common.h"
#include "server/daemon.h"
#include "server/smtp_parse.h"
#include "tls/tls.h"
#include "trace/trace.h"
#include "dns/dns.h"

enum session_state {
	SS_HANDSHAKE,     /* TLS handshake in progress (smtps, after STARTTLS) */
	SS_COMMAND,       /* reading commands */
	SS_AUTH_WAIT,     /* a SASL step runs on the thread pool */
	SS_AUTH_INPUT,    /* waiting for the client's next AUTH response line */
	SS_AUTH_DELAY,    /* failed AUTH: the 535 waits out the delay */
	SS_SPOOL_WAIT,    /* the queue file is being created on the thread pool */
	SS_DATA,          /* receiving the DATA block */
	SS_BDAT,          /* receiving a BDAT chunk */
	SS_COMMIT_WAIT,   /* the spool makes the message durable */
	SS_CLOSING,       /* flushing the last reply, then close */
};

/* The transaction, MAIL to end of data; reset by tx_reset() alone. */
struct smtp_tx {
	bool active;              /* MAIL accepted */
	char qid[ID_LEN + 1];
	char *from;
	char **rcpts;
	size_t nrcpts;
	size_t rcpt_cap;
	bool smtputf8;
	bool eightbit;
	char *ret;
	char *envid;
	struct relay_spool_file *spool;
	struct smtp_data data;    /* DATA decoder */
	struct buf body;          /* decoded bytes not yet written */
	uint64_t bdat_left;       /* bytes of the current chunk still to read */
	bool bdat_last;
	bool bdat_started;
	bool bdat_failed;         /* a chunk was refused: discard until RSET */
	struct smtp_bdat bdat;    /* BDAT content scanner */
	bool io_error;            /* the spool file could not be written */
	char trace_id[TRACE_ID_LEN + 1];
	int64_t time;             /* arrival, as in the Received header */
	struct trace_scan *scan;  /* trace header and SHA-256, NULL when off */
	struct buf scanned;       /* scan output waiting for the spool */
	uint64_t size;            /* message bytes as spooled */
	struct buf headers;       /* the header block, for the header From check */
	bool headers_done;
	bool headers_cut;         /* longer than we keep: not checkable whole */
};

struct session {
	uv_tcp_t tcp;             /* first: the handle's data is the session */
	uv_timer_t timer;
	struct worker *w;
	struct listener *l;
	uint64_t id;
	char sid[24];
	uint64_t started_ms;      /* loop time of the accept, for session_lifetime */
	uint64_t data_bytes;      /* message bytes since the data timer last restarted */
	struct session *hnext;    /* worker bucket chain */
	enum session_state state;
	unsigned handles_open;    /* tcp + timer: freed when both are closed */

	char client_ip[64];
	unsigned client_port;
	char local_ip[64];
	unsigned local_port;

	struct tls *tls;          /* NULL before TLS */
	bool tls_ready;
	struct smtp_reader reader;
	struct buf out;           /* replies waiting for the next flush */
	bool reading;
	bool close_after_flush;
	bool write_blocked;       /* too many unsent replies: reading paused */
	bool counted;             /* counted by the policy's connection limits */
	/* smtps over a connection limit: the refusal waits for the handshake,
	 * so that the client can read it (a plaintext 421 would be garbage). */
	int refusal_code;
	const char *refusal_enh;  /* static */
	char *refusal_text;

	char *helo;
	bool esmtp;
	unsigned errors;
	bool shutting_down;      /* SIGTERM: 421 once the current step ends */

	struct auth_session *auth;
	bool auth_inflight;       /* a SASL step holds `auth` on a worker thread */
	char *auth_mech;
	char *account;            /* authenticated identity */
	unsigned auth_delay_ms;   /* before the 535 of a failed AUTH */

	/* DNS (session_dns.c) */
	bool rdns_pending;
	bool dnsbl_pending;
	bool dns_waiting;         /* a MAIL waits for the answers */
	bool dnsbl_undecided;     /* a zone could not be checked in time */
	char *client_name;        /* reverse name confirmed by a forward lookup */
	char *dnsbl_zone;         /* the zone that lists the client */
	char *dnsbl_txt;

	struct smtp_tx tx;
};

/* The listener's current policy (swapped on SIGHUP): take it for one
 * verdict, never keep it across an asynchronous step. */
static inline const struct policy_conf *session_policy(const struct session *s)
{
	return atomic_load(&s->l->policy);
}
/* Monotonic seconds, for rate limits. */
double session_now(void);

/* The timeouts that apply now: the stress ones above limits {
 * stress_threshold }. */
unsigned session_idle_timeout(const struct session *s);
unsigned session_data_timeout(const struct session *s);
/* Arms the timer for a wait on the client: never past the session's
 * lifetime (session_timeout then ends it). */
void session_wait_client(struct session *s, unsigned seconds);

/* conn.c */
/* A connection accepted on l: takes fd (closed on every path). */
void session_accept(struct worker *w, struct listener *l, int fd);
void session_send(struct session *s, int code, const char *enh, const char *fmt, ...)
	PRINTF_LIKE(4, 5);
void session_flush(struct session *s);
void session_close(struct session *s, bool after_flush);
void session_set_timeout(struct session *s, unsigned seconds);
void session_set_timeout_ms(struct session *s, uint64_t ms);
int session_start_tls(struct session *s);
void session_pause(struct session *s);
void session_resume(struct session *s);

/* session.c */
void session_greet(struct session *s);
void session_tls_ready(struct session *s);
void session_input(struct session *s, const char *data, size_t len);
void session_process(struct session *s);
void session_timeout(struct session *s);
void session_shutdown(struct session *s);
void session_free_state(struct session *s);
void tx_reset(struct smtp_tx *tx);
/* Replies with a refusal and logs it, without counting it as an error. */
void session_reject(struct session *s, int code, const char *enh, const char *fmt, ...)
	PRINTF_LIKE(4, 5);
/* Replies with an error and counts it; closes after too many. */
void session_error(struct session *s, int code, const char *enh, const char *fmt, ...)
	PRINTF_LIKE(4, 5);

/* session_auth.c */
void session_cmd_auth(struct session *s, struct smtp_cmd *cmd);
void session_auth_input(struct session *s, char *line, size_t len);
/* Ends an AUTH exchange without a reply (the caller answers). */
void session_auth_abort(struct session *s);

/* Records a refused attempt in the trace store (and nothing else). */
void session_trace_reject(struct session *s, const char *command, const char *rule, int code,
                          const char *enh, const char *text, const char *rcpt);

/* session_dns.c */
void session_dns_start(struct session *s);
/* True when the next command needs a DNS answer still due (MAIL the
 * DNSBL verdict, DATA/BDAT the reverse name): the caller stops processing
 * input until it comes. */
bool session_dns_hold(struct session *s);
/* At MAIL on mx: refuses a listed (or, per config, unchecked) client. */
bool session_dnsbl_refuse(struct session *s);

/* session_data.c */
void session_cmd_data(struct session *s, struct smtp_cmd *cmd);
void session_cmd_bdat(struct session *s, struct smtp_cmd *cmd);
/* Consumes message bytes from the reader in SS_DATA / SS_BDAT; returns
 * false when it needs more input. */
bool session_data_input(struct session *s);
void worker_commit_done(uv_async_t *async);

#endif
