/*
 * smtp_data.c - the DATA decoder: finds the CRLF "." CRLF that ends a
 * message, removes dot-stuffing (RFC 5321 4.5.2) and flags what a strict
 * server must refuse: bare LF, bare CR (SMTP smuggling), overlong lines and
 * oversized messages.
 *
 * Ownership: nothing is allocated here; decoded bytes are appended to the
 * caller's struct buf.
 *
 * Speed: this runs over every byte of every message, so text is located
 * with memchr and copied in runs that span many lines; only a dot at the
 * start of a line, or the end of the input, breaks a run.
 */
#include "smtp/parse.h"

#include <string.h>

enum {
	S_BOL,     /* at the start of a line (the start of DATA counts) */
	S_TEXT,    /* inside a line */
	S_CR,      /* inside a line, after CR */
	S_DOT,     /* after a "." at the start of a line */
	S_DOT_CR,  /* after "." CR at the start of a line */
	S_END,     /* CRLF "." CRLF seen */
};

/* A pass over one input chunk. */
struct scan {
	const char *p;    /* next byte to look at */
	const char *end;
	const char *run;  /* start of the bytes to copy out as they are */
	const char *cr;   /* first CR at or after some p <= the current one, or end */
	const char *lf;   /* same for LF */
};

static void check_nul(struct smtp_data *d, const char *in, size_t n);

void smtp_data_init(struct smtp_data *d, size_t max_line, uint64_t max_size)
{
	memset(d, 0, sizeof(*d));
	d->state = S_BOL;
	d->max_line = max_line;
	d->max_size = max_size;
}

static const char *find(const char *p, const char *end, char c)
{
	const char *q = memchr(p, c, (size_t)(end - p));
	return q ? q : end;
}

/*
 * The next CR or LF. Both positions are cached because a search for one
 * may run far past the other: without the cache, input made of bare LFs
 * would rescan the whole chunk for a CR on every line.
 */
static const char *next_eol(struct scan *s)
{
	if (s->cr < s->p)
		s->cr = find(s->p, s->end, '\r');
	if (s->lf < s->p)
		s->lf = find(s->p, s->end, '\n');
	return s->cr < s->lf ? s->cr : s->lf;
}

static void emit(struct smtp_data *d, struct buf *out, const char *from, const char *to)
{
	size_t n = (size_t)(to - from);

	if (n == 0)
		return;
	d->size += n;
	if (d->max_size && d->size > d->max_size)
		d->flags |= SMTP_DATA_ERR_TOO_BIG;
	if (d->flags == 0)
		buf_append(out, from, n);
}

static void scan_text(struct smtp_data *d, struct scan *s)
{
	const char *eol = next_eol(s);

	d->line_len += (size_t)(eol - s->p);
	if (d->max_line && d->line_len > d->max_line)
		d->flags |= SMTP_DATA_ERR_LONG_LINE;
	s->p = eol;
	if (eol == s->end)
		return;
	s->p++;
	if (*eol == '\r')
		d->state = S_CR;
	else
		/* Not a line end: only CRLF is, or LF "." LF would end DATA. */
		d->flags |= SMTP_DATA_ERR_BARE_LF;
}

/* One step of the state machine; true at the end of the data. */
static bool step(struct smtp_data *d, struct scan *s, struct buf *out)
{
	switch (d->state) {
	case S_BOL:
		if (*s->p == '.') {
			/* Hold the dot: stuffing, or the start of the end. */
			emit(d, out, s->run, s->p);
			s->run = ++s->p;
			d->state = S_DOT;
		} else {
			d->state = S_TEXT;
		}
		return false;
	case S_TEXT:
		scan_text(d, s);
		return false;
	case S_CR:
		if (*s->p == '\n') {
			s->p++;
			d->line_len = 0;
			d->state = S_BOL;
		} else {
			d->flags |= SMTP_DATA_ERR_BARE_CR;
			d->state = S_TEXT;
		}
		return false;
	case S_DOT:
		if (*s->p == '\r') {
			s->run = ++s->p;
			d->state = S_DOT_CR;
		} else {
			/* A stuffed dot: dropped, and not counted in the line. */
			d->state = S_TEXT;
		}
		return false;
	case S_DOT_CR:
		if (*s->p == '\n') {
			s->p++;
			d->state = S_END;
			return true;
		}
		/* The held CR is lost, but the data is flagged anyway. */
		d->flags |= SMTP_DATA_ERR_BARE_CR;
		d->state = S_TEXT;
		return false;
	default:
		fatal("smtp_data: bad state %d", d->state);
	}
}

int smtp_data_feed(struct smtp_data *d, const char *in, size_t len, size_t *used,
                   struct buf *out)
{
	if (d->state == S_END) {
		*used = 0;
		return SMTP_DATA_END;
	}
	*used = len;
	if (len == 0)
		return SMTP_DATA_MORE;

	struct scan s = { .p = in, .end = in + len, .run = in };
	s.cr = find(in, s.end, '\r');
	s.lf = find(in, s.end, '\n');
	while (s.p < s.end) {
		if (step(d, &s, out)) {
			/* Nothing is pending: the run starts after the held "." CR. */
			*used = (size_t)(s.p - in);
			check_nul(d, in, *used);
			return SMTP_DATA_END;
		}
	}
	emit(d, out, s.run, s.end);
	check_nul(d, in, len);
	return SMTP_DATA_MORE;
}

/* Checked once per feed over the bytes of the message only (what follows
 * the end belongs to the next command); output with a flag is discarded,
 * so flagging after the bytes were emitted is early enough. */
static void check_nul(struct smtp_data *d, const char *in, size_t n)
{
	if (!(d->flags & SMTP_DATA_ERR_NUL) && n && memchr(in, '\0', n))
		d->flags |= SMTP_DATA_ERR_NUL;
}

void smtp_bdat_init(struct smtp_bdat *b, size_t max_line)
{
	memset(b, 0, sizeof(*b));
	b->max_line = max_line;
}

void smtp_bdat_feed(struct smtp_bdat *b, const char *p, size_t n)
{
	const char *end = p + n;
	if (n && memchr(p, '\0', n))
		b->flags |= SMTP_DATA_ERR_NUL;
	while (p < end) {
		if (b->prev_cr) {
			b->prev_cr = false;
			if (*p == '\n') {
				p++;
				b->line_len = 0;
				continue;
			}
			b->flags |= SMTP_DATA_ERR_BARE_CR;
		}
		/* Runs between line ends are skipped with memchr, as in DATA. */
		const char *cr = memchr(p, '\r', (size_t)(end - p));
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		const char *eol = !cr ? lf : !lf ? cr : cr < lf ? cr : lf;
		size_t run = (size_t)((eol ? eol : end) - p);
		b->line_len += run;
		if (b->max_line && b->line_len > b->max_line)
			b->flags |= SMTP_DATA_ERR_LONG_LINE;
		if (!eol)
			break;
		if (*eol == '\n') {
			b->flags |= SMTP_DATA_ERR_BARE_LF;
			b->line_len = 0;
		} else {
			b->prev_cr = true;
		}
		p = eol + 1;
	}
}

void smtp_bdat_finish(struct smtp_bdat *b)
{
	if (b->prev_cr)
		b->flags |= SMTP_DATA_ERR_BARE_CR;
	b->prev_cr = false;
}
