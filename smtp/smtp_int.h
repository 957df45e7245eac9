/*
 * smtp_int.h - what the engine's files share: the session, its
 * transaction, the command table's row, and the helpers every verb uses
 * (the one state transition, the one refusal, the one resume).
 *
 * Ownership: a session owns its transaction's strings, its reader, its
 * hook session and facts, and whatever it holds of the services (the SASL
 * object while no step runs, the queue file until the commit takes it).
 */
#ifndef POSTERN_SMTP_INT_H
#define POSTERN_SMTP_INT_H

#include "smtp/smtp.h"
#include "smtp/parse.h"
#include "smtp/reply.h"
#include "msg/msg.h"

/* The session's states; smtp__enter() is the only writer. */
enum smtp_state {
	SMTP_S_NEW,          /* before smtp_session_start */
	SMTP_S_HANDSHAKE,    /* TLS handshake (smtps at first, after STARTTLS) */
	SMTP_S_COMMAND,
	SMTP_S_AUTH_INPUT,   /* the client's next AUTH response line */
	SMTP_S_WAIT,         /* our own work (see enum smtp_wait); input paused */
	SMTP_S_DATA,
	SMTP_S_BDAT,         /* a chunk announced by BDAT */
	SMTP_S_CLOSING,      /* the last replies leave, then the close */
};

enum smtp_wait {
	SMTP_W_NONE,
	SMTP_W_HOOK,         /* a check answered PENDING */
	SMTP_W_AUTH,         /* a SASL step runs elsewhere */
	SMTP_W_AUTH_DELAY,   /* a failed AUTH's reply waits out its delay */
	SMTP_W_QUEUE_OPEN,   /* the queue file is being made */
	SMTP_W_QUEUE_COMMIT, /* the message is being made durable */
};

/* Continues a phase once its checks have answered. */
typedef void (*smtp_then_fn)(struct smtp_session *s, const struct hook_verdict *v);

/* The transaction, MAIL to the end of data; reset by smtp__tx_reset() alone. */
struct smtp_tx {
	bool active;             /* MAIL accepted */
	char qid[ID_LEN + 1];
	char *from;
	char **rcpts;
	size_t nrcpts;
	size_t rcpt_cap;
	uint64_t mail_size;
	bool smtputf8;
	bool eightbit;
	int64_t time;            /* arrival, as in the Received header */
	void *file;              /* the queue file, until the commit takes it */
	struct msg_pipe *pipe;   /* the message's stages, to the queue file */
	struct msg_headers headers;
	struct smtp_data data;   /* DATA decoder */
	struct smtp_bdat bdat;   /* BDAT content scanner */
	struct buf body;         /* decoded bytes not yet through the pipe */
	struct buf out;          /* piped bytes not yet written */
	uint64_t size;           /* message bytes from the client */
	uint64_t bdat_left;      /* bytes of the current chunk still to read */
	bool bdat_last;
	bool bdat_started;
	bool bdat_failed;        /* a chunk was refused: discard until RSET */
	bool io_error;           /* the queue file could not be written */
	void *rider;             /* a record to make durable with the file */
};

struct smtp_session {
	const struct smtp_config *cfg;
	const struct smtp_io *io;
	void *c;                 /* the transport's connection */
	void *route;
	uint64_t id;
	char sid[24];
	struct smtp_peer peer;
	uint64_t started_ms;
	uint64_t data_bytes;     /* message bytes since the data timer restarted */

	enum smtp_state state;
	enum smtp_wait wait;
	enum smtp_state wait_from;   /* the state a wait began in */
	uint32_t seq;            /* of the current wait: older answers are dropped */
	enum hook_phase wait_phase;
	unsigned wait_hook;
	smtp_then_fn then;
	bool reading;            /* what the engine asked of the transport */
	bool closing;
	bool shutting_down;      /* stop: 421 once the step in flight ends */
	bool refusal_pending;    /* smtps refused at connect: say so after TLS */
	struct hook_verdict refusal;

	struct smtp_reader reader;
	const struct hook_tls *tls;   /* NULL before TLS */
	bool tls_started;

	char *helo;
	bool esmtp;
	unsigned errors;

	void *auth;              /* the SASL object while no step runs */
	char *auth_mech;
	char *account;
	char *auth_typed;        /* the name the exchange tried */
	char *auth_attempted;    /* the account that name is, or would be */
	int auth_outcome;        /* HOOK_AUTH's view: 0, 1 accepted, -1 refused */
	bool auth_cached;        /* the accepted login came from the credential cache */

	/* The command being run: the reader's line, or, once its checks
	 * pended, a copy of the line with its parse (held). */
	const struct smtp_cmd *cmd;
	char *held_line;
	size_t held_len;
	struct smtp_cmd held;

	struct hook_session *hooks;
	struct hook_facts facts;
	struct smtp_tx tx;
};

/* One row per verb: when it is allowed, a pure check of the command in
 * the session, the phase whose hooks run next, and the step that does
 * the work. */
#define SMTP_CMD_NEED_HELO 0x1
struct smtp_command {
	enum smtp_verb verb;
	unsigned flags;
	/* 0, or the refusal (*id) that answers the command. */
	int (*check)(struct smtp_session *s, const struct smtp_cmd *cmd, enum smtp_reply_id *id);
	enum hook_phase phase;   /* HOOK_NPHASES: none */
	void (*proceed)(struct smtp_session *s, const struct smtp_cmd *cmd);
};
const struct smtp_command *smtp__command(enum smtp_verb verb);

/* ---- session.c: states, phases, refusals ------------------------------------- */

void smtp__enter(struct smtp_session *s, enum smtp_state state);
/* Runs phase's checks; calls then now, or later when they have answered. */
void smtp__phase(struct smtp_session *s, enum hook_phase phase, const char *arg,
                 smtp_then_fn then);
/* Waits for a service's answer; returns the token that finds this wait. */
struct smtp_token smtp__wait(struct smtp_session *s, enum smtp_wait w);
/* Input goes on after a wait (the one resume): reading, buffered
 * commands, the reply flush. */
void smtp__continue(struct smtp_session *s);
void smtp__view(struct smtp_session *s, enum hook_phase phase, const char *arg,
                struct hook_view *v);
void smtp__send(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
	PRINTF_LIKE(4, 5);
/* A refusal: the reply, the log line, the observers (and the error count
 * unless v->not_an_error; a DROP closes). */
void smtp__refuse(struct smtp_session *s, enum hook_phase phase, const struct hook_verdict *v);
/* A refusal from the catalogue (fmt_arg for the few with an argument). */
void smtp__error(struct smtp_session *s, enum hook_phase phase, enum smtp_reply_id id,
                 const char *fmt_arg);
void smtp__observe_ok(struct smtp_session *s, enum hook_phase phase, const char *arg);
void smtp__close(struct smtp_session *s, bool after_flush);
void smtp__set_timer(struct smtp_session *s, unsigned seconds);
void smtp__wait_client(struct smtp_session *s, unsigned seconds);
unsigned smtp__idle_timeout(const struct smtp_session *s);
unsigned smtp__data_timeout(const struct smtp_session *s);
void smtp__greet(struct smtp_session *s);
int smtp__start_tls(struct smtp_session *s);
bool smtp__tls_active(const struct smtp_session *s);
double smtp__now(void);

/* ---- tx.c ------------------------------------------------------------------------------ */

void smtp__tx_reset(struct smtp_session *s);

/* ---- commands.c, mail.c, auth.c, data.c -------------------------------------------------- */

void smtp__command_line(struct smtp_session *s, char *line, size_t len);
void smtp__auth_line(struct smtp_session *s, char *line, size_t len);
void smtp__auth_abort(struct smtp_session *s);
void smtp__auth_done(struct smtp_session *s, const struct smtp_auth_answer *a);
void smtp__auth_delay_done(struct smtp_session *s);
/* Consumes message bytes in SMTP_S_DATA / SMTP_S_BDAT; false when more
 * input is needed. */
bool smtp__data_input(struct smtp_session *s);
void smtp__queue_opened(struct smtp_session *s, void *file, int status);
void smtp__queue_committed(struct smtp_session *s, int status, bool unrecorded);

int smtp__check_mail(struct smtp_session *s, const struct smtp_cmd *cmd,
                     enum smtp_reply_id *id);
void smtp__proceed_mail(struct smtp_session *s, const struct smtp_cmd *cmd);
int smtp__check_rcpt(struct smtp_session *s, const struct smtp_cmd *cmd,
                     enum smtp_reply_id *id);
void smtp__proceed_rcpt(struct smtp_session *s, const struct smtp_cmd *cmd);
int smtp__check_auth(struct smtp_session *s, const struct smtp_cmd *cmd,
                     enum smtp_reply_id *id);
void smtp__proceed_auth(struct smtp_session *s, const struct smtp_cmd *cmd);
int smtp__check_data(struct smtp_session *s, const struct smtp_cmd *cmd,
                     enum smtp_reply_id *id);
void smtp__proceed_data(struct smtp_session *s, const struct smtp_cmd *cmd);
void smtp__bdat(struct smtp_session *s, const struct smtp_cmd *cmd);

#endif
