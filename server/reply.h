/*
 * reply.h - the only code that writes SMTP replies. Handlers return a code,
 * an enhanced status code and a text; this formats them (multi-line
 * replies, RFC 2034 enhanced codes) into the connection's output buffer.
 */
#ifndef POSTERN_REPLY_H
#define POSTERN_REPLY_H

#include "common/common.h"

/* Appends "<code> <enh> <text>\r\n". enh may be NULL (greeting, EHLO).
 * Lines of text separated by '\n' become a multi-line reply
 * ("250-first", ..., "250 last"). Control characters in text are replaced
 * so a reply can never be split or injected. */
void reply_append(struct buf *out, int code, const char *enh, const char *fmt, ...)
	PRINTF_LIKE(4, 5);
void reply_vappend(struct buf *out, int code, const char *enh, const char *fmt, va_list ap);

#endif
