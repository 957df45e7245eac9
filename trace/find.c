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

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Levels searched below the top, each part and each enclosed message
 * counting one: report > part > attached message > its part > ... It
 * bounds the stack and the decoded copies held at once. */
#define MAX_DEPTH 8
#define BOUNDARY_MAX 200

struct search {
	const char *gate;
	const struct trace_key *keys;
	size_t nkeys;
	struct trace_found *best;
	bool top_ours;  /* the message's own header block passed through us */
};

struct field {
	const char *name;
	size_t nlen;
	const char *val;
	size_t vlen;
};

static bool wsp(int c)
{
	return c == ' ' || c == '\t';
}

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

/* ---- header blocks --------------------------------------------------- */

/* "name:" with printable non-space characters, WSP allowed before the
 * colon (RFC 5322 obsolete syntax), the colon within TRACE__FIELD_NAME_MAX
 * bytes. Returns the offset of the colon or 0 when the line is no field. */
static size_t field_colon(const char *line, size_t n, size_t *nlen)
{
	if (n > TRACE__FIELD_NAME_MAX)
		n = TRACE__FIELD_NAME_MAX;
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

/* Splits an entity into header block and body. The header block is the run
 * of field lines and their continuations; the empty line ends it (and is
 * neither), so does any other line (which starts the body). scan.c inserts
 * the trace header by the same rule, so both agree on which Message-ID and
 * which headers a message has. */
static void split_entity(const char *p, size_t len, size_t *hlen, size_t *body)
{
	size_t i = 0;
	while (i < len) {
		const char *nl = memchr(p + i, '\n', len - i);
		size_t le = nl ? (size_t)(nl - p) : len;
		size_t nlen;
		if (p[i] == '\n' || (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n')) {
			*hlen = i;
			*body = i + (p[i] == '\n' ? 1 : 2);
			return;
		}
		if (wsp(p[i]) ? i == 0 : field_colon(p + i, le - i, &nlen) == 0) {
			*hlen = i;
			*body = i;
			return;
		}
		if (!nl)
			break;
		i = le + 1;
	}
	*hlen = len;
	*body = len;
}

/* The next field of a header block, continuation lines included. Within
 * what split_entity() calls the header block every line is one; the
 * skipping is for safety. */
static bool next_field(const char *blk, size_t len, size_t *pos, struct field *f)
{
	while (*pos < len) {
		size_t ls = *pos;
		const char *nl = memchr(blk + ls, '\n', len - ls);
		size_t le = nl ? (size_t)(nl - blk) : len;
		size_t next = nl ? le + 1 : len;
		size_t nlen, colon;
		*pos = next;
		if (wsp(blk[ls]) || (colon = field_colon(blk + ls, le - ls, &nlen)) == 0)
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
		f->nlen = nlen;
		f->val = blk + ls + colon + 1;
		f->vlen = le - (ls + colon + 1);
		return true;
	}
	return false;
}

static bool field_is(const struct field *f, const char *name)
{
	return strlen(name) == f->nlen && strncasecmp(f->name, name, f->nlen) == 0;
}

static bool find_field(const char *blk, size_t len, const char *name, struct field *f)
{
	size_t pos = 0;
	while (next_field(blk, len, &pos, f))
		if (field_is(f, name))
			return true;
	return false;
}

/* ---- MIME parameters (RFC 2045 5.1, comments and all) --------------- */

struct ctype {
	char type[32];
	char sub[64];
	char boundary[BOUNDARY_MAX + 1];
	bool eml;  /* a name or filename parameter ending in ".eml" */
};

static const char *skip_cfws(const char *p, const char *end)
{
	int depth = 0;
	while (p < end) {
		if (depth > 0 && *p == '\\' && p + 1 < end) {
			p += 2;
			continue;
		}
		if (*p == '(')
			depth++;
		else if (*p == ')' && depth > 0)
			depth--;
		else if (depth == 0 && !wsp(*p) && *p != '\r' && *p != '\n')
			break;
		p++;
	}
	return p;
}

static bool tspecial(int c)
{
	return c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

/* Reads a token (lowercased when asked) or, when value is set, a quoted
 * string or anything up to ';' or whitespace (mailers do write unquoted
 * boundaries with '='). Truncates into out; returns false if it did. */
static bool read_word(const char **pp, const char *end, char *out, size_t size, bool value,
                      bool lower)
{
	const char *p = *pp;
	size_t o = 0;
	bool fits = true;
	if (value && p < end && *p == '"') {
		for (p++; p < end && *p != '"'; p++) {
			if (*p == '\\' && p + 1 < end)
				p++;
			if (o + 1 < size)
				out[o++] = *p;
			else
				fits = false;
		}
		if (p < end)
			p++;
	} else {
		for (; p < end; p++) {
			char c = *p;
			if (value ? (c == ';' || wsp(c) || c == '\r' || c == '\n') : tspecial((unsigned char)c))
				break;
			if (lower && c >= 'A' && c <= 'Z')
				c = (char)(c + 32);
			if (o + 1 < size)
				out[o++] = c;
			else
				fits = false;
		}
	}
	out[o] = '\0';
	*pp = p;
	return fits;
}

static bool ends_with_eml(const char *s)
{
	size_t n = strlen(s);
	return n >= 4 && strcasecmp(s + n - 4, ".eml") == 0;
}

/* Content-Type (with_type) or Content-Disposition: fills what we use. */
static void parse_params(const char *v, size_t n, bool with_type, struct ctype *ct)
{
	const char *p = v, *end = v + n;
	if (with_type) {
		p = skip_cfws(p, end);
		read_word(&p, end, ct->type, sizeof(ct->type), false, true);
		p = skip_cfws(p, end);
		if (p < end && *p == '/') {
			p = skip_cfws(p + 1, end);
			read_word(&p, end, ct->sub, sizeof(ct->sub), false, true);
		}
	}
	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		if (!semi)
			break;
		p = skip_cfws(semi + 1, end);
		char attr[32], val[BOUNDARY_MAX + 1];
		read_word(&p, end, attr, sizeof(attr), false, true);
		p = skip_cfws(p, end);
		if (p >= end || *p != '=')
			continue;
		p = skip_cfws(p + 1, end);
		bool fits = read_word(&p, end, val, sizeof(val), true, false);
		if (strcmp(attr, "boundary") == 0 && fits && val[0])
			memcpy(ct->boundary, val, strlen(val) + 1);
		else if ((strcmp(attr, "name") == 0 || strcmp(attr, "filename") == 0 ||
		          strcmp(attr, "name*") == 0 || strcmp(attr, "filename*") == 0) &&
		         ends_with_eml(val))
			ct->eml = true;
	}
}

static void entity_type(const char *hdr, size_t hlen, const char *dflt, struct ctype *ct)
{
	struct field f;
	memset(ct, 0, sizeof(*ct));
	if (find_field(hdr, hlen, "Content-Type", &f))
		parse_params(f.val, f.vlen, true, ct);
	if (!ct->type[0] || !ct->sub[0]) {
		/* RFC 2045 5.2: unparseable means the default */
		const char *slash = strchr(dflt, '/');
		memcpy(ct->type, dflt, (size_t)(slash - dflt));
		ct->type[slash - dflt] = '\0';
		str_lcpy(ct->sub, slash + 1, sizeof(ct->sub));
	}
	if (find_field(hdr, hlen, "Content-Disposition", &f)) {
		struct ctype d;
		memset(&d, 0, sizeof(d));
		parse_params(f.val, f.vlen, false, &d);
		ct->eml |= d.eml;
	}
}

/* ---- transfer encodings ----------------------------------------------- */




static size_t qp_decode(const char *s, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '=') {
			out[o++] = s[i];
			continue;
		}
		size_t j = i + 1;
		while (j < n && wsp(s[j]))
			j++;
		if (j < n && (s[j] == '\n' || (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n'))) {
			i = s[j] == '\n' ? j : j + 1; /* soft line break */
		} else if (i + 2 < n && codec_hexval((unsigned char)s[i + 1]) >= 0 &&
		           codec_hexval((unsigned char)s[i + 2]) >= 0) {
			out[o++] = (char)(codec_hexval((unsigned char)s[i + 1]) << 4 |
			                  codec_hexval((unsigned char)s[i + 2]));
			i += 2;
		} else {
			out[o++] = '=';
		}
	}
	return o;
}

/* ---- the search ---------------------------------------------------------- */

static void search_message(struct search *s, const char *p, size_t len, int depth);

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

static bool message_like(const struct ctype *ct)
{
	if (strcmp(ct->type, "message") == 0)
		return strcmp(ct->sub, "rfc822") == 0 || strcmp(ct->sub, "global") == 0 ||
		       strcmp(ct->sub, "rfc822-headers") == 0 ||
		       strcmp(ct->sub, "global-headers") == 0;
	if (strcmp(ct->type, "text") == 0 && strcmp(ct->sub, "rfc822-headers") == 0)
		return true;
	return ct->eml;
}

/* A delimiter line (without its LF): "--" boundary, then "--" for the
 * close delimiter or only transport padding (RFC 2046 5.1.1). */
static bool delimiter(const char *line, size_t n, const char *b, size_t blen, bool *close)
{
	if (n < 2 + blen || line[0] != '-' || line[1] != '-' || memcmp(line + 2, b, blen) != 0)
		return false;
	size_t i = 2 + blen;
	if (i + 1 < n && line[i] == '-' && line[i + 1] == '-') {
		*close = true;
		return true;
	}
	while (i < n && (wsp(line[i]) || line[i] == '\r'))
		i++;
	*close = false;
	return i == n;
}

static void search_entity(struct search *s, const char *hdr, size_t hlen, const char *body,
                          size_t blen, const char *dflt, int depth);

static void search_multipart(struct search *s, const struct ctype *ct, const char *body,
                             size_t blen, int depth)
{
	const char *b = ct->boundary;
	size_t bl = strlen(b);
	const char *dflt = strcmp(ct->sub, "digest") == 0 ? "message/rfc822" : "text/plain";
	size_t pos = 0, start = 0;
	bool in_part = false;
	while (pos < blen) {
		const char *nl = memchr(body + pos, '\n', blen - pos);
		size_t le = nl ? (size_t)(nl - body) : blen;
		size_t next = nl ? le + 1 : blen;
		bool close;
		if (body[pos] == '-' && delimiter(body + pos, le - pos, b, bl, &close)) {
			if (in_part) {
				/* The line break before a delimiter belongs to it. */
				size_t end = pos;
				if (end > start && body[end - 1] == '\n')
					end--;
				if (end > start && body[end - 1] == '\r')
					end--;
				size_t hl, off;
				split_entity(body + start, end - start, &hl, &off);
				search_entity(s, body + start, hl, body + start + off, end - start - off,
				              dflt, depth + 1);
			}
			if (close)
				return;
			in_part = true;
			start = next;
		}
		pos = next;
	}
	if (in_part && start < blen) {
		/* No close delimiter: reports are often cut short. */
		size_t hl, off;
		split_entity(body + start, blen - start, &hl, &off);
		search_entity(s, body + start, hl, body + start + off, blen - start - off, dflt,
		              depth + 1);
	}
}

static void search_entity(struct search *s, const char *hdr, size_t hlen, const char *body,
                          size_t blen, const char *dflt, int depth)
{
	if (depth > MAX_DEPTH)
		return;
	struct ctype ct;
	entity_type(hdr, hlen, dflt, &ct);
	if (strcmp(ct.type, "multipart") == 0) {
		if (ct.boundary[0])
			search_multipart(s, &ct, body, blen, depth);
		return;
	}
	if (!message_like(&ct))
		return;
	struct field f;
	char cte[32] = "";
	if (find_field(hdr, hlen, "Content-Transfer-Encoding", &f)) {
		const char *p = skip_cfws(f.val, f.val + f.vlen);
		read_word(&p, f.val + f.vlen, cte, sizeof(cte), false, true);
	}
	bool b64 = strcmp(cte, "base64") == 0, qp = strcmp(cte, "quoted-printable") == 0;
	if (!b64 && !qp) {
		search_message(s, body, blen, depth + 1);
		return;
	}
	char *dec = xmalloc(blen + 1);
	/* Lenient, as receivers are (RFC 2045 6.8). */
	size_t n = b64 ? (size_t)codec_b64_decode(body, blen, dec, blen + 1, CODEC_B64_LENIENT)
	               : qp_decode(body, blen, dec);
	search_message(s, dec, n, depth + 1);
	free(dec);
}

/* One message (or headers only): judge its trace headers against its own
 * Message-IDs, then look inside. */
static void search_message(struct search *s, const char *p, size_t len, int depth)
{
	size_t hlen, off;
	split_entity(p, len, &hlen, &off);

	struct trace__msgid ids[TRACE__MSGIDS_MAX];
	size_t nids = 0, pos = 0;
	struct field f;
	while (nids < TRACE__MSGIDS_MAX && next_field(p, hlen, &pos, &f)) {
		if (!field_is(&f, "Message-ID"))
			continue;
		trace__msgid_init(&ids[nids]);
		trace__msgid_add(&ids[nids], f.val, f.vlen);
		nids++;
	}
	if (depth == 0)
		str_lcpy(s->best->message_id, nids ? ids[0].v : "", sizeof(s->best->message_id));

	bool received = false;
	pos = 0;
	while (next_field(p, hlen, &pos, &f)) {
		bool prior = field_is(&f, "X-Postern-Trace-Prior");
		if (depth == 0 && field_is(&f, "Received"))
			received |= received_by_us(f.val, f.vlen, s->gate);
		if (!prior && !field_is(&f, "X-Postern-Trace"))
			continue;
		struct trace_found c;
		c.verdict = trace__header_check(f.val, f.vlen, s->gate, s->keys, s->nkeys, ids, nids,
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
	search_entity(s, p, hlen, p + off, len - off, "text/plain", depth);
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
		if (n > 0 && field_colon(p, le, &nlen) != 0)
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
