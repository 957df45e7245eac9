/*
 * header.c - the X-Postern-Trace header: building it, its MAC, and checking
 * one header value. Finding headers in a message is find.c's job.
 *
 *   X-Postern-Trace: v=1; g=<gate>; id=<trace id>; t=<unix time>;
 *   	k=<key id>; m=<base64 HMAC-SHA-256>
 *
 * The MAC is HMAC-SHA-256 under the key named by k over exactly
 *
 *   "v1\n" gate "\n" trace-id "\n" time "\n" key-id "\n" message-id
 *
 * with time in decimal without sign or leading zeros, and message-id the
 * Message-ID field body normalised as trace__msgid_add() says (unfolded,
 * whitespace runs as one SP, trimmed, cut at 998 bytes; "" without one).
 * No field but the last may contain '\n' (gate and key ids are
 * [A-Za-z0-9._-], the trace id base32), so the input cannot be read two
 * ways. The key id is covered so that a header cannot be re-labelled.
 *
 * Nothing here allocates; builders append to the caller's buffer.
 */
#include "trace/trace.h"
#include "trace/header_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define MAC_LEN 32
#define MAC_B64_LEN 44
#define LINE_MAX_LEN 78

/* ---- Message-ID normalisation ----------------------------------------- */

void trace__msgid_init(struct trace__msgid *m)
{
	m->v[0] = '\0';
	m->len = 0;
	m->space = false;
}

void trace__msgid_add(struct trace__msgid *m, const char *p, size_t n)
{
	for (size_t i = 0; i < n && m->len < TRACE__MSGID_MAX; i++) {
		char c = p[i];
		if (c == '\r' || c == '\n' || c == '\0')
			continue;
		if (c == ' ' || c == '\t') {
			m->space = m->len > 0;
			continue;
		}
		if (m->space) {
			/* No room for the byte after it: the value is full (and
			 * stays so, whatever comes later or however it is split). */
			if (m->len + 2 > TRACE__MSGID_MAX)
				break;
			m->v[m->len++] = ' ';
			m->space = false;
		}
		m->v[m->len++] = c;
	}
	m->v[m->len] = '\0';
}

/* ---- names -------------------------------------------------------------- */

static bool name_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

static bool name_valid(const char *s, size_t n, size_t max)
{
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!name_char((unsigned char)s[i]))
			return false;
	return true;
}

bool trace__gate_valid(const char *s, size_t n)
{
	return name_valid(s, n, 255);
}

bool trace__key_id_valid(const char *s, size_t n)
{
	return name_valid(s, n, TRACE_KEY_ID_MAX);
}

static bool trace_id_valid(const char *s, size_t n)
{
	if (n != TRACE_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '2' && s[i] <= '7')))
			return false;
	return true;
}

const char *trace_verdict_name(enum trace_verdict v)
{
	switch (v) {
	case TRACE_VALID: return "valid";
	case TRACE_MISSING: return "missing";
	case TRACE_MALFORMED: return "malformed";
	case TRACE_OTHER_GATE: return "other_gate";
	case TRACE_UNKNOWN_KEY: return "unknown_key";
	case TRACE_FORGED: return "forged";
	}
	return "unknown";
}

/* ---- the MAC -------------------------------------------------------------- */

static void mac_compute(const struct trace_key *key, const char *gate, size_t gatelen,
                        const char *trace_id, int64_t t, const char *message_id,
                        unsigned char out[MAC_LEN])
{
	struct buf in;
	buf_init(&in);
	buf_puts(&in, "v1\n");
	buf_append(&in, gate, gatelen);
	buf_printf(&in, "\n%s\n%" PRId64 "\n%s\n", trace_id, t, key->id);
	buf_puts(&in, message_id);
	unsigned int len = MAC_LEN;
	if (!HMAC(EVP_sha256(), key->key, (int)key->keylen, (const unsigned char *)in.data,
	          in.len, out, &len) || len != MAC_LEN)
		fatal("trace: HMAC-SHA-256 failed");
	buf_free(&in);
}

void trace_header_make(struct buf *out, const struct trace_key *key, const char *gate,
                       const char *trace_id, int64_t time, const char *message_id)
{
	if (!gate || !trace__gate_valid(gate, strlen(gate)) || !trace_id ||
	    !trace_id_valid(trace_id, strlen(trace_id)) || time < 0 ||
	    !trace__key_id_valid(key->id, strlen(key->id)) || key->keylen > TRACE_KEY_MAX)
		fatal("trace: invalid gate name, trace id, key or time for the trace header");

	struct trace__msgid m;
	trace__msgid_init(&m);
	if (message_id)
		trace__msgid_add(&m, message_id, strlen(message_id));
	unsigned char mac[MAC_LEN];
	mac_compute(key, gate, strlen(gate), trace_id, time, m.v, mac);
	char b64[MAC_B64_LEN + 1];
	EVP_EncodeBlock((unsigned char *)b64, mac, MAC_LEN);

	char tbuf[32];
	snprintf(tbuf, sizeof(tbuf), "%" PRId64, time);
	const char *tags[][2] = {
		{ "v=", "1" }, { "g=", gate }, { "id=", trace_id },
		{ "t=", tbuf }, { "k=", key->id }, { "m=", b64 },
	};
	static const char name[] = "X-Postern-Trace:";
	buf_puts(out, name);
	size_t col = sizeof(name) - 1;
	for (size_t i = 0; i < ARRAY_LEN(tags); i++) {
		size_t w = strlen(tags[i][0]) + strlen(tags[i][1]);
		/* ";" after this tag counts too, except after the last. */
		size_t need = 1 + w + (i + 1 < ARRAY_LEN(tags));
		if (i == 0) {
			buf_puts(out, " ");
		} else if (col + 1 + need > LINE_MAX_LEN) {
			buf_puts(out, ";\r\n\t");
			col = 0;
		} else {
			buf_puts(out, "; ");
			col += 1;
		}
		buf_puts(out, tags[i][0]);
		buf_puts(out, tags[i][1]);
		col += 1 + w;
	}
	buf_puts(out, "\r\n");
	OPENSSL_cleanse(mac, sizeof(mac));
}

/* ---- checking a header value ------------------------------------------- */

static bool fws(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}


/* Exactly the 44 characters EVP_EncodeBlock makes of 32 bytes. */
static bool mac_decode(const char *s, size_t n, unsigned char out[MAC_LEN])
{
	if (n != MAC_B64_LEN || s[43] != '=')
		return false;
	unsigned acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < 43; i++) {
		int v = str_b64val((unsigned char)s[i], false);
		if (v < 0)
			return false;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	return o == MAC_LEN && (acc & 3) == 0;
}

static bool parse_time(const char *s, size_t n, int64_t *t)
{
	if (n == 0 || n > 19 || (n > 1 && s[0] == '0'))
		return false;
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		int d = s[i] - '0';
		if (v > (INT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*t = v;
	return true;
}

enum { TAG_V, TAG_G, TAG_ID, TAG_T, TAG_K, TAG_M, NTAGS };
static const char *const tag_names[NTAGS] = { "v", "g", "id", "t", "k", "m" };

struct span {
	const char *p;
	size_t n;
};

/* Splits "tag=value; ..." with FWS allowed around every token; each of the
 * six tags exactly once, nothing else. Values never contain whitespace or
 * ';', so folding can only have happened between tokens. */
static bool split_tags(const char *s, size_t len, struct span tags[NTAGS])
{
	const char *p = s, *end = s + len;
	memset(tags, 0, NTAGS * sizeof(tags[0]));
	for (;;) {
		while (p < end && fws(*p))
			p++;
		if (p == end)
			break;
		const char *name = p;
		while (p < end && *p != '=' && *p != ';' && !fws(*p))
			p++;
		size_t nlen = (size_t)(p - name);
		while (p < end && fws(*p))
			p++;
		if (p == end || *p != '=')
			return false;
		p++;
		while (p < end && fws(*p))
			p++;
		const char *val = p;
		while (p < end && *p != ';' && !fws(*p))
			p++;
		size_t vlen = (size_t)(p - val);
		while (p < end && fws(*p))
			p++;
		if (p < end && *p != ';')
			return false;
		if (vlen == 0)
			return false;
		int t = -1;
		for (int i = 0; i < NTAGS; i++)
			if (strlen(tag_names[i]) == nlen && memcmp(tag_names[i], name, nlen) == 0)
				t = i;
		if (t < 0 || tags[t].p)
			return false;
		tags[t].p = val;
		tags[t].n = vlen;
		if (p == end)
			break;
		p++; /* ';', maybe a trailing one */
	}
	for (int i = 0; i < NTAGS; i++)
		if (!tags[i].p)
			return false;
	return true;
}

enum trace_verdict trace__header_check(const char *value, size_t len, const char *gate,
                                       const struct trace_key *keys, size_t nkeys,
                                       const char *message_id, struct trace_found *f)
{
	struct span tag[NTAGS];
	unsigned char mac[MAC_LEN];
	int64_t t;

	f->trace_id[0] = f->gate[0] = f->key_id[0] = '\0';
	f->time = 0;
	if (!split_tags(value, len, tag) || tag[TAG_V].n != 1 || tag[TAG_V].p[0] != '1' ||
	    !trace__gate_valid(tag[TAG_G].p, tag[TAG_G].n) ||
	    !trace_id_valid(tag[TAG_ID].p, tag[TAG_ID].n) ||
	    !parse_time(tag[TAG_T].p, tag[TAG_T].n, &t) ||
	    !trace__key_id_valid(tag[TAG_K].p, tag[TAG_K].n) ||
	    !mac_decode(tag[TAG_M].p, tag[TAG_M].n, mac))
		return TRACE_MALFORMED;

	memcpy(f->trace_id, tag[TAG_ID].p, TRACE_ID_LEN);
	f->trace_id[TRACE_ID_LEN] = '\0';
	memcpy(f->gate, tag[TAG_G].p, tag[TAG_G].n);
	f->gate[tag[TAG_G].n] = '\0';
	memcpy(f->key_id, tag[TAG_K].p, tag[TAG_K].n);
	f->key_id[tag[TAG_K].n] = '\0';
	f->time = t;

	/* Gate names are host-like, so case does not make another gate; the
	 * MAC covers the name as written. */
	if (!gate || strcasecmp(f->gate, gate) != 0)
		return TRACE_OTHER_GATE;
	const struct trace_key *key = NULL;
	for (size_t i = 0; i < nkeys && !key; i++)
		if (strcmp(keys[i].id, f->key_id) == 0)
			key = &keys[i];
	if (!key)
		return TRACE_UNKNOWN_KEY;
	unsigned char want[MAC_LEN];
	mac_compute(key, f->gate, strlen(f->gate), f->trace_id, t, message_id ? message_id : "",
	            want);
	bool ok = CRYPTO_memcmp(want, mac, MAC_LEN) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	return ok ? TRACE_VALID : TRACE_FORGED;
}
