/*
 * log.c - one line per event, to stderr or syslog. Lines are written with
 * a single write(2) so that lines from several loops never interleave.
 */
#include "common/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static bool log_syslog;
static enum log_level log_level = LOG_LEVEL_INFO;
static const char *log_ident = "postern";

void log_open(const char *ident, bool use_syslog, enum log_level level)
{
	log_ident = ident;
	log_syslog = use_syslog;
	log_level = level;
	if (use_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(enum log_level level)
{
	log_level = level;
}

bool log_enabled(enum log_level level)
{
	return level <= log_level;
}

static const char *level_name(enum log_level level)
{
	switch (level) {
	case LOG_LEVEL_ERR: return "err";
	case LOG_LEVEL_WARN: return "warn";
	case LOG_LEVEL_INFO: return "info";
	default: return "debug";
	}
}

static void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[2048];
	if (log_syslog) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
		vsnprintf(line, sizeof(line), fmt, ap);
		syslog(prio[level], "level=%s %s", level_name(level), line);
		return;
	}
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld]: level=%s ",
	                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	                 tm.tm_sec, ts.tv_nsec / 1000000, log_ident, (long)getpid(),
	                 level_name(level));
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	(void)file_write_all(STDERR_FILENO, line, len);
}

/* Writes the quoted form of s[0..n) at dst, which holds 4 * n + 2 bytes;
 * returns its length. */
static size_t quote_into(char *dst, const char *s, size_t n)
{
	char *o = dst;
	*o++ = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			*o++ = '\\';
			*o++ = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		} else if (c < 0x20 || c == 0x7f) {
			*o++ = '\\';
			*o++ = 'x';
			*o++ = codec_hexdigit(c >> 4);
			*o++ = codec_hexdigit(c);
		} else {
			*o++ = (char)c;
		}
	}
	*o++ = '"';
	return (size_t)(o - dst);
}

void log_quote(struct buf *out, const char *s, size_t n)
{
	if (n > (SIZE_MAX - 2) / 4)
		fatal("log_quote: size overflow");
	buf_reserve(out, 4 * n + 2);
	out->len += quote_into(out->data + out->len, s, n);
	out->data[out->len] = '\0';
}

const char *log_qn(const char *s, size_t n)
{
	/* Four bytes per escaped byte, the quotes, "..." and the NUL. */
	static _Thread_local char ring[LOG_Q_SLOTS][LOG_Q_MAX * 4 + 6];
	static _Thread_local unsigned next;
	if (!s)
		return "-";
	char *slot = ring[next++ % LOG_Q_SLOTS];
	bool cut = n > LOG_Q_MAX;
	size_t len = quote_into(slot, s, cut ? LOG_Q_MAX : n);
	if (cut) {
		/* The closing quote moves behind the "...". */
		memcpy(slot + len - 1, "...\"", 4);
		len += 3;
	}
	slot[len] = '\0';
	return slot;
}

const char *log_q(const char *s)
{
	return log_qn(s, s ? strlen(s) : 0);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > log_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_ERR, fmt, ap);
	va_end(ap);
	abort();
}
