/*
 * find.c - finds our X-Postern-Trace header in a message as an abuse desk
 * gets it: the message itself, or an abuse report (ARF, RFC 5965) or a
 * forward carrying it as a message/rfc822, text/rfc822-headers or .eml
 * part, possibly base64 or quoted-printable encoded, nested a few levels.
 *
 * Whose header counts. The question is "who sent this message", so the
 * message's own header block decides whenever it shows that the message
 * passed through this gate: a trace header naming our gate (valid or not)
 * or our own Received line. A header inside an enclosed message (an
 * attachment, a forward) then never outranks it, whatever its verdict: an
 * account could otherwise attach another user's genuine message, wait for
 * its own header to be stripped, altered or to fail, and have the lookup
 * name the other user. Only a message that shows no trace of this gate
 * (an ARF report an ISP wrote, a forward by the desk's colleague) is
 * judged by what it encloses, and the result says so (f->enclosed).
 *
 * Among the candidates (the top-level headers, or failing those every
 * enclosed one in document order) the best verdict wins, the first of
 * equals:
 *
 *   VALID > UNKNOWN_KEY > FORGED > OTHER_GATE > MALFORMED > MISSING
 *
 * A header that verifies settles it. Next come headers naming our gate,
 * since the question asked is "did this pass through us": one under a key
 * we no longer hold may well be genuine (its trace id is worth a lookup),
 * and one that fails the MAC means our name was forged or the message was
 * altered, which the desk must see rather than a mere mention of another
 * gate. Then other gates, then what did not parse.
 *
 * Every other trace header seen is quoted (f->quoted): enclosed ones that
 * did not decide, and X-Postern-Trace-Prior fields, which are headers a
 * sender brought along and the gate renamed (scan.c). Quoted headers are
 * evidence for the desk and never an attribution.
 *
 * Lines may end in CRLF or LF alone (reports are often saved with LF).
 * Decoded attachments are allocated per part and freed before returning;
 * nothing returned points into the input.
 */
#include "trace/trace.h"
#include "trace/header_int.h"
#include "msg/msg.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Levels searched below the top, each part and each enclosed message
 * counting one: report > part > attached message > its part > ... It
 * bounds the stack and the decoded copies held at once. */
#define MAX_DEPTH 8

struct search {
	const char *gate;
	const struct trace_key *keys;
	size_t nkeys;
	struct trace_found *best;
	bool top_ours;  /* the message's own header block passed through us */
};


static int rank(enum trace_verdict v)
{
	switch (v) {
	case TRACE_VALID: return 5;
	case TRACE_UNKNOWN_KEY: return 4;
	case TRACE_FORGED: return 3;
	case TRACE_COPIED: return 3;   /* only the lookup says so, never find */
	case TRACE_OTHER_GATE: return 2;
	case TRACE_MALFORMED: return 1;
	case TRACE_MISSING: return 0;
	}
	return 0;
}

/* ---- the search ---------------------------------------------------------- */

static void search_message(struct search *s, const char *p, size_t len, int depth);

/* A message the walk found enclosed (msg/mime.c). */
static void enclosed(void *ctx, const char *msg, size_t len, int depth)
{
	search_message(ctx, msg, len, depth);
}

static void quote(struct search *s, const struct trace_found *c, bool renamed, bool enclosed)
{
	struct trace_found *f = s->best;
	if (f->nquoted == TRACE_QUOTED_MAX) {
		f->quoted_more = true;
		return;
	}
	struct trace_quoted *q = &f->quoted[f->nquoted++];
	q->verdict = c->verdict;
	q->renamed = renamed;
	q->enclosed = enclosed;
	memcpy(q->trace_id, c->trace_id, sizeof(q->trace_id));
	memcpy(q->gate, c->gate, sizeof(q->gate));
}

/* The judged header c becomes the answer (the quoted list stays). */
static void adopt(struct trace_found *f, const struct trace_found *c, bool enclosed)
{
	f->verdict = c->verdict;
	f->version = c->version;
	memcpy(f->trace_id, c->trace_id, sizeof(f->trace_id));
	f->time = c->time;
	memcpy(f->gate, c->gate, sizeof(f->gate));
	memcpy(f->key_id, c->key_id, sizeof(f->key_id));
	memcpy(f->message_id, c->message_id, sizeof(f->message_id));
	memcpy(f->mac, c->mac, sizeof(f->mac));
	f->enclosed = enclosed;
}

/* A header of an enclosed message: the answer only while the message
 * itself shows no trace of us and nothing better came first; quoted
 * otherwise, and so is what it displaces. */
static void judge_enclosed(struct search *s, const struct trace_found *c)
{
	struct trace_found *f = s->best;
	if (s->top_ours || rank(c->verdict) <= rank(f->verdict)) {
		quote(s, c, false, true);
		return;
	}
	if (f->enclosed)
		quote(s, f, false, true);
	adopt(f, c, true);
}

static bool is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Our own Received line: "by <gate> (Postern)" somewhere in it, however
 * refolded (received.c writes it). Anyone can write such a line; it only
 * ever keeps enclosed headers from deciding, so a forged one frames no one. */
static bool received_by_us(const char *v, size_t n, const char *gate)
{
	const char *end = v + n;
	size_t glen = gate ? strlen(gate) : 0;
	if (!glen)
		return false;
	for (const char *p = v; p + 2 <= end; p++) {
		if (strncasecmp(p, "by", 2) != 0 || (p > v && !is_space(p[-1])) ||
		    p + 2 == end || !is_space(p[2]))
			continue;
		const char *q = p + 2;
		while (q < end && is_space(*q))
			q++;
		if ((size_t)(end - q) < glen || strncasecmp(q, gate, glen) != 0)
			continue;
		q += glen;
		if (q == end || !is_space(*q))
			continue;
		while (q < end && is_space(*q))
			q++;
		if ((size_t)(end - q) >= 9 && strncasecmp(q, "(Postern)", 9) == 0)
			return true;
	}
	return false;
}

/* One message (or headers only): judge its trace headers against its own
 * Message-IDs, then look inside. */
static void search_message(struct search *s, const char *p, size_t len, int depth)
{
	size_t hlen, off;
	msg_header_split(p, len, &hlen, &off);

	struct trace__msgid ids[TRACE__MSGIDS_MAX];
	size_t nids = 0, pos = 0;
	struct msg_field f;
	while (nids < TRACE__MSGIDS_MAX && msg_field_next(p, hlen, &pos, &f)) {
		if (!msg_field_is(&f, "Message-ID"))
			continue;
		trace__msgid_init(&ids[nids]);
		trace__msgid_add(&ids[nids], f.value, f.value_len);
		nids++;
	}
	if (depth == 0)
		str_lcpy(s->best->message_id, nids ? ids[0].v : "", sizeof(s->best->message_id));

	bool received = false;
	pos = 0;
	while (msg_field_next(p, hlen, &pos, &f)) {
		bool prior = msg_field_is(&f, "X-Postern-Trace-Prior");
		if (depth == 0 && msg_field_is(&f, "Received"))
			received |= received_by_us(f.value, f.value_len, s->gate);
		if (!prior && !msg_field_is(&f, "X-Postern-Trace"))
			continue;
		struct trace_found c;
		c.verdict = trace__header_check(f.value, f.value_len, s->gate, s->keys, s->nkeys, ids, nids,
		                                &c);
		if (prior)
			quote(s, &c, true, depth > 0);
		else if (depth > 0)
			judge_enclosed(s, &c);
		else if (rank(c.verdict) > rank(s->best->verdict))
			adopt(s->best, &c, false);
	}
	if (depth == 0)
		s->top_ours = received || (s->best->verdict != TRACE_MISSING &&
		                           s->best->verdict != TRACE_OTHER_GATE);
	msg_mime_walk(p, hlen, p + off, len - off, "text/plain", depth, MAX_DEPTH, enclosed, s);
}

/* A message starts with a header field (after an mbox "From " line, which
 * a saved report may carry). */
static bool looks_like_message(const char *msg, size_t len, size_t *skip)
{
	size_t nlen;
	*skip = 0;
	for (int i = 0; i < 2; i++) {
		const char *p = msg + *skip;
		size_t n = len - *skip;
		const char *nl = memchr(p, '\n', n);
		size_t le = nl ? (size_t)(nl - p) : n;
		if (n > 0 && msg_field_colon(p, le, &nlen) != 0)
			return true;
		if (i > 0 || !nl || n < 5 || memcmp(p, "From ", 5) != 0)
			return false;
		*skip = le + 1;
	}
	return false;
}

int trace_header_find(const char *msg, size_t len, const char *gate,
                      const struct trace_key *keys, size_t nkeys, struct trace_found *f)
{
	memset(f, 0, sizeof(*f));
	f->verdict = TRACE_MISSING;
	size_t skip;
	if (!msg || !looks_like_message(msg, len, &skip))
		return -1;
	struct search s = { .gate = gate, .keys = keys, .nkeys = nkeys, .best = f };
	search_message(&s, msg + skip, len - skip, 0);
	return 0;
}
