/*
 * reply.h - SMTP replies: the one formatter (RFC 5321 4.2 multi-line
 * replies, RFC 2034 enhanced status codes) and the catalogue of the
 * engine's own replies, so that a code, its enhanced code and its text
 * are written once.
 *
 * Ownership: the formatter appends to the caller's buffer and allocates
 * nothing that outlives the call; the catalogue is static.
 */
#ifndef POSTERN_SMTP_REPLY_H
#define POSTERN_SMTP_REPLY_H

#include <stdbool.h>
#include "common/common.h"

/* Appends "<code> <enh> <text>\r\n". enh may be NULL (greeting, EHLO).
 * Lines of text separated by '\n' become a multi-line reply
 * ("250-first", ..., "250 last"). Control characters in text are replaced
 * so a reply can never be split or injected. */
void reply_append(struct buf *out, int code, const char *enh, const char *fmt, ...)
	PRINTF_LIKE(4, 5);
void reply_vappend(struct buf *out, int code, const char *enh, const char *fmt, va_list ap);

/* The engine's refusals. rule: for the trace store and statistics, NULL
 * for plain protocol errors (which are logged, not recorded). */
enum smtp_reply_id {
	SMTP_R_UNKNOWN_COMMAND,
	SMTP_R_SYNTAX,
	SMTP_R_BAD_SENDER_SYNTAX,
	SMTP_R_BAD_RCPT_SYNTAX,
	SMTP_R_UNKNOWN_PARAM,
	SMTP_R_NON_ASCII,
	SMTP_R_LINE_TOO_LONG,
	SMTP_R_BARE_NEWLINE_COMMAND,
	SMTP_R_NEED_HELO,
	SMTP_R_NEED_MAIL,
	SMTP_R_NESTED_MAIL,
	SMTP_R_NO_RECIPIENTS,
	SMTP_R_DATA_AFTER_BDAT,
	SMTP_R_BDAT_FAILED,
	SMTP_R_BINARYMIME,
	SMTP_R_DSN_PARAM,
	SMTP_R_SIZE,
	SMTP_R_EXPN,
	SMTP_R_TLS_ACTIVE,
	SMTP_R_NO_STARTTLS,
	SMTP_R_AUTH_NOT_ENABLED,
	SMTP_R_AUTH_NEEDS_TLS,
	SMTP_R_AUTH_ALREADY,
	SMTP_R_AUTH_IN_TRANSACTION,
	SMTP_R_AUTH_TEMPFAIL,
	SMTP_R_AUTH_MECH,
	SMTP_R_AUTH_MALFORMED,
	SMTP_R_AUTH_CANCELLED,
	SMTP_R_AUTH_FAILED,
	SMTP_R_QUEUE_ERROR,
	SMTP_R_QUEUE_UNAVAILABLE,
	SMTP_R_UNRECORDED,
	SMTP_R_CONTENT_SIZE,
	SMTP_R_CONTENT_BARE_NEWLINE,
	SMTP_R_CONTENT_LONG_LINE,
	SMTP_R_CONTENT_NUL,
	SMTP_R_TOO_MANY_ERRORS,
	SMTP_R_TIMEOUT,
	SMTP_R_LIFETIME,
	SMTP_R_SHUTDOWN,
	SMTP_R_COUNT
};

struct smtp_reply_def {
	int code;
	const char *enh;         /* NULL: no enhanced code */
	const char *text;        /* a printf format for the few with an argument */
	const char *rule;
	bool closes;             /* the connection ends after it */
};

const struct smtp_reply_def *smtp_reply_def(enum smtp_reply_id id);

#endif
