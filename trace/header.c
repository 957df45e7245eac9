/*
 * header.c - the X-Postern-Trace header: building it, its MAC, and checking
 * one header value. Finding headers in a message is find.c's job.
 *
 *   X-Postern-Trace: v=2; g=<gate>; id=<trace id>; t=<unix time>;
 *   	k=<key id>; m=<base64 HMAC-SHA-256>
 *
 * The MAC is HMAC-SHA-256 under the key named by k over exactly
 *
 *   "v2\n" gate "\n" trace-id "\n" time "\n" key-id "\n" msg-id
 *
 * with time in decimal without sign or leading zeros, and msg-id the
 * message's Message-ID as trace__msgid_add() has it for v=2: every SP, HTAB,
 * CR and LF dropped, then the "<...>" alone (cut at 998 bytes; "" when the
 * message has no Message-ID). That is what survives relaying: MTAs add
 * headers, reorder and refold them, some fold where RFC 5322 allows no
 * folding or drop comments, but none changes a Message-ID that is there.
 * Binding the MAC to it (and to nothing else of the message: subjects,
 * bodies and From lines are rewritten by lists and filters every day) is
 * what lets a header moved onto another message fail there, and lets
 * find.c tell which of a message's headers is its own. A submission agent
 * adds the Message-ID a client left out (scan.c), so that no later MTA
 * adds one the MAC cannot know. No field but the last may contain '\n'
 * (gate and key ids are [A-Za-z0-9._-], the trace id base32), so the input
 * cannot be read two ways. The key id is covered so that a header cannot
 * be re-labelled.
 *
 * v=1 headers, issued before, are still verified: the same input with "v1"
 * and the Message-ID unfolded with whitespace runs made one SP and trimmed.
 *
 * Nothing here allocates but the MAC input; builders append to the caller's
 * buffer.
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
#define VERSION 2

/* ---- Message-ID normalisation ----------------------------------------- */

void trace__msgid_init(struct trace__msgid *m)
{
	m->v[0] = m->v1[0] = '\0';
	m->len = m->len1 = 0;
	m->angle = 0;
	m->space = m->full1 = false;
}

static void msgid_add_v2(struct trace__msgid *m, char c)
{
	if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\0' || m->angle == 2)
		return;
	if (c == '<') {
		/* What came before was a comment or junk: the msg-id starts here. */
		m->len = 0;
		m->angle = 1;
	} else if (c == '>' && m->angle == 1) {
		m->angle = 2;
	}
	if (m->len < TRACE__MSGID_MAX)
		m->v[m->len++] = c;
}

static void msgid_add_v1(struct trace__msgid *m, char c)
{
	if (m->full1 || m->len1 >= TRACE__MSGID_MAX || c == '\r' || c == '\n' || c == '\0')
		return;
	if (c == ' ' || c == '\t') {
		m->space = m->len1 > 0;
		return;
	}
	if (m->space) {
		/* No room for the byte after it: the value is full, and stays so
		 * whatever comes later or however it is split. */
		if (m->len1 + 2 > TRACE__MSGID_MAX) {
			m->full1 = true;
			return;
		}
		m->v1[m->len1++] = ' ';
		m->space = false;
	}
	m->v1[m->len1++] = c;
}

void trace__msgid_add(struct trace__msgid *m, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		msgid_add_v2(m, p[i]);
		msgid_add_v1(m, p[i]);
	}
	m->v[m->len] = '\0';
	m->v1[m->len1] = '\0';
}

const char *trace__msgid_form(const struct trace__msgid *m, int version)
{
	return version == 1 ? m->v1 : m->v;
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
	case TRACE_COPIED: return "copied";
	}
	return "unknown";
}

/* ---- the MAC -------------------------------------------------------------- */

static void mac_compute(const struct trace_key *key, int version, const char *gate,
                        const char *trace_id, int64_t t, const char *message_id,
                        unsigned char out[MAC_LEN])
{
	struct buf in;
	buf_init(&in);
	buf_printf(&in, "v%d\n%s\n%s\n%" PRId64 "\n%s\n", version, gate, trace_id, t, key->id);
	buf_puts(&in, message_id);
	unsigned int len = MAC_LEN;
	if (!HMAC(EVP_sha256(), key->key, (int)key->keylen, (const unsigned char *)in.data,
	          in.len, out, &len) || len != MAC_LEN)
		fatal("trace: HMAC-SHA-256 failed");
	buf_free(&in);
}

void trace__header_make(struct buf *out, const struct trace_key *key, const char *gate,
                        const char *trace_id, int64_t time, const char *message_id,
                        int version)
{
	if (!gate || !trace__gate_valid(gate, strlen(gate)) || !trace_id ||
	    !trace_id_valid(trace_id, strlen(trace_id)) || time < 0 ||
	    !trace__key_id_valid(key->id, strlen(key->id)) || key->keylen > TRACE_KEY_MAX ||
	    (version != 1 && version != 2))
		fatal("trace: invalid gate name, trace id, key or time for the trace header");

	struct trace__msgid m;
	trace__msgid_init(&m);
	if (message_id)
		trace__msgid_add(&m, message_id, strlen(message_id));
	unsigned char mac[MAC_LEN];
	mac_compute(key, version, gate, trace_id, time, trace__msgid_form(&m, version), mac);
	char b64[MAC_B64_LEN + 1];
	codec_b64_encode(mac, MAC_LEN, b64);

	char tbuf[32], vbuf[4];
	snprintf(tbuf, sizeof(tbuf), "%" PRId64, time);
	snprintf(vbuf, sizeof(vbuf), "%d", version);
	const char *tags[][2] = {
		{ "v=", vbuf }, { "g=", gate }, { "id=", trace_id },
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

void trace_header_make(struct buf *out, const struct trace_key *key, const char *gate,
                       const char *trace_id, int64_t time, const char *message_id)
{
	trace__header_make(out, key, gate, trace_id, time, message_id, VERSION);
}

/* ---- checking a header value ------------------------------------------- */

static bool fws(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Exactly the 44 characters base64 makes of 32 bytes, folding
 * whitespace anywhere among them (DKIM allows it in b= for the same reason:
 * a long base64 token is where careless folding cuts). */
static bool mac_decode(const char *s, size_t n, unsigned char out[MAC_LEN])
{
	char b64[MAC_B64_LEN];
	size_t chars = 0;
	for (size_t i = 0; i < n; i++) {
		if (fws((unsigned char)s[i]))
			continue;
		if (chars == MAC_B64_LEN)
			return false;
		b64[chars++] = s[i];
	}
	return chars == MAC_B64_LEN && b64[MAC_B64_LEN - 1] == '=' &&
	       codec_b64_decode(b64, chars, out, MAC_LEN, 0) == MAC_LEN;
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

/* Splits "tag=value; ..." with FWS allowed around every token and inside
 * the MAC; each of the six tags exactly once, nothing else. The other
 * values never contain whitespace or ';', so folding can only have
 * happened between their tokens. */
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
		int t = -1;
		for (int i = 0; i < NTAGS; i++)
			if (strlen(tag_names[i]) == nlen && memcmp(tag_names[i], name, nlen) == 0)
				t = i;
		const char *val = p;
		while (p < end && *p != ';' && (t == TAG_M || !fws(*p)))
			p++;
		size_t vlen = (size_t)(p - val);
		while (vlen > 0 && fws(val[vlen - 1]))
			vlen--;
		while (p < end && fws(*p))
			p++;
		if (p < end && *p != ';')
			return false;
		if (vlen == 0)
			return false;
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

static const struct trace_key *key_named(const struct trace_key *keys, size_t nkeys,
                                         const char *id)
{
	for (size_t i = 0; i < nkeys; i++)
		if (strcmp(keys[i].id, id) == 0)
			return &keys[i];
	return NULL;
}

static bool mac_matches(const struct trace_key *key, const struct trace_found *f,
                        const char *message_id)
{
	unsigned char want[MAC_LEN];
	mac_compute(key, f->version, f->gate, f->trace_id, f->time, message_id, want);
	bool ok = CRYPTO_memcmp(want, f->mac, MAC_LEN) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}

enum trace_verdict trace__header_check(const char *value, size_t len, const char *gate,
                                       const struct trace_key *keys, size_t nkeys,
                                       const struct trace__msgid *ids, size_t nids,
                                       struct trace_found *f)
{
	struct span tag[NTAGS];
	int64_t t;

	f->trace_id[0] = f->gate[0] = f->key_id[0] = '\0';
	f->time = 0;
	f->version = 0;
	memset(f->mac, 0, sizeof(f->mac));
	/* Until one verifies: the first, as this version would sign it. */
	f->message_id[0] = '\0';
	if (!split_tags(value, len, tag) || tag[TAG_V].n != 1 ||
	    (tag[TAG_V].p[0] != '1' && tag[TAG_V].p[0] != '2') ||
	    !trace__gate_valid(tag[TAG_G].p, tag[TAG_G].n) ||
	    !trace_id_valid(tag[TAG_ID].p, tag[TAG_ID].n) ||
	    !parse_time(tag[TAG_T].p, tag[TAG_T].n, &t) ||
	    !trace__key_id_valid(tag[TAG_K].p, tag[TAG_K].n) ||
	    !mac_decode(tag[TAG_M].p, tag[TAG_M].n, f->mac)) {
		memset(f->mac, 0, sizeof(f->mac));
		if (nids)
			str_lcpy(f->message_id, ids[0].v, sizeof(f->message_id));
		return TRACE_MALFORMED;
	}

	f->version = tag[TAG_V].p[0] - '0';
	memcpy(f->trace_id, tag[TAG_ID].p, TRACE_ID_LEN);
	f->trace_id[TRACE_ID_LEN] = '\0';
	memcpy(f->gate, tag[TAG_G].p, tag[TAG_G].n);
	f->gate[tag[TAG_G].n] = '\0';
	memcpy(f->key_id, tag[TAG_K].p, tag[TAG_K].n);
	f->key_id[tag[TAG_K].n] = '\0';
	f->time = t;
	if (nids)
		str_lcpy(f->message_id, trace__msgid_form(&ids[0], f->version),
		         sizeof(f->message_id));

	/* Gate names are host-like, so case does not make another gate; the
	 * MAC covers the name as written. */
	if (!gate || strcasecmp(f->gate, gate) != 0)
		return TRACE_OTHER_GATE;
	const struct trace_key *key = key_named(keys, nkeys, f->key_id);
	if (!key)
		return TRACE_UNKNOWN_KEY;
	/* Each Message-ID field in turn: a relay that reorders fields may put
	 * a second one (RFC 5322 allows only one, clients send two) first.
	 * None at all is the empty msg-id, and only then. */
	for (size_t i = 0; i < (nids ? nids : 1); i++) {
		const char *mid = nids ? trace__msgid_form(&ids[i], f->version) : "";
		if (mac_matches(key, f, mid)) {
			str_lcpy(f->message_id, mid, sizeof(f->message_id));
			return TRACE_VALID;
		}
	}
	return TRACE_FORGED;
}

enum trace_verdict trace_header_against_record(const struct trace_found *f,
                                               const struct trace_key *keys, size_t nkeys,
                                               const char *recorded)
{
	if (f->verdict != TRACE_VALID && f->verdict != TRACE_FORGED)
		return f->verdict;
	/* The record keeps the Message-ID as the scanner normalised it when it
	 * signed; normalising it again for the header's version is a no-op on
	 * what that version signed. */
	struct trace__msgid m;
	trace__msgid_init(&m);
	if (recorded)
		trace__msgid_add(&m, recorded, strlen(recorded));
	const char *want = trace__msgid_form(&m, f->version);
	if (f->verdict == TRACE_VALID)
		return strcmp(want, f->message_id) == 0 ? TRACE_VALID : TRACE_COPIED;
	/* Forged here, but perhaps genuine on the message it was issued for. */
	const struct trace_key *key = key_named(keys, nkeys, f->key_id);
	if (f->version && key && mac_matches(key, f, want))
		return TRACE_COPIED;
	return TRACE_FORGED;
}
