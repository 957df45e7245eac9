/*
 * reply.c - formats SMTP replies (RFC 5321 4.2, RFC 2034). Writes into the
 * caller's buffer; allocates nothing that outlives the call.
 */
#include "server/reply.h"

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
