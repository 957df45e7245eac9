/*
 * reply.c - formats SMTP replies (RFC 5321 4.2, RFC 2034) and keeps the
 * catalogue of the engine's own. Writes into the caller's buffer;
 * allocates nothing that outlives the call.
 */
#include "smtp/reply.h"

#include <stdio.h>
#include <string.h>

static void reply_line(struct buf *out, int code, char sep, const char *enh,
                       const char *text, size_t len)
{
	buf_printf(out, "%03d%c", code, sep);
	if (enh)
		buf_printf(out, "%s ", enh);
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		buf_append(out, ((unsigned char)c < 0x20 || c == 0x7f) ? "?" : &c, 1);
	}
	buf_puts(out, "\r\n");
}

void reply_vappend(struct buf *out, int code, const char *enh, const char *fmt, va_list ap)
{
	char text[2048];
	vsnprintf(text, sizeof(text), fmt, ap);
	const char *p = text;
	for (;;) {
		const char *nl = strchr(p, '\n');
		if (!nl) {
			reply_line(out, code, ' ', enh, p, strlen(p));
			return;
		}
		reply_line(out, code, '-', enh, p, (size_t)(nl - p));
		p = nl + 1;
	}
}

void reply_append(struct buf *out, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_vappend(out, code, enh, fmt, ap);
	va_end(ap);
}

/* ---- the catalogue --------------------------------------------------------- */

static const struct smtp_reply_def defs[SMTP_R_COUNT] = {
	[SMTP_R_UNKNOWN_COMMAND] = { 500, "5.5.2", "Error: command not recognized", NULL, false },
	[SMTP_R_SYNTAX] = { 501, "5.5.4", "Syntax error in parameters or arguments", NULL, false },
	[SMTP_R_BAD_SENDER_SYNTAX] = { 501, "5.1.7", "Bad address syntax", NULL, false },
	[SMTP_R_BAD_RCPT_SYNTAX] = { 501, "5.1.3", "Bad address syntax", NULL, false },
	[SMTP_R_UNKNOWN_PARAM] = { 555, "5.5.4", "Unsupported option", NULL, false },
	[SMTP_R_NON_ASCII] = { 553, "5.6.7", "Non-ASCII address requires SMTPUTF8", NULL, false },
	[SMTP_R_LINE_TOO_LONG] = { 500, "5.5.2", "Error: line too long", NULL, false },
	/* SMTP smuggling: never accept a line end other than CRLF. */
	[SMTP_R_BARE_NEWLINE_COMMAND] = { 500, "5.5.2",
		"Error: bare CR or LF received (RFC 5321 2.3.8)", NULL, false },
	[SMTP_R_NEED_HELO] = { 503, "5.5.1", "Error: send HELO/EHLO first", NULL, false },
	[SMTP_R_NEED_MAIL] = { 503, "5.5.1", "Error: need MAIL command", NULL, false },
	[SMTP_R_NESTED_MAIL] = { 503, "5.5.1", "Error: nested MAIL command", NULL, false },
	[SMTP_R_NO_RECIPIENTS] = { 554, "5.5.1", "Error: no valid recipients", NULL, false },
	[SMTP_R_DATA_AFTER_BDAT] = { 503, "5.5.1", "Error: DATA after BDAT", NULL, false },
	[SMTP_R_BDAT_FAILED] = { 503, "5.5.1", "Error: a previous chunk failed; send RSET", NULL,
		false },
	/* Not advertised: an unrecognised parameter value (RFC 3030 3). */
	[SMTP_R_BINARYMIME] = { 555, "5.5.4", "BODY=BINARYMIME not supported", NULL, false },
	/* DSN (RFC 3461) is not advertised: its parameters are unknown here
	 * (RFC 5321 4.1.1.11), and RET=FULL would have a bounce carry a whole
	 * message back to a sender nobody checked. */
	[SMTP_R_DSN_PARAM] = { 555, "5.5.4", "%s parameter not supported", NULL, false },
	[SMTP_R_SIZE] = { 552, "5.3.4", "Message size exceeds fixed maximum message size",
		"max_size", false },
	[SMTP_R_EXPN] = { 502, "5.5.1", "EXPN not supported", NULL, false },
	[SMTP_R_TLS_ACTIVE] = { 503, "5.5.1", "TLS already active", NULL, false },
	[SMTP_R_NO_STARTTLS] = { 502, "5.5.1", "STARTTLS not available", NULL, false },
	[SMTP_R_AUTH_NOT_ENABLED] = { 503, "5.5.1", "Error: authentication not enabled", NULL,
		false },
	[SMTP_R_AUTH_NEEDS_TLS] = { 538, "5.7.11",
		"Encryption required for requested authentication mechanism", NULL, false },
	[SMTP_R_AUTH_ALREADY] = { 503, "5.5.1", "Error: already authenticated", NULL, false },
	[SMTP_R_AUTH_IN_TRANSACTION] = { 503, "5.5.1",
		"Error: AUTH not permitted during a mail transaction", NULL, false },
	[SMTP_R_AUTH_TEMPFAIL] = { 454, "4.7.0", "Temporary authentication failure", NULL, false },
	[SMTP_R_AUTH_MECH] = { 504, "5.5.4", "Unrecognized authentication type", NULL, false },
	/* RFC 4954 4: an undecodable response is a syntax error. */
	[SMTP_R_AUTH_MALFORMED] = { 501, "5.5.2", "Cannot decode the response", NULL, false },
	[SMTP_R_AUTH_CANCELLED] = { 501, "5.0.0", "Authentication cancelled", NULL, false },
	[SMTP_R_AUTH_FAILED] = { 535, "5.7.8", "Authentication credentials invalid", "auth_failed",
		false },
	[SMTP_R_QUEUE_ERROR] = { 451, "4.3.0", "Error: queue file write error", "queue_error",
		false },
	/* The file could not be made: nothing of the message existed yet. */
	[SMTP_R_QUEUE_UNAVAILABLE] = { 451, "4.3.0", "Error: queue file write error", NULL, false },
	[SMTP_R_UNRECORDED] = { 451, "4.3.0", "Error: cannot record the message; try again later",
		NULL, false },
	[SMTP_R_CONTENT_SIZE] = { 552, "5.3.4", "Message size exceeds fixed maximum message size",
		"max_size", false },
	[SMTP_R_CONTENT_BARE_NEWLINE] = { 554, "5.6.0",
		"Message contains bare CR or LF (RFC 5321 2.3.8)", "bare_newline", false },
	[SMTP_R_CONTENT_LONG_LINE] = { 554, "5.6.0",
		"Message has a line longer than the limit (RFC 5321 4.5.3.1.6)", "line_length", false },
	[SMTP_R_CONTENT_NUL] = { 554, "5.6.0",
		"Message contains NUL (RFC 2045 2.7; BINARYMIME is not offered)", "nul", false },
	[SMTP_R_TOO_MANY_ERRORS] = { 421, "4.7.0", "%s Error: too many errors", "max_errors",
		true },
	[SMTP_R_TIMEOUT] = { 421, "4.4.2", "%s Error: timeout exceeded", NULL, true },
	[SMTP_R_LIFETIME] = { 421, "4.4.2", "%s Error: connection open too long", NULL, true },
	[SMTP_R_SHUTDOWN] = { 421, "4.3.2", "%s Service shutting down", "stopping", true },
};

const struct smtp_reply_def *smtp_reply_def(enum smtp_reply_id id)
{
	if ((unsigned)id >= SMTP_R_COUNT || !defs[id].code)
		fatal("smtp_reply_def: no reply %d", (int)id);
	return &defs[id];
}
