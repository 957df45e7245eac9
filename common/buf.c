/*
 * buf.c - growable byte buffers. A struct buf owns its data; buf_free()
 * releases it. Allocation failure aborts: there is no sane recovery.
 */
#include "common/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reserve(struct buf *b, size_t extra)
{
	if (extra <= b->cap - b->len)
		return;
	if (extra > SIZE_MAX / 2 - b->len)
		fatal("buf_reserve: size overflow");
	size_t want = b->len + extra + 1; /* room for a terminating NUL */
	size_t cap = b->cap ? b->cap : 64;
	while (cap < want)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap - 1;
}

void buf_append(struct buf *b, const void *data, size_t len)
{
	if (len == 0)
		return;
	buf_reserve(b, len);
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void buf_puts(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list aq;
	va_copy(aq, ap);
	int n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0)
		fatal("buf_vprintf: bad format");
	buf_reserve(b, (size_t)n);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
	} else {
		memmove(b->data, b->data + n, b->len - n);
		b->len -= n;
	}
	if (b->data)
		b->data[b->len] = '\0';
}

void buf_shrink(struct buf *b)
{
	if (b->len == 0)
		buf_free(b);
}

void buf_append_wiped(struct buf *b, const void *data, size_t len)
{
	if (len > b->cap - b->len && b->data) {
		/* realloc would free the old block as it is: move by hand. */
		struct buf n;
		buf_init(&n);
		buf_reserve(&n, b->len + len);
		memcpy(n.data, b->data, b->len);
		n.len = b->len;
		buf_free_wiped(b);
		*b = n;
	}
	buf_append(b, data, len);
}

void buf_consume_wiped(struct buf *b, size_t n)
{
	size_t old = b->len;
	buf_consume(b, n);
	if (b->data)
		explicit_bzero(b->data + b->len, old - b->len);
}

void buf_free_wiped(struct buf *b)
{
	if (b->data)
		explicit_bzero(b->data, b->cap + 1);
	buf_free(b);
}
