/*
 * util.c - what `postern trace` and `postern stats` share: finding the
 * trace store and keys from the configuration, reading times the way
 * operators write them, and printing values that came from the network
 * safely, as text or as JSON.
 *
 * Ownership: cli_trace_conf_get() fills strings released by
 * cli_trace_conf_free(); everything else writes into the caller's buffers
 * or to stdout.
 */
#include "cli/cli.h"
#include "common/common.h"
#include "conf/conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_trace_conf_get(const char *config, const char *db, const char *key_file,
                       const char *gate, struct cli_trace_conf *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	/* --db alone is enough to read the store: do not insist on a
	 * configuration file the operator did not name. */
	if (config || !db) {
		struct conf *c = conf_load(config ? config : CLI_CONFIG_FILE, err, errlen);
		if (!c)
			return -1;
		if ((!c->trace_enabled || !c->trace_db) && !db) {
			snprintf(err, errlen, "%s: the trace store is not enabled", c->path);
			conf_free(c);
			return -1;
		}
		out->db = c->trace_db ? str_dup(c->trace_db) : NULL;
		out->key_file = c->trace_key_file ? str_dup(c->trace_key_file) : NULL;
		out->gate = str_dup(c->hostname);
		conf_free(c);
	}
	if (db) {
		free(out->db);
		out->db = str_dup(db);
	}
	if (key_file) {
		free(out->key_file);
		out->key_file = str_dup(key_file);
	}
	if (gate) {
		free(out->gate);
		out->gate = str_dup(gate);
	}
	return 0;
}

void cli_trace_conf_free(struct cli_trace_conf *c)
{
	free(c->db);
	free(c->key_file);
	free(c->gate);
	memset(c, 0, sizeof(*c));
}

/* ---- times --------------------------------------------------------------- */

/* Exactly n digits. */
static bool digits(const char **p, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return false;
		*v = *v * 10 + (c - '0');
	}
	*p += n;
	return true;
}

static int parse_iso(const char *s, int64_t *out)
{
	const char *p = s;
	struct tm tm = { 0 };
	int y, mo, d, h = 0, mi = 0, sec = 0;
	if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
	    !digits(&p, 2, &d))
		return -1;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi))
			return -1;
		if (*p == ':' && (p++, !digits(&p, 2, &sec)))
			return -1;
	}
	int offset = 0;   /* seconds east of UTC */
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
		if (!digits(&p, 2, &oh))
			return -1;
		if (*p == ':')
			p++;
		if (*p && !digits(&p, 2, &om))
			return -1;
		if (oh > 23 || om > 59)
			return -1;
		offset = sign * (oh * 3600 + om * 60);
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	if (tm.tm_mday != d)   /* the 31st of a shorter month rolled over */
		return -1;
	*out = (int64_t)t - offset;
	return 0;
}

int cli_parse_count(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || v == 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

int cli_parse_time(const char *s, int64_t now, int64_t *out)
{
	size_t n = strlen(s);
	if (n == 0)
		return -1;
	if (s[0] == '@') {
		char *end;
		long long v = strtoll(s + 1, &end, 10);
		if (end == s + 1 || *end || v < 0)
			return -1;
		*out = v;
		return 0;
	}
	if (strchr(s, '-'))
		return parse_iso(s, out);
	/* A bare number is too ambiguous (seconds ago? a year?): insist on a
	 * unit for times ago. */
	uint64_t ago;
	if (s[n - 1] < 'a' || s[n - 1] > 'z' || str_parse_duration(s, &ago) < 0 ||
	    ago > (uint64_t)now)
		return -1;
	*out = now - (int64_t)ago;
	return 0;
}

void cli_iso_time(int64_t t, char out[32])
{
	struct tm tm;
	time_t tt = (time_t)t;
	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- output --------------------------------------------------------------- */

void cli_put_text(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		size_t n = codec_utf8_len((const char *)p);
		/* C0 and C1 controls (U+0080..U+009F are 0xc2 0x80..0x9f) and
		 * broken UTF-8 could drive the terminal: show '?' instead. */
		if (n == 0 || *p < 0x20 || *p == 0x7f || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {
			putchar('?');
			p += n ? n : 1;
			continue;
		}
		fwrite(p, 1, n, stdout);
		p += n;
	}
}

void cli_put_json(const char *s)
{
	if (!s) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			printf("\\%c", c);
			p++;
		} else if (c < 0x20 || c == 0x7f) {
			printf("\\u%04x", c);
			p++;
		} else if (c < 0x80) {
			putchar(c);
			p++;
		} else {
			size_t n = codec_utf8_len((const char *)p);
			if (n) {
				fwrite(p, 1, n, stdout);
				p += n;
			} else {
				fputs("\\ufffd", stdout);
				p++;
			}
		}
	}
	putchar('"');
}
