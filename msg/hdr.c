/*
 * hdr.c - RFC 5322 header sections, by the one definition in msg.h: the
 * field-line rule, the split of an entity, the iterator over fields, and
 * the collector stage that keeps a message's header section while it
 * streams past (for the checks at the end of the message).
 *
 * Ownership: a msg_headers owns its block (msg_headers_free); fields point
 * into the caller's section.
 */
#include "msg/msg.h"

#include <string.h>
#include <strings.h>

static bool wsp(int c)
{
	return c == ' ' || c == '\t';
}

size_t msg_field_colon(const char *line, size_t n, size_t *nlen)
{
	if (n > MSG_FIELD_NAME_MAX)
		n = MSG_FIELD_NAME_MAX;
	size_t i = 0;
	while (i < n && line[i] != ':' && (unsigned char)line[i] > 32 &&
	       (unsigned char)line[i] < 127)
		i++;
	size_t name = i;
	while (i < n && wsp(line[i]))
		i++;
	if (name == 0 || i == n || line[i] != ':')
		return 0;
	*nlen = name;
	return i;
}

/* Whether the line at p (le: its end, LF excluded) is the empty line
 * (*empty), a field line or a continuation, given whether a field came
 * before. */
static bool section_line(const char *p, size_t le, bool after_field, bool *empty)
{
	size_t nlen;
	*empty = le == 0 || (le == 1 && p[0] == '\r');
	if (*empty)
		return false;
	if (wsp(p[0]))
		return after_field;
	return msg_field_colon(p, le, &nlen) != 0;
}

void msg_header_split(const char *p, size_t len, size_t *hlen, size_t *body)
{
	size_t i = 0;
	bool field = false;
	while (i < len) {
		const char *nl = memchr(p + i, '\n', len - i);
		size_t le = nl ? (size_t)(nl - p) : len;
		bool empty;
		if (!section_line(p + i, le - i, field, &empty)) {
			/* The empty line is in neither part (a lone CR at the very
			 * end, with no LF yet, is the body's). */
			*hlen = i;
			*body = empty && nl ? le + 1 : i;
			return;
		}
		field = true;
		if (!nl)
			break;
		i = le + 1;
	}
	*hlen = len;
	*body = len;
}

bool msg_field_next(const char *blk, size_t len, size_t *pos, struct msg_field *f)
{
	while (*pos < len) {
		size_t ls = *pos;
		const char *nl = memchr(blk + ls, '\n', len - ls);
		size_t le = nl ? (size_t)(nl - blk) : len;
		size_t next = nl ? le + 1 : len;
		size_t nlen, colon;
		*pos = next;
		if (wsp(blk[ls]) || (colon = msg_field_colon(blk + ls, le - ls, &nlen)) == 0)
			continue;
		while (next < len && wsp(blk[next])) {
			nl = memchr(blk + next, '\n', len - next);
			le = nl ? (size_t)(nl - blk) : len;
			next = nl ? le + 1 : len;
		}
		*pos = next;
		if (le > ls && blk[le - 1] == '\r')
			le--;
		f->name = blk + ls;
		f->name_len = nlen;
		f->value = blk + ls + colon + 1;
		f->value_len = le - (ls + colon + 1);
		return true;
	}
	return false;
}

bool msg_field_is(const struct msg_field *f, const char *name)
{
	size_t n = strlen(name);
	return f->name_len == n && strncasecmp(f->name, name, n) == 0;
}

bool msg_field_find(const char *blk, size_t len, const char *name, struct msg_field *f)
{
	size_t pos = 0;
	while (msg_field_next(blk, len, &pos, f))
		if (msg_field_is(f, name))
			return true;
	return false;
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

/* ---- the collector ---------------------------------------------------------------- */

void msg_headers_init(struct msg_headers *h, size_t cap)
{
	buf_init(&h->block);
	h->cap = cap;
	h->scanned = 0;
	h->seen_field = false;
	h->done = false;
	h->cut = false;
}

void msg_headers_free(struct msg_headers *h)
{
	buf_free(&h->block);
}

/* Judges the complete lines kept since the last feed. */
static void headers_scan(struct msg_headers *h)
{
	const char *d = h->block.data;
	size_t len = h->block.len;
	while (h->scanned < len) {
		size_t i = h->scanned;
		const char *nl = memchr(d + i, '\n', len - i);
		if (!nl)
			return;      /* a line still coming */
		size_t le = (size_t)(nl - d);
		bool empty;
		if (!section_line(d + i, le - i, h->seen_field, &empty)) {
			h->block.len = i;
			h->done = true;
			return;
		}
		h->seen_field = true;
		h->scanned = le + 1;
	}
}

static int headers_feed(void *st, const char *p, size_t n, msg_emit_fn emit, void *ctx)
{
	struct msg_headers *h = st;
	if (!h->done) {
		size_t room = h->cap - h->block.len;
		buf_append(&h->block, p, n < room ? n : room);
		headers_scan(h);
		if (!h->done && h->block.len >= h->cap) {
			h->done = true;
			h->cut = true;
		}
	}
	return emit(ctx, p, n);
}

/* A message of headers only: its last line may have no line end. */
static int headers_finish(void *st, msg_emit_fn emit, void *ctx)
{
	struct msg_headers *h = st;
	if (!h->done) {
		size_t hlen, body;
		msg_header_split(h->block.data ? h->block.data : "", h->block.len, &hlen, &body);
		h->block.len = hlen;
		h->done = true;
	}
	return 0;
}

const struct msg_stage_ops msg_headers_stage = {
	.name = "headers",
	.feed = headers_feed,
	.finish = headers_finish,
};
