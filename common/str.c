/*
 * str.c - allocation wrappers and string helpers. Returned strings belong
 * to the caller.
 */
#include "common/common.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		fatal("out of memory (%zu bytes)", n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		fatal("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		fatal("out of memory (%zu bytes)", n);
	return q;
}

char *str_dup(const char *s)
{
	return s ? str_ndup(s, strlen(s)) : NULL;
}

char *str_ndup(const char *s, size_t n)
{
	char *d = xmalloc(n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *str_printf(const char *fmt, ...)
{
	struct buf b;
	va_list ap;
	buf_init(&b);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (!b.data)
		return str_dup("");
	return b.data;
}

size_t str_lcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);
	if (size) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

bool str_case_prefix(const char *s, const char *prefix)
{
	return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static int parse_number(const char *s, uint64_t *num, const char **rest)
{
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	*num = v;
	*rest = end;
	return 0;
}

int str_parse_size(const char *s, uint64_t *out)
{
	uint64_t v, mult = 1;
	const char *rest;
	if (parse_number(s, &v, &rest) < 0)
		return -EINVAL;
	switch (*rest) {
	case '\0': break;
	case 'k': case 'K': mult = 1024ULL; rest++; break;
	case 'm': case 'M': mult = 1024ULL * 1024; rest++; break;
	case 'g': case 'G': mult = 1024ULL * 1024 * 1024; rest++; break;
	default: return -EINVAL;
	}
	if (*rest == 'B' || *rest == 'b')
		rest++;
	if (*rest != '\0' || (v && mult > UINT64_MAX / v))
		return -EINVAL;
	*out = v * mult;
	return 0;
}

int str_parse_duration(const char *s, uint64_t *out)
{
	uint64_t v, mult = 1;
	const char *rest;
	if (parse_number(s, &v, &rest) < 0)
		return -EINVAL;
	switch (*rest) {
	case '\0': break;
	case 's': mult = 1; rest++; break;
	case 'm': mult = 60; rest++; break;
	case 'h': mult = 3600; rest++; break;
	case 'd': mult = 86400; rest++; break;
	case 'w': mult = 7 * 86400; rest++; break;
	default: return -EINVAL;
	}
	if (*rest != '\0' || (v && mult > UINT64_MAX / v))
		return -EINVAL;
	*out = v * mult;
	return 0;
}

void str_sanitize(char *dst, size_t size, const char *s, size_t len)
{
	size_t o = 0;
	if (size == 0)
		return;
	for (size_t i = 0; i < len && o + 1 < size; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[o++] = (c < 0x20 || c == 0x7f || c == '"' || c == '\\') ? '?' : (char)c;
	}
	dst[o] = '\0';
}
