/*
 * mime.c - the MIME walk (RFC 2045, 2046) the trace lookup needs: the
 * type and parameters of an entity, multipart bodies cut at their
 * delimiters, and the messages enclosed in them (message/rfc822 and its
 * kin, .eml attachments), decoded from base64 or quoted-printable.
 *
 * Ownership: decoded copies live for the callback only.
 */
#include "msg/msg.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool wsp(int c)
{
	return c == ' ' || c == '\t';
}

/* ---- parameters (RFC 2045 5.1, comments and all) ------------------------- */

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
static void parse_params(const char *v, size_t n, bool with_type, struct msg_mime_type *ct)
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
		char attr[32], val[MSG_MIME_BOUNDARY_MAX + 1];
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

void msg_mime_type(const char *hdr, size_t hlen, const char *dflt, struct msg_mime_type *ct)
{
	struct msg_field f;
	memset(ct, 0, sizeof(*ct));
	if (msg_field_find(hdr, hlen, "Content-Type", &f))
		parse_params(f.value, f.value_len, true, ct);
	if (!ct->type[0] || !ct->sub[0]) {
		/* RFC 2045 5.2: unparseable means the default */
		const char *slash = strchr(dflt, '/');
		memcpy(ct->type, dflt, (size_t)(slash - dflt));
		ct->type[slash - dflt] = '\0';
		str_lcpy(ct->sub, slash + 1, sizeof(ct->sub));
	}
	if (msg_field_find(hdr, hlen, "Content-Disposition", &f)) {
		struct msg_mime_type d;
		memset(&d, 0, sizeof(d));
		parse_params(f.value, f.value_len, false, &d);
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

bool msg_mime_is_message(const struct msg_mime_type *ct)
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

struct walk {
	msg_mime_fn fn;
	void *ctx;
	int max_depth;
};

static void walk_entity(const struct walk *w, const char *hdr, size_t hlen, const char *body,
                        size_t blen, const char *dflt, int depth);

static void walk_part(const struct walk *w, const char *part, size_t len, const char *dflt,
                      int depth)
{
	size_t hl, off;
	msg_header_split(part, len, &hl, &off);
	walk_entity(w, part, hl, part + off, len - off, dflt, depth);
}

static void walk_multipart(const struct walk *w, const struct msg_mime_type *ct,
                           const char *body, size_t blen, int depth)
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
				walk_part(w, body + start, end - start, dflt, depth + 1);
			}
			if (close)
				return;
			in_part = true;
			start = next;
		}
		pos = next;
	}
	if (in_part && start < blen)
		walk_part(w, body + start, blen - start, dflt, depth + 1);
}

static void walk_entity(const struct walk *w, const char *hdr, size_t hlen, const char *body,
                        size_t blen, const char *dflt, int depth)
{
	if (depth > w->max_depth)
		return;
	struct msg_mime_type ct;
	msg_mime_type(hdr, hlen, dflt, &ct);
	if (strcmp(ct.type, "multipart") == 0) {
		if (ct.boundary[0])
			walk_multipart(w, &ct, body, blen, depth);
		return;
	}
	if (!msg_mime_is_message(&ct))
		return;
	struct msg_field f;
	char cte[32] = "";
	if (msg_field_find(hdr, hlen, "Content-Transfer-Encoding", &f)) {
		const char *p = skip_cfws(f.value, f.value + f.value_len);
		read_word(&p, f.value + f.value_len, cte, sizeof(cte), false, true);
	}
	bool b64 = strcmp(cte, "base64") == 0, qp = strcmp(cte, "quoted-printable") == 0;
	if (!b64 && !qp) {
		w->fn(w->ctx, body, blen, depth + 1);
		return;
	}
	char *dec = xmalloc(blen + 1);
	/* Lenient, as receivers are (RFC 2045 6.8). */
	size_t n = b64 ? (size_t)codec_b64_decode(body, blen, dec, blen + 1, CODEC_B64_LENIENT)
	               : qp_decode(body, blen, dec);
	w->fn(w->ctx, dec, n, depth + 1);
	free(dec);
}

void msg_mime_walk(const char *hdr, size_t hlen, const char *body, size_t blen,
                   const char *dflt, int depth, int max_depth, msg_mime_fn fn, void *ctx)
{
	struct walk w = { fn, ctx, max_depth };
	walk_entity(&w, hdr, hlen, body, blen, dflt, depth);
}
