/*
 * hdr.c - RFC 5322 header sections: the collector stage that keeps a
 * message's header section while it streams past, and the iterator over
 * the fields of a section in memory (header From, the trace lookup).
 *
 * Lines end in LF, with or without CR: the decoder lets only CRLF through,
 * but a message handed to `postern trace` may come from a file with LF.
 *
 * Ownership: a msg_headers owns its block (msg_headers_free); fields point
 * into the caller's section.
 */
#include "msg/msg.h"

#include <string.h>
#include <strings.h>

void msg_headers_init(struct msg_headers *h, size_t cap)
{
	buf_init(&h->block);
	h->cap = cap;
	h->done = false;
	h->cut = false;
}

void msg_headers_free(struct msg_headers *h)
{
	buf_free(&h->block);
}

/* Looks for the empty line in what was kept, from where the last search
 * could not have seen it; cuts the block to the fields when found. */
static void headers_find_end(struct msg_headers *h, size_t old)
{
	const char *d = h->block.data;
	size_t len = h->block.len;
	if (old == 0 && len >= 1 && (d[0] == '\n' || (len >= 2 && d[0] == '\r' && d[1] == '\n'))) {
		h->block.len = 0;    /* no fields at all */
		h->done = true;
		return;
	}
	size_t from = old > 3 ? old - 3 : 0;
	for (const char *p = memchr(d + from, '\n', len - from); p;
	     p = memchr(p + 1, '\n', len - (size_t)(p + 1 - d))) {
		const char *q = p + 1;
		size_t left = len - (size_t)(q - d);
		if (left >= 1 && *q == '\n') {
			h->block.len = (size_t)(q - d);
			h->done = true;
			return;
		}
		if (left >= 2 && q[0] == '\r' && q[1] == '\n') {
			h->block.len = (size_t)(q - d);
			h->done = true;
			return;
		}
		if (left < 2)
			break;
	}
}

static int headers_feed(void *st, const char *p, size_t n, msg_emit_fn emit, void *ctx)
{
	struct msg_headers *h = st;
	if (!h->done) {
		size_t room = h->cap - h->block.len;
		size_t old = h->block.len;
		buf_append(&h->block, p, n < room ? n : room);
		headers_find_end(h, old);
		if (!h->done && h->block.len >= h->cap) {
			h->done = true;
			h->cut = true;
		}
	}
	return emit(ctx, p, n);
}

const struct msg_stage_ops msg_headers_stage = {
	.name = "headers",
	.feed = headers_feed,
};

bool msg_field_next(const char *s, size_t len, size_t *pos, struct msg_field *f)
{
	size_t i = *pos;
	while (i < len) {
		const char *nl = memchr(s + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - s) + 1 : len;
		size_t text = end - (nl ? 1 : 0);
		if (text > i && s[text - 1] == '\r')
			text--;
		if (text == i) {
			*pos = len;      /* the empty line ends the section */
			return false;
		}
		const char *colon = memchr(s + i, ':', text - i);
		bool continuation = s[i] == ' ' || s[i] == '\t';
		if (continuation || !colon) {
			i = end;         /* not a field: skipped */
			continue;
		}
		size_t name_end = (size_t)(colon - s);
		while (name_end > i && (s[name_end - 1] == ' ' || s[name_end - 1] == '\t'))
			name_end--;  /* obs-optional: blanks before the colon */
		f->name = s + i;
		f->name_len = name_end - i;
		f->raw = s + i;
		f->value = colon + 1;
		size_t vend = text;
		/* Continuation lines belong to the field. */
		while (end < len && (s[end] == ' ' || s[end] == '\t')) {
			nl = memchr(s + end, '\n', len - end);
			size_t e2 = nl ? (size_t)(nl - s) + 1 : len;
			vend = e2 - (nl ? 1 : 0);
			if (vend > end && s[vend - 1] == '\r')
				vend--;
			end = e2;
		}
		f->value_len = vend - (size_t)(f->value - s);
		f->raw_len = end - i;
		*pos = end;
		return true;
	}
	*pos = len;
	return false;
}

bool msg_field_is(const struct msg_field *f, const char *name)
{
	size_t n = strlen(name);
	return f->name_len == n && strncasecmp(f->name, name, n) == 0;
}

void msg_field_unfold(const struct msg_field *f, struct buf *out)
{
	const char *p = f->value, *end = f->value + f->value_len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *stop = nl ? nl : end;
		const char *t = stop;
		if (nl && t > p && t[-1] == '\r')
			t--;
		buf_append(out, p, (size_t)(t - p));
		p = nl ? nl + 1 : end;
	}
}
