/*
 * Unit tests for the signed trace header: ids, the key file, building and
 * checking the header, finding it in messages and abuse reports, and the
 * streaming scanner that inserts it and hashes the message.
 */
#include "trace/trace.h"
#include "msg/msg.h"
#include "trace/header_int.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>

#define GATE "gw1.example.net"
#define TID "abcdefghijklmnopqrstuvwxyz"
#define T0 1700000000

static struct trace_key key_new, key_old, key_evil;

static void set_key(struct trace_key *k, const char *id, unsigned char fill)
{
	memset(k, 0, sizeof(*k));
	str_lcpy(k->id, id, sizeof(k->id));
	for (size_t i = 0; i < 32; i++)
		k->key[i] = (unsigned char)(fill + i);
	k->keylen = 32;
}

static void setup(void)
{
	set_key(&key_new, "new", 0x10);
	set_key(&key_old, "old", 0x80);
	set_key(&key_evil, "new", 0x11); /* our key id, another secret */
}

static const char plain_msg[] =
	"From: Alice <alice@example.org>\r\n"
	"To: bob@example.com\r\n"
	"Message-ID: <20231114.1234@example.org>\r\n"
	"Subject: hello\r\n"
	"\r\n"
	"Hello Bob.\r\n";

/* Runs raw through a scanner in one piece, with a Message-ID to add when
 * add is set; returns the output (free()). */
static char *scan_with(const struct trace_key *key, const char *add, const char *raw,
                       size_t len, char sha[65])
{
	struct trace_scan *ts = trace_scan_new(key, GATE, TID, T0);
	if (add)
		trace_scan_add_message_id(ts, add);
	struct buf out;
	buf_init(&out);
	trace_scan_feed(ts, raw, len, &out);
	trace_scan_finish(ts, &out);
	if (sha)
		memcpy(sha, trace_scan_sha256(ts), 65);
	trace_scan_free(ts);
	buf_append(&out, "", 0);
	if (!out.data)
		return str_dup("");
	return out.data;
}

static char *scan_all(const struct trace_key *key, const char *raw, size_t len, char sha[65])
{
	return scan_with(key, NULL, raw, len, sha);
}

static char *signed_msg(const struct trace_key *key)
{
	return scan_all(key, plain_msg, strlen(plain_msg), NULL);
}

static enum trace_verdict check(const char *msg, const struct trace_key *keys, size_t n,
                                struct trace_found *f)
{
	struct trace_found local;
	if (!f)
		f = &local;
	ck_assert_int_eq(trace_header_find(msg, strlen(msg), GATE, keys, n, f), 0);
	return f->verdict;
}

/* Replaces the first occurrence of from with to; returns a new string. */
static char *replace(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);
	ck_assert_ptr_nonnull(at);
	struct buf b;
	buf_init(&b);
	buf_append(&b, s, (size_t)(at - s));
	buf_puts(&b, to);
	buf_puts(&b, at + strlen(from));
	return b.data;
}

/* Replaces every occurrence. */
static char *replace_all(const char *s, const char *from, const char *to)
{
	struct buf b;
	buf_init(&b);
	const char *at;
	while ((at = strstr(s, from))) {
		buf_append(&b, s, (size_t)(at - s));
		buf_puts(&b, to);
		s = at + strlen(from);
	}
	buf_puts(&b, s);
	return b.data;
}

/* The value of our header in msg (after "X-Postern-Trace:"), up to CRLF
 * not followed by WSP. */
static char *header_value(const char *msg)
{
	const char *p = strstr(msg, "X-Postern-Trace:");
	ck_assert_ptr_nonnull(p);
	p += strlen("X-Postern-Trace:");
	const char *e = p;
	while (!(e[0] == '\r' && e[1] == '\n' && e[2] != ' ' && e[2] != '\t'))
		e++;
	return str_ndup(p, (size_t)(e - p));
}

/* ---- ids and keys -------------------------------------------------------- */

START_TEST(test_new_id)
{
	char a[TRACE_ID_LEN + 1], b[TRACE_ID_LEN + 1];
	trace_new_id(a);
	trace_new_id(b);
	ck_assert_uint_eq(strlen(a), TRACE_ID_LEN);
	ck_assert_uint_eq(strspn(a, "abcdefghijklmnopqrstuvwxyz234567"), TRACE_ID_LEN);
	ck_assert_str_ne(a, b);
	/* 128 bits: the last character carries 3 bits and 2 zero bits. */
	ck_assert_ptr_nonnull(strchr("aeimquy4", a[25]));
}
END_TEST

static char key_path[64];

static void write_keys(const char *text, mode_t mode)
{
	strcpy(key_path, "/tmp/postern-keys-XXXXXX");
	int fd = mkstemp(key_path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(file_write_all(fd, text, strlen(text)), 0);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

static int load(const char *text, mode_t mode, struct trace_key **keys, size_t *n, char *err)
{
	write_keys(text, mode);
	int rc = trace_keys_load(key_path, keys, n, err, 256);
	unlink(key_path);
	return rc;
}

START_TEST(test_keys_load)
{
	struct trace_key *keys;
	size_t n;
	char err[256];
	int rc = load("# trace keys\n"
	              "\n"
	              "k2024-b   00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n"
	              "  k2023.a\tAAECAwQFBgcICQoLDA0ODw==   \r\n"
	              "old_1 AAECAwQFBgcICQoLDA0ODxAREhM\n",
	              0600, &keys, &n, err);
	ck_assert_msg(rc == 0, "%s", err);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(keys[0].id, "k2024-b");
	ck_assert_uint_eq(keys[0].keylen, 32);
	ck_assert_uint_eq(keys[0].key[1], 0x11);
	ck_assert_uint_eq(keys[0].key[31], 0xff);
	ck_assert_str_eq(keys[1].id, "k2023.a");
	ck_assert_uint_eq(keys[1].keylen, 16);
	ck_assert_uint_eq(keys[1].key[15], 15);
	ck_assert_str_eq(keys[2].id, "old_1");
	ck_assert_uint_eq(keys[2].keylen, 20);
	free(keys);
}
END_TEST

START_TEST(test_keys_errors)
{
	static const struct {
		const char *text;
		const char *want;  /* ":<line>: " and a word of the reason */
	} cases[] = {
		{ "a 00112233445566778899aabbccddeeff\nb\n", ":2: expected" },
		{ "# x\n\nbad/id 00112233445566778899aabbccddeeff\n", ":3: key id" },
		{ "a 00112233445566778899aabbccddeeff\na 00112233445566778899aabbccddeeff00\n",
		  ":2: duplicate" },
		{ "a 0011223344556677\n", ":1: secret shorter" },
		{ "a 00112233445566778899aabbccddeeff zz\n", ":1: unexpected" },
		{ "a not*base64*at*all!!\n", ":1: secret is neither" },
		{ "a AAECAwQFBgcICQoLDA0ODw=\n", ":1: secret is neither" },
		{ "x123456789012345678901234567890123 00112233445566778899aabbccddeeff\n",
		  ":1: key id" },
		{ "a 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
		  "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40\n",
		  ":1: secret is neither" },
		{ "# only comments\n\n", ": no keys" },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct trace_key *keys = (void *)1;
		size_t n = 99;
		char err[256] = "";
		ck_assert_int_eq(load(cases[i].text, 0600, &keys, &n, err), -1);
		ck_assert_ptr_null(keys);
		ck_assert_uint_eq(n, 0);
		ck_assert_msg(strstr(err, cases[i].want) != NULL, "case %zu: %s", i, err);
		ck_assert_msg(strncmp(err, "/tmp/postern-keys-", 18) == 0, "%s", err);
		/* the secret never shows */
		ck_assert(strstr(err, "0011223344") == NULL);
	}
}
END_TEST

START_TEST(test_keys_mode)
{
	struct trace_key *keys;
	size_t n;
	char err[256];
	static const char ok[] = "a 00112233445566778899aabbccddeeff\n";
	ck_assert_int_eq(load(ok, 0640, &keys, &n, err), -1);
	ck_assert_ptr_nonnull(strstr(err, "mode 0640"));
	ck_assert_int_eq(load(ok, 0604, &keys, &n, err), -1);
	ck_assert_int_eq(load(ok, 0400, &keys, &n, err), 0);
	ck_assert_uint_eq(n, 1);
	free(keys);
	ck_assert_int_eq(trace_keys_load("/nonexistent/keys", &keys, &n, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/keys: "));
}
END_TEST

/* ---- the header ------------------------------------------------------------ */

START_TEST(test_verdict_names)
{
	ck_assert_str_eq(trace_verdict_name(TRACE_VALID), "valid");
	ck_assert_str_eq(trace_verdict_name(TRACE_MISSING), "missing");
	ck_assert_str_eq(trace_verdict_name(TRACE_MALFORMED), "malformed");
	ck_assert_str_eq(trace_verdict_name(TRACE_OTHER_GATE), "other_gate");
	ck_assert_str_eq(trace_verdict_name(TRACE_UNKNOWN_KEY), "unknown_key");
	ck_assert_str_eq(trace_verdict_name(TRACE_FORGED), "forged");
	ck_assert_str_eq(trace_verdict_name(TRACE_COPIED), "copied");
}
END_TEST

START_TEST(test_make_format)
{
	struct buf b;
	buf_init(&b);
	trace_header_make(&b, &key_new, GATE, TID, T0, "<x@y>");
	static const char want[] =
		"X-Postern-Trace: v=2; g=" GATE "; id=" TID ";\r\n\tt=1700000000; k=new; m=";
	ck_assert(strncmp(b.data, want, strlen(want)) == 0);
	ck_assert(b.len > 2 && memcmp(b.data + b.len - 3, "=\r\n", 3) == 0);
	/* every line within 78 characters */
	for (const char *p = b.data; *p;) {
		const char *e = strstr(p, "\r\n");
		ck_assert_ptr_nonnull(e);
		ck_assert_int_le(e - p, 78);
		p = e + 2;
	}
	/* the Message-ID is normalised, so folding it differently changes nothing */
	struct buf c;
	buf_init(&c);
	trace_header_make(&c, &key_new, GATE, TID, T0, " \r\n\t<x@y>  ");
	ck_assert_str_eq(b.data, c.data);
	buf_free(&c);
	/* a short gate fits on fewer lines but keeps the format */
	buf_init(&c);
	trace_header_make(&c, &key_new, "g", TID, 0, NULL);
	ck_assert(strncmp(c.data, "X-Postern-Trace: v=2; g=g; id=" TID "; t=0; k=new;", 45) == 0);
	buf_free(&c);
	buf_free(&b);
}
END_TEST

START_TEST(test_roundtrip)
{
	char *m = signed_msg(&key_new);
	ck_assert_ptr_nonnull(strstr(m, "Subject: hello\r\nX-Postern-Trace: v=2; g=" GATE));
	ck_assert_ptr_nonnull(strstr(m, "=\r\n\r\nHello Bob.\r\n"));
	struct trace_found f;
	ck_assert_int_eq(check(m, &key_new, 1, &f), TRACE_VALID);
	ck_assert_str_eq(f.trace_id, TID);
	ck_assert_int_eq(f.time, T0);
	ck_assert_str_eq(f.gate, GATE);
	ck_assert_str_eq(f.key_id, "new");
	ck_assert_str_eq(f.message_id, "<20231114.1234@example.org>");
	/* the gate name is compared without regard to case */
	ck_assert_int_eq(trace_header_find(m, strlen(m), "GW1.Example.NET", &key_new, 1, &f), 0);
	ck_assert_int_eq(f.verdict, TRACE_VALID);
	free(m);
}
END_TEST

START_TEST(test_altered)
{
	char *m = signed_msg(&key_new);
	struct trace_found f;
	char *x;

	x = replace(m, "<20231114.1234@", "<20231114.1235@");
	ck_assert_int_eq(check(x, &key_new, 1, &f), TRACE_FORGED);
	ck_assert_str_eq(f.trace_id, TID); /* still reported, for the desk */
	free(x);
	x = replace(m, "Message-ID: <20231114.1234@example.org>\r\n", "");
	ck_assert_int_eq(check(x, &key_new, 1, NULL), TRACE_FORGED);
	free(x);
	x = replace(m, "id=abcdefg", "id=abcdefh");
	ck_assert_int_eq(check(x, &key_new, 1, &f), TRACE_FORGED);
	ck_assert_str_eq(f.trace_id, "abcdefhhijklmnopqrstuvwxyz");
	free(x);
	x = replace(m, "t=1700000000", "t=1700000001");
	ck_assert_int_eq(check(x, &key_new, 1, NULL), TRACE_FORGED);
	free(x);
	x = replace(m, "g=gw1.", "g=gw2.");
	ck_assert_int_eq(check(x, &key_new, 1, &f), TRACE_OTHER_GATE);
	ck_assert_str_eq(f.gate, "gw2.example.net");
	free(x);
	/* another gate sees our header as not its own */
	ck_assert_int_eq(trace_header_find(m, strlen(m), "gw2.example.net", &key_new, 1, &f), 0);
	ck_assert_int_eq(f.verdict, TRACE_OTHER_GATE);
	/* relabelling the key is caught: the key id is under the MAC */
	struct trace_key alias = key_new;
	strcpy(alias.id, "alias");
	x = replace(m, "k=new", "k=alias");
	ck_assert_int_eq(check(x, &alias, 1, NULL), TRACE_FORGED);
	free(x);
	free(m);
}
END_TEST

START_TEST(test_mac_altered)
{
	char *m = signed_msg(&key_new);
	char *p = strstr(m, "m=") + 2;
	p[5] = p[5] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(check(m, &key_new, 1, NULL), TRACE_FORGED);
	free(m);
}
END_TEST

START_TEST(test_keys_verdicts)
{
	char *m = signed_msg(&key_new);
	ck_assert_int_eq(check(m, &key_evil, 1, NULL), TRACE_FORGED);
	struct trace_found f;
	ck_assert_int_eq(check(m, &key_old, 1, &f), TRACE_UNKNOWN_KEY);
	ck_assert_str_eq(f.key_id, "new");
	ck_assert_int_eq(trace_header_find(m, strlen(m), GATE, NULL, 0, &f), 0);
	ck_assert_int_eq(f.verdict, TRACE_UNKNOWN_KEY);
	free(m);

	/* rotation: signed with the old key, which now comes second */
	m = signed_msg(&key_old);
	struct trace_key ring[2] = { key_new, key_old };
	ck_assert_int_eq(check(m, ring, 2, &f), TRACE_VALID);
	ck_assert_str_eq(f.key_id, "old");
	free(m);
}
END_TEST

START_TEST(test_missing)
{
	struct trace_found f;
	ck_assert_int_eq(check(plain_msg, &key_new, 1, &f), TRACE_MISSING);
	ck_assert_str_eq(f.message_id, "<20231114.1234@example.org>");
	ck_assert_str_eq(f.trace_id, "");
	ck_assert_int_eq(check("Subject: x\r\n", &key_new, 1, &f), TRACE_MISSING);
	ck_assert_str_eq(f.message_id, "");
	/* a mention in the body is not a header */
	ck_assert_int_eq(check("Subject: x\r\n\r\nX-Postern-Trace: v=1\r\n", &key_new, 1, NULL),
	                 TRACE_MISSING);
}
END_TEST

START_TEST(test_not_a_message)
{
	struct trace_found f;
	static const char bin[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
	ck_assert_int_eq(trace_header_find("", 0, GATE, &key_new, 1, &f), -1);
	ck_assert_int_eq(trace_header_find(NULL, 0, GATE, &key_new, 1, &f), -1);
	ck_assert_int_eq(trace_header_find(bin, sizeof(bin) - 1, GATE, &key_new, 1, &f), -1);
	ck_assert_int_eq(trace_header_find("\r\nbody\r\n", 8, GATE, &key_new, 1, &f), -1);
	ck_assert_int_eq(trace_header_find("just some text\n", 15, GATE, &key_new, 1, &f), -1);
	ck_assert_int_eq(trace_header_find(" folded: x\n", 11, GATE, &key_new, 1, &f), -1);
	/* an mbox "From " line is skipped */
	char *m = signed_msg(&key_new);
	char *x = str_printf("From alice@example.org Tue Nov 14 22:13:20 2023\n%s", m);
	ck_assert_int_eq(check(x, &key_new, 1, NULL), TRACE_VALID);
	free(x);
	free(m);
}
END_TEST

START_TEST(test_malformed)
{
	char *m = signed_msg(&key_new);
	char *v = header_value(m);
	char *mac = strstr(v, "m=");
	static const struct {
		const char *from, *to;
	} edits[] = {
		{ "v=2", "v=3" },
		{ "v=2", "v=0" },
		{ "v=2", "v=22" },
		{ "v=2;", "v=2; v=2;" },
		{ "v=2;", "" },
		{ "v=2;", "v=2; x=y;" },
		{ "t=1700000000", "t=01700000000" },
		{ "t=1700000000", "t=-1700000000" },
		{ "t=1700000000", "t=99999999999999999999" },
		{ "t=1700000000", "t=" },
		{ "id=abcdefghijklmnopqrstuvwxyz", "id=abcdefghijklmnopqrstuvwxy" },
		{ "id=abcdefghijklmnopqrstuvwxyz", "id=ABCDEFGHIJKLMNOPQRSTUVWXYZ" },
		{ "id=abcdefghijklmnopqrstuvwxyz", "id=abcdefghijklmnopqrstuvwxy1" },
		{ "g=gw1.example.net", "g=gw1 example.net" },
		{ "g=gw1.example.net", "g=gw1/example.net" },
		{ "k=new", "k=n\"ew" },
		{ "k=new", "k=" },
		{ "k=new", "k=x123456789012345678901234567890123" },
		{ "m=", "m=!" },
		{ "m=", "m=A" },
		{ "; id=", " id=" },
		{ "; id=", ";; id=" },
		{ "v=2", "v =" },
		{ "t=1700000000", "t=1700 000000" },
		{ "k=new", "k=n ew" },
	};
	for (size_t i = 0; i < ARRAY_LEN(edits); i++) {
		char *nv = replace(v, edits[i].from, edits[i].to);
		char *x = replace(m, v, nv);
		struct trace_found f;
		ck_assert_msg(check(x, &key_new, 1, &f) == TRACE_MALFORMED, "edit %zu: %s", i, nv);
		ck_assert_str_eq(f.trace_id, "");
		free(x);
		free(nv);
	}
	/* the MAC must be exactly 32 bytes of canonical base64 */
	static const char b43[] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB";
	char *nv = str_printf("%.*sm=%s", (int)(mac - v), v, b43);
	char *x = replace(m, v, nv);
	ck_assert_int_eq(check(x, &key_new, 1, NULL), TRACE_MALFORMED);
	free(x);
	free(nv);
	nv = str_printf("%.*sm=%s=", (int)(mac - v), v, b43);
	x = replace(m, v, nv);
	ck_assert_int_eq(check(x, &key_new, 1, NULL), TRACE_MALFORMED);
	free(x);
	free(nv);
	/* order does not matter, a trailing ';' and spacing are fine */
	nv = str_printf(" %s; %.*s ;  ", mac, (int)(mac - v - 3), v + 1);
	x = replace(m, v, nv);
	ck_assert_msg(check(x, &key_new, 1, NULL) == TRACE_VALID, "%s", nv);
	free(x);
	free(nv);

	ck_assert_int_eq(check("Subject: x\r\nX-Postern-Trace: hello world\r\n\r\n", &key_new, 1,
	                       NULL), TRACE_MALFORMED);
	ck_assert_int_eq(check("Subject: x\r\nX-Postern-Trace:\r\n\r\n", &key_new, 1, NULL),
	                 TRACE_MALFORMED);
	ck_assert_int_eq(check("x-postern-trace : ;;;===\r\n", &key_new, 1, NULL), TRACE_MALFORMED);
	free(v);
	free(m);
}
END_TEST

START_TEST(test_several_headers)
{
	char *m = signed_msg(&key_new);
	char *good = header_value(m);
	char *other = replace(good, "g=gw1.", "g=gw9.");
	char *forged = replace(good, "t=17", "t=18");
	char *unknown = replace(good, "k=new", "k=zzz");
	struct trace_found f;
	struct {
		const char *h1, *h2;
		enum trace_verdict want;
	} cases[] = {
		{ " junk", good, TRACE_VALID },
		{ forged, good, TRACE_VALID },
		{ good, forged, TRACE_VALID },
		{ other, forged, TRACE_FORGED },
		{ forged, other, TRACE_FORGED },
		{ " junk", other, TRACE_OTHER_GATE },
		{ other, " junk", TRACE_OTHER_GATE },
		/* a key we lack may be genuine; a failed MAC cannot be */
		{ forged, unknown, TRACE_UNKNOWN_KEY },
		{ unknown, forged, TRACE_UNKNOWN_KEY },
		{ unknown, good, TRACE_VALID },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *x = str_printf("X-Postern-Trace:%s\r\nReceived: by x\r\n"
		                     "X-Postern-Trace:%s\r\n%s",
		                     cases[i].h1, cases[i].h2, plain_msg);
		ck_assert_msg(check(x, &key_new, 1, &f) == cases[i].want, "case %zu: %s", i,
		              trace_verdict_name(f.verdict));
		free(x);
	}
	free(unknown);
	free(forged);
	free(other);
	free(good);
	free(m);
}
END_TEST

START_TEST(test_folding)
{
	char *m = signed_msg(&key_new);
	ck_assert_ptr_nonnull(strstr(m, ";\r\n\tt=1700000000;"));
	/* refolded on every tag, with spaces instead of tabs */
	char *v = header_value(m);
	char *unfolded = replace_all(v, "\r\n\t", " ");
	char *refolded = replace_all(unfolded, "; ", ";\r\n    ");
	char *x = replace(m, v, refolded);
	ck_assert_int_eq(check(x, &key_new, 1, NULL), TRACE_VALID);
	free(x);
	/* unfolded onto one long line */
	x = replace(m, v, unfolded);
	ck_assert_int_eq(check(x, &key_new, 1, NULL), TRACE_VALID);
	free(x);
	/* the Message-ID refolded in transit */
	x = replace(m, "Message-ID: <2023", "Message-ID:\r\n\t <2023");
	ck_assert_int_eq(check(x, &key_new, 1, NULL), TRACE_VALID);
	free(x);
	/* LF line ends, as a mailbox file keeps them */
	x = replace_all(m, "\r\n", "\n");
	ck_assert_int_eq(check(x, &key_new, 1, NULL), TRACE_VALID);
	free(x);
	free(refolded);
	free(unfolded);
	free(v);
	free(m);
}
END_TEST

/* What v=2 signs of a Message-ID: the msg-id alone, whatever folding,
 * spacing or comment surrounds it; fed in any pieces. */
START_TEST(test_msgid_forms)
{
	static const struct {
		const char *in, *v2, *v1;
	} cases[] = {
		{ " <a@b> ", "<a@b>", "<a@b>" },
		{ "\r\n\t<a@b>", "<a@b>", "<a@b>" },
		{ "<a@b> (the comment)", "<a@b>", "<a@b> (the comment)" },
		{ "<verylong\r\n\t.part@b>", "<verylong.part@b>", "<verylong .part@b>" },
		{ "junk <a@b>", "<a@b>", "junk <a@b>" },
		{ "(c <x@y>) <a@b>", "<x@y>", "(c <x@y>) <a@b>" },
		{ "<<a@b>", "<a@b>", "<<a@b>" },
		{ "a@b", "a@b", "a@b" },
		{ "<a@b", "<a@b", "<a@b" },
		{ "", "", "" },
		{ " \t ", "", "" },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const char *in = cases[i].in;
		size_t n = strlen(in);
		for (size_t cut = 0; cut <= n; cut++) {
			struct trace__msgid m;
			trace__msgid_init(&m);
			trace__msgid_add(&m, in, cut);
			trace__msgid_add(&m, in + cut, n - cut);
			ck_assert_msg(strcmp(m.v, cases[i].v2) == 0, "case %zu: %s", i, m.v);
			ck_assert_msg(strcmp(m.v1, cases[i].v1) == 0, "case %zu: %s", i, m.v1);
			ck_assert_str_eq(trace__msgid_form(&m, 2), m.v);
			ck_assert_str_eq(trace__msgid_form(&m, 1), m.v1);
		}
		/* what the signer keeps normalises to itself (the record's
		 * Message-ID is compared that way) */
		struct trace__msgid a, b;
		trace__msgid_init(&a);
		trace__msgid_add(&a, in, n);
		trace__msgid_init(&b);
		trace__msgid_add(&b, a.v, a.len);
		ck_assert_str_eq(a.v, b.v);
	}
}
END_TEST

/* Headers issued before v=2 keep verifying, and a v=1 MAC is no v=2 MAC. */
START_TEST(test_v1_compat)
{
	struct buf h;
	buf_init(&h);
	trace__header_make(&h, &key_new, GATE, TID, T0, "<20231114.1234@example.org>", 1);
	buf_append(&h, "", 0);
	ck_assert(strncmp(h.data, "X-Postern-Trace: v=1; ", 22) == 0);
	char *m = str_printf("%s%s", h.data, plain_msg);
	struct trace_found f;
	ck_assert_int_eq(check(m, &key_new, 1, &f), TRACE_VALID);
	ck_assert_int_eq(f.version, 1);
	ck_assert_str_eq(f.message_id, "<20231114.1234@example.org>");
	/* v=1 normalised whitespace runs but kept comments */
	char *x = replace(m, "<20231114.1234@example.org>\r\n", "\r\n <20231114.1234@example.org>  \r\n");
	ck_assert_int_eq(check(x, &key_new, 1, NULL), TRACE_VALID);
	free(x);
	x = replace(m, "v=1", "v=2");
	ck_assert_int_eq(check(x, &key_new, 1, NULL), TRACE_FORGED);
	free(x);
	free(m);
	m = signed_msg(&key_new);
	x = replace(m, "v=2", "v=1");
	ck_assert_int_eq(check(x, &key_new, 1, NULL), TRACE_FORGED);
	free(x);
	free(m);
	buf_free(&h);
}
END_TEST

/* What relaying does to a header block: fields added at either end,
 * reordered, refolded, folded where no folding is allowed. */
START_TEST(test_relaying)
{
	char *m = signed_msg(&key_new);
	struct trace_found f;
	/* added at the top and at the end, and Message-ID moved last */
	char *x = str_printf("Received: from a by b; Mon, 1 Jan 2024\r\nX-Spam: no\r\n%s", m);
	char *y = replace(x, "Message-ID: <20231114.1234@example.org>\r\n", "");
	char *z = replace(y, "\r\n\r\nHello", "\r\nMessage-Id: <20231114.1234@example.org>\r\n"
	                                      "X-Filtered: yes\r\n\r\nHello");
	ck_assert_int_eq(check(z, &key_new, 1, &f), TRACE_VALID);
	free(z);
	free(y);
	free(x);
	/* the MAC cut by folding */
	const char *mac = strstr(m, "m=") + 2;
	char *cut = str_ndup(mac, 10);
	char *cutf = str_printf("%s\r\n\t", cut);
	x = replace(m, cut, cutf);
	ck_assert_int_eq(check(x, &key_new, 1, &f), TRACE_VALID);
	free(x);
	free(cutf);
	free(cut);
	/* the Message-ID folded inside, a comment after it */
	x = replace(m, "<20231114.1234@example.org>", "<20231114\r\n .1234@example.org> (moved)");
	ck_assert_int_eq(check(x, &key_new, 1, &f), TRACE_VALID);
	ck_assert_str_eq(f.message_id, "<20231114.1234@example.org>");
	free(x);
	/* a second Message-ID put first: each is tried */
	x = replace(m, "From: Alice", "Message-ID: <another@example.org>\r\nFrom: Alice");
	ck_assert_int_eq(check(x, &key_new, 1, &f), TRACE_VALID);
	ck_assert_str_eq(f.message_id, "<20231114.1234@example.org>");
	free(x);
	/* but not the empty one once there is a Message-ID */
	char *nomid = replace(plain_msg, "Message-ID: <20231114.1234@example.org>\r\n", "");
	char *signed_nomid = scan_all(&key_new, nomid, strlen(nomid), NULL);
	ck_assert_int_eq(check(signed_nomid, &key_new, 1, &f), TRACE_VALID);
	ck_assert_str_eq(f.message_id, "");
	x = replace(signed_nomid, "From: Alice", "Message-Id: <added@relay>\r\nFrom: Alice");
	ck_assert_int_eq(check(x, &key_new, 1, &f), TRACE_FORGED);
	ck_assert_str_eq(f.message_id, "<added@relay>");
	free(x);
	free(signed_nomid);
	free(nomid);
	free(m);
}
END_TEST

/* The lookup's last word: the record says which Message-ID the header was
 * issued for. */
START_TEST(test_against_record)
{
	char *m = signed_msg(&key_new);
	struct trace_found f;
	const char *mid = "<20231114.1234@example.org>";
	ck_assert_int_eq(check(m, &key_new, 1, &f), TRACE_VALID);
	ck_assert_int_eq(trace_header_against_record(&f, &key_new, 1, mid), TRACE_VALID);
	ck_assert_int_eq(trace_header_against_record(&f, &key_new, 1, " <20231114.1234@example.org>"),
	                 TRACE_VALID);
	ck_assert_int_eq(trace_header_against_record(&f, &key_new, 1, "<other@x>"), TRACE_COPIED);
	ck_assert_int_eq(trace_header_against_record(&f, &key_new, 1, ""), TRACE_COPIED);
	ck_assert_int_eq(trace_header_against_record(&f, &key_new, 1, NULL), TRACE_COPIED);
	/* moved onto a message with another Message-ID: forged there, genuine
	 * for the record */
	char *x = replace(m, mid, "<victim@example.org>");
	ck_assert_int_eq(check(x, &key_new, 1, &f), TRACE_FORGED);
	ck_assert_int_eq(trace_header_against_record(&f, &key_new, 1, mid), TRACE_COPIED);
	ck_assert_int_eq(trace_header_against_record(&f, &key_new, 1, "<victim@example.org>"),
	                 TRACE_FORGED);
	ck_assert_int_eq(trace_header_against_record(&f, &key_evil, 1, mid), TRACE_FORGED);
	ck_assert_int_eq(trace_header_against_record(&f, &key_old, 1, mid), TRACE_FORGED);
	free(x);
	/* a made-up MAC stays forged whatever the record */
	x = replace(m, "; m=", "; m=A");
	char *mac = strstr(x, "; m=A") + 4;
	memmove(mac + 1, mac + 2, strlen(mac + 2) + 1);
	ck_assert_int_eq(check(x, &key_new, 1, &f), TRACE_FORGED);
	ck_assert_int_eq(trace_header_against_record(&f, &key_new, 1, mid), TRACE_FORGED);
	free(x);
	/* other verdicts are what they were */
	ck_assert_int_eq(check(m, &key_old, 1, &f), TRACE_UNKNOWN_KEY);
	ck_assert_int_eq(trace_header_against_record(&f, &key_old, 1, mid), TRACE_UNKNOWN_KEY);
	ck_assert_int_eq(check(plain_msg, &key_new, 1, &f), TRACE_MISSING);
	ck_assert_int_eq(trace_header_against_record(&f, &key_new, 1, mid), TRACE_MISSING);
	/* v=1 records kept the v=1 form */
	struct buf h;
	buf_init(&h);
	trace__header_make(&h, &key_new, GATE, TID, T0, "<a  b@c>", 1);
	buf_append(&h, "", 0);
	char *v1 = str_printf("%sMessage-ID: <a  b@c>\r\n\r\nbody\r\n", h.data);
	ck_assert_int_eq(check(v1, &key_new, 1, &f), TRACE_VALID);
	ck_assert_int_eq(trace_header_against_record(&f, &key_new, 1, "<a b@c>"), TRACE_VALID);
	ck_assert_int_eq(trace_header_against_record(&f, &key_new, 1, "<ab@c>"), TRACE_COPIED);
	free(v1);
	buf_free(&h);
	free(m);
}
END_TEST

/* ---- abuse reports ---------------------------------------------------------- */

#define BOUNDARY "===============7773248893524682793=="

/* An ARF report as Python's email package writes it (LF line ends). */
static char *arf(const char *ctype, const char *extra_headers, const char *payload)
{
	return str_printf(
		"Content-Type: multipart/report; report-type=\"feedback-report\";\n"
		" boundary=\"" BOUNDARY "\"\n"
		"MIME-Version: 1.0\n"
		"From: abuse@isp.example\n"
		"To: abuse@example.net\n"
		"Subject: FW: report\n"
		"Message-ID: <report-1@isp.example>\n"
		"\n"
		"--" BOUNDARY "\n"
		"Content-Type: text/plain; charset=\"us-ascii\"\n"
		"MIME-Version: 1.0\n"
		"Content-Transfer-Encoding: 7bit\n"
		"\n"
		"This is an email abuse report for an email message received from IP\n"
		"192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\n"
		"--" BOUNDARY "\n"
		"Content-Type: message/feedback-report\n"
		"MIME-Version: 1.0\n"
		"\n"
		"Feedback-Type: abuse\n"
		"User-Agent: SomeGenerator/1.0\n"
		"Version: 1\n"
		"\n"
		"--" BOUNDARY "\n"
		"Content-Type: %s\n"
		"MIME-Version: 1.0\n"
		"%s"
		"\n"
		"%s\n"
		"--" BOUNDARY "--\n",
		ctype, extra_headers, payload);
}

static void check_report(const char *r, const struct trace_key *keys, size_t n,
                         enum trace_verdict want)
{
	struct trace_found f;
	ck_assert_msg(check(r, keys, n, &f) == want, "got %s", trace_verdict_name(f.verdict));
	if (want == TRACE_VALID) {
		ck_assert_str_eq(f.trace_id, TID);
		ck_assert_str_eq(f.message_id, "<20231114.1234@example.org>");
	}
	/* CRLF line ends too */
	char *crlf = replace_all(r, "\n", "\r\n");
	ck_assert_int_eq(check(crlf, keys, n, NULL), want);
	free(crlf);
}

START_TEST(test_arf)
{
	char *m = signed_msg(&key_new);
	char *lf = replace_all(m, "\r\n", "\n");
	char *r = arf("message/rfc822", "", lf);
	check_report(r, &key_new, 1, TRACE_VALID);
	free(r);
	/* the report's own headers are searched too, but the message wins */
	char *outer = replace(lf, "From: Alice", "X-Dummy: 1\nFrom: Alice");
	r = arf("message/rfc822", "", outer);
	char *r2 = str_printf("X-Postern-Trace: v=1; g=isp; id=" TID "; t=1; k=a; m=%s\n%s",
	                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", r);
	check_report(r2, &key_new, 1, TRACE_VALID);
	free(r2);
	free(r);
	free(outer);
	/* altered in the report: reported as such */
	char *alt = replace(lf, "<20231114.1234@", "<20231114.9999@");
	r = arf("message/rfc822", "", alt);
	check_report(r, &key_new, 1, TRACE_FORGED);
	free(r);
	free(alt);
	/* the original's body removed, headers kept */
	char *hdrs = str_ndup(lf, (size_t)(strstr(lf, "\n\n") - lf + 1));
	r = arf("text/rfc822-headers", "", hdrs);
	check_report(r, &key_new, 1, TRACE_VALID);
	free(r);
	r = arf("message/rfc822-headers", "", hdrs);
	check_report(r, &key_new, 1, TRACE_VALID);
	free(r);
	free(hdrs);
	/* the report cut short before its closing delimiter */
	r = arf("message/rfc822", "", lf);
	*strstr(r, "Hello Bob.") = '\0';
	check_report(r, &key_new, 1, TRACE_VALID);
	free(r);
	/* a report about somebody else's message */
	r = arf("message/rfc822", "", plain_msg);
	check_report(r, &key_new, 1, TRACE_MISSING);
	struct trace_found f;
	check(r, &key_new, 1, &f);
	ck_assert_str_eq(f.message_id, "<report-1@isp.example>");
	free(r);
	free(lf);
	free(m);
}
END_TEST

/* Someone's genuine message attached to a message of ours: the top level
 * decides whenever it shows it passed through this gate. */
#define OTHER_TID "zyxwvutsrqponmlkjihgfedcba"

static char *enclosing(const char *top_headers, const char *inner)
{
	return str_printf("%sMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n"
	                  "\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
	                  "--b\r\nContent-Type: message/rfc822\r\n\r\n%s\r\n--b--\r\n",
	                  top_headers, inner);
}

START_TEST(test_enclosed_never_outranks)
{
	/* the victim's genuine message */
	struct trace_scan *ts = trace_scan_new(&key_new, GATE, OTHER_TID, T0);
	struct buf inner;
	buf_init(&inner);
	trace_scan_feed(ts, plain_msg, strlen(plain_msg), &inner);
	trace_scan_finish(ts, &inner);
	trace_scan_free(ts);
	buf_append(&inner, "", 0);
	/* the sender's own, signed by the gate */
	char *msg = enclosing("From: <mallory@example.org>\r\nMessage-ID: <m@example.org>\r\n",
	                      inner.data);
	char *ours = scan_all(&key_new, msg, strlen(msg), NULL);
	struct trace_found f;
	ck_assert_int_eq(check(ours, &key_new, 1, &f), TRACE_VALID);
	ck_assert_str_eq(f.trace_id, TID);
	ck_assert(!f.enclosed);
	ck_assert_uint_eq(f.nquoted, 1);
	ck_assert(f.quoted[0].enclosed && !f.quoted[0].renamed);
	ck_assert_int_eq(f.quoted[0].verdict, TRACE_VALID);
	ck_assert_str_eq(f.quoted[0].trace_id, OTHER_TID);

	/* the top-level header damaged, altered or missing: never the other */
	char *v = header_value(ours);
	char *hdr = str_printf("X-Postern-Trace:%s\r\n", v);
	char *forged = replace(v, "t=17", "t=18");
	char *other_gate = replace(v, "g=gw1.", "g=gw9.");
	const char *tops[][2] = {
		{ v, forged },
		{ v, " v=2; junk" },
		{ "<m@example.org>", "<changed@example.org>" },
	};
	const enum trace_verdict want[] = { TRACE_FORGED, TRACE_MALFORMED, TRACE_FORGED };
	for (size_t i = 0; i < ARRAY_LEN(tops); i++) {
		char *x = replace(ours, tops[i][0], tops[i][1]);
		ck_assert_msg(check(x, &key_new, 1, &f) == want[i], "case %zu: %s", i,
		              trace_verdict_name(f.verdict));
		ck_assert_str_ne(f.trace_id, OTHER_TID);
		ck_assert(!f.enclosed);
		ck_assert_uint_eq(f.nquoted, 1);
		ck_assert_str_eq(f.quoted[0].trace_id, OTHER_TID);
		free(x);
	}
	/* gone, with our Received line left: still ours, so missing */
	char *stripped = replace(ours, hdr, "");
	char *rcvd = str_printf("Received: from x (y [192.0.2.1])\r\n\tby  GW1.example.net\r\n "
	                        "(Postern) with ESMTPSA id Q;\r\n\tMon, 1 Jan 2024\r\n%s", stripped);
	ck_assert_int_eq(check(rcvd, &key_new, 1, &f), TRACE_MISSING);
	ck_assert_uint_eq(f.nquoted, 1);
	ck_assert_str_eq(f.quoted[0].trace_id, OTHER_TID);
	free(rcvd);
	/* another gate's Received, or another product's, does not count */
	static const char *const not_ours[] = {
		"Received: by gw1.example.net (Postfix) with ESMTP id Q\r\n",
		"Received: by gw1.example.net.evil (Postern) with ESMTP id Q\r\n",
		"Received: from gw1.example.net (Postern) by x\r\n",
	};
	for (size_t i = 0; i < ARRAY_LEN(not_ours); i++) {
		char *x = str_printf("%s%s", not_ours[i], stripped);
		ck_assert_msg(check(x, &key_new, 1, &f) == TRACE_VALID, "case %zu", i);
		ck_assert(f.enclosed);
		ck_assert_str_eq(f.trace_id, OTHER_TID);
		ck_assert_str_eq(f.message_id, "<20231114.1234@example.org>");
		free(x);
	}
	/* another gate's header at the top does not count either (an ISP's
	 * report through its own gate), nor does it get quoted */
	char *x = replace(ours, v, other_gate);
	ck_assert_int_eq(check(x, &key_new, 1, &f), TRACE_VALID);
	ck_assert(f.enclosed);
	ck_assert_str_eq(f.trace_id, OTHER_TID);
	ck_assert_uint_eq(f.nquoted, 0);
	free(x);
	/* no trace of us at the top: the enclosed one decides, and what it
	 * outranks among the enclosed is quoted */
	char *two = enclosing("From: <desk@isp.example>\r\n", msg);
	char *two_signed = str_printf("From: <desk@isp.example>\r\nContent-Type: multipart/mixed; "
	                              "boundary=\"c\"\r\n\r\n--c\r\nContent-Type: message/rfc822\r\n"
	                              "\r\n%s\r\n--c\r\nContent-Type: message/rfc822\r\n\r\n%s\r\n"
	                              "--c--\r\n", stripped, ours);
	ck_assert_int_eq(check(two_signed, &key_new, 1, &f), TRACE_VALID);
	ck_assert(f.enclosed);
	ck_assert_str_eq(f.trace_id, OTHER_TID);
	ck_assert_uint_eq(f.nquoted, 2);
	ck_assert_str_eq(f.quoted[0].trace_id, TID);
	ck_assert_str_eq(f.quoted[1].trace_id, OTHER_TID);
	free(two_signed);
	free(two);
	free(stripped);
	free(other_gate);
	free(forged);
	free(hdr);
	free(v);
	free(ours);
	free(msg);
	buf_free(&inner);
}
END_TEST

/* A sender's copy of someone's genuine header is renamed on the way in;
 * the lookup quotes it and never takes it for the sender. */
START_TEST(test_prior_is_evidence)
{
	char *genuine = signed_msg(&key_old);
	char *v = header_value(genuine);
	char *copy = str_printf("X-Postern-Trace:%s\r\n%s", v, plain_msg);
	struct trace_scan *ts = trace_scan_new(&key_new, GATE, OTHER_TID, T0);
	struct buf out;
	buf_init(&out);
	trace_scan_feed(ts, copy, strlen(copy), &out);
	trace_scan_finish(ts, &out);
	trace_scan_free(ts);
	buf_append(&out, "", 0);
	ck_assert_ptr_nonnull(strstr(out.data, "X-Postern-Trace-Prior:"));
	struct trace_key ring[2] = { key_new, key_old };
	struct trace_found f;
	ck_assert_int_eq(check(out.data, ring, 2, &f), TRACE_VALID);
	ck_assert_str_eq(f.trace_id, OTHER_TID);
	ck_assert_str_eq(f.key_id, "new");
	ck_assert_uint_eq(f.nquoted, 1);
	ck_assert(f.quoted[0].renamed && !f.quoted[0].enclosed);
	ck_assert_int_eq(f.quoted[0].verdict, TRACE_VALID);
	ck_assert_str_eq(f.quoted[0].trace_id, TID);
	/* only the renamed one left: nothing is attributed */
	char *ov = header_value(out.data);
	char *oh = str_printf("X-Postern-Trace:%s\r\n", ov);
	char *only = replace(out.data, oh, "");
	ck_assert_int_eq(check(only, ring, 2, &f), TRACE_MISSING);
	ck_assert_str_eq(f.trace_id, "");
	ck_assert_uint_eq(f.nquoted, 1);
	ck_assert_str_eq(f.quoted[0].trace_id, TID);
	/* many: counted, not kept */
	struct buf many;
	buf_init(&many);
	for (int i = 0; i < TRACE_QUOTED_MAX + 3; i++)
		buf_printf(&many, "X-Postern-Trace-Prior:%s\r\n", v);
	buf_puts(&many, plain_msg);
	ck_assert_int_eq(check(many.data, ring, 2, &f), TRACE_MISSING);
	ck_assert_uint_eq(f.nquoted, TRACE_QUOTED_MAX);
	ck_assert(f.quoted_more);
	buf_free(&many);
	free(only);
	free(oh);
	free(ov);
	buf_free(&out);
	free(copy);
	free(v);
	free(genuine);
}
END_TEST

static char *base64_lines(const char *s, size_t len)
{
	size_t cap = 4 * ((len + 2) / 3) + 1;
	char *enc = xmalloc(cap);
	EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)s, (int)len);
	struct buf b;
	buf_init(&b);
	size_t n = strlen(enc);
	for (size_t i = 0; i < n; i += 76) {
		buf_append(&b, enc + i, n - i < 76 ? n - i : 76);
		buf_puts(&b, "\n");
	}
	free(enc);
	return b.data;
}

START_TEST(test_encoded_attachment)
{
	char *m = signed_msg(&key_new);
	char *b64 = base64_lines(m, strlen(m));
	char *r = arf("message/rfc822", "Content-Transfer-Encoding: base64\n", b64);
	check_report(r, &key_new, 1, TRACE_VALID);
	free(r);
	/* a forward: multipart/mixed with an .eml file */
	r = str_printf("From: user@example.com\nSubject: Fwd: spam\nMIME-Version: 1.0\n"
	               "Content-Type: multipart/mixed; boundary=xyz\n\n"
	               "preamble\n--xyz\nContent-Type: text/plain\n\nLook at this.\n"
	               "--xyz  \nContent-Type: application/octet-stream; name=\"spam.EML\"\n"
	               "Content-Disposition: attachment;\n filename=\"spam.EML\"\n"
	               "Content-Transfer-Encoding: BASE64\n\n%s\n--xyz--\nepilogue\n",
	               b64);
	check_report(r, &key_new, 1, TRACE_VALID);
	free(r);
	/* quoted-printable, soft line breaks splitting the header */
	char *lf = replace_all(m, "\r\n", "\n");
	char *qp = replace_all(lf, "=", "=3D");
	char *qp2 = replace(qp, "; id=", "; i=\nd=");
	r = arf("message/rfc822", "Content-Transfer-Encoding: quoted-printable\n", qp2);
	check_report(r, &key_new, 1, TRACE_VALID);
	free(r);
	/* nested: a forward of the report, as an attachment in a digest */
	char *inner = arf("message/rfc822", "", lf);
	r = str_printf("From: a@b\nContent-Type: multipart/digest; boundary=\"d\"\n\n"
	               "--d\n\n%s\n--d--\n", inner);
	check_report(r, &key_new, 1, TRACE_VALID);
	free(r);
	free(inner);
	free(qp2);
	free(qp);
	free(lf);
	free(b64);
	free(m);
}
END_TEST

START_TEST(test_nesting_limit)
{
	/* deeper than anyone nests: not searched, and no stack blow-up */
	char *m = signed_msg(&key_new);
	char *cur = str_dup(m);
	for (int i = 0; i < 20; i++) {
		char *next = str_printf("Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n%s",
		                        i, cur);
		free(cur);
		cur = next;
	}
	ck_assert_int_eq(check(cur, &key_new, 1, NULL), TRACE_MISSING);
	free(cur);
	/* a long chain of enclosed headers without bodies */
	struct buf b;
	buf_init(&b);
	for (int i = 0; i < 100000; i++)
		buf_puts(&b, "Content-Type: message/rfc822\r\n\r\n");
	ck_assert_int_eq(check(b.data, &key_new, 1, NULL), TRACE_MISSING);
	buf_free(&b);
	free(m);
}
END_TEST

/* Mutations of a signed report must never crash or report VALID falsely
 * (run under ASan/UBSan). */
START_TEST(test_hostile)
{
	char *m = signed_msg(&key_new);
	char *r = arf("message/rfc822", "", m);
	size_t n = strlen(r);
	uint32_t seed = 12345;
	for (int iter = 0; iter < 3000; iter++) {
		char *x = xmalloc(n);
		memcpy(x, r, n);
		int edits = 1 + (int)(seed % 8);
		for (int e = 0; e < edits; e++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % n;
			static const char alphabet[] = "\r\n \t;=:-\"(\\)abc\0\xff";
			x[at] = alphabet[(seed >> 3) % (sizeof(alphabet) - 1)];
		}
		size_t len = iter % 7 == 0 ? (seed >> 4) % n : n;
		struct trace_found f;
		(void)trace_header_find(x, len, GATE, &key_new, 1, &f);
		ck_assert_int_le(strlen(f.message_id), TRACE__MSGID_MAX);
		free(x);
	}
	free(r);
	free(m);
}
END_TEST

/* ---- the scanner ---------------------------------------------------------------- */

static void sha256_hex(const void *a, size_t alen, const void *b, size_t blen, char hex[65])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned char md[32];
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	EVP_DigestUpdate(c, a, alen);
	EVP_DigestUpdate(c, b, blen);
	EVP_DigestFinal_ex(c, md, NULL);
	EVP_MD_CTX_free(c);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

START_TEST(test_scan_hash)
{
	static const char prefix[] = "Received: from x by y; Tue, 14 Nov 2023 22:13:20 +0000\r\n";
	struct trace_scan *ts = trace_scan_new(&key_new, GATE, TID, T0);
	struct buf out;
	buf_init(&out);
	trace_scan_prefix(ts, prefix, strlen(prefix));
	trace_scan_feed(ts, plain_msg, strlen(plain_msg), &out);
	trace_scan_finish(ts, &out);
	char want[65];
	sha256_hex(prefix, strlen(prefix), out.data, out.len, want);
	ck_assert_str_eq(trace_scan_sha256(ts), want);
	ck_assert_str_eq(trace_scan_message_id(ts), "<20231114.1234@example.org>");
	/* output appended after what the caller had: only the new part counts */
	trace_scan_free(ts);
	ts = trace_scan_new(&key_new, GATE, TID, T0);
	struct buf out2;
	buf_init(&out2);
	buf_puts(&out2, "already here");
	trace_scan_feed(ts, plain_msg, strlen(plain_msg), &out2);
	trace_scan_finish(ts, &out2);
	sha256_hex("", 0, out2.data + 12, out2.len - 12, want);
	ck_assert_str_eq(trace_scan_sha256(ts), want);
	ck_assert_str_eq(out2.data + 12, out.data);
	trace_scan_free(ts);
	buf_free(&out2);
	buf_free(&out);
}
END_TEST

static const char *const split_msgs[] = {
	"Received: from a\r\n\tby b\r\nmESSAGE-iD \t:\r\n  <odd.case@example.org> \r\n"
	"Message-ID: <second@example.org>\r\nSubject: s\r\n\r\nbody\r\n\r\n.line\r\n",
	"Subject: headers only\r\nMessage-Id: <h@o>\r\n",
	"Subject: no final CRLF\r\nMessage-Id: <h@o>",
	"\r\nno headers at all\r\n",
	"",
	"A: b\r\n\r",
	"X-Message-ID: <no@x>\r\nMessage-IDs: <no@y>\r\nResent-Message-ID: <no@z>\r\n"
	"Message-ID:<yes@x>\r\n\rjunk line\r\nMessage-ID: <body@x>\r\n\r\n",
	"Subject: x\r\nMessage-ID: <a@b>\nbare: lf\n\nbody\r\n",
	"Hello, a message without headers.\r\nMessage-ID: <body@x>\r\n",
	" leading space\r\n",
	":empty name\r\n",
	"Subject: x\r\nno colon here\r\n\r\nbody\r\n",
	"Subject: x\r\nLast-line-without-colon",
	"Subject: x\r\nA  \t : spaced\r\n\tcontinued\r\n \r\n\r\n",
	"Subject: copied\r\nx-postern-TRACE : v=1; g=mx.test;\r\n\tid=x\r\nX-Postern-Traced: no\r\n\r\nb\r\n",
};

/* A client's own X-Postern-Trace field (a copy of someone's genuine one)
 * must not stand beside ours: it is renamed, so only ours verifies. */
START_TEST(test_scan_renames_client_trace_header)
{
	const char *msg = split_msgs[ARRAY_LEN(split_msgs) - 1];
	char sha[65];
	char *out = scan_all(&key_new, msg, strlen(msg), sha);
	ck_assert_ptr_nonnull(strstr(out, "X-Postern-Trace-Prior: v=1; g=mx.test;\r\n\tid=x\r\n"));
	ck_assert_ptr_nonnull(strstr(out, "X-Postern-Traced: no\r\n"));
	const char *ours = strstr(out, "\nX-Postern-Trace: ");
	ck_assert_ptr_nonnull(ours);
	ck_assert_ptr_null(strstr(ours + 1, "\nX-Postern-Trace: "));
	ck_assert_ptr_null(strcasestr(out, "\nx-postern-trace :"));
	free(out);
}
END_TEST

START_TEST(test_scan_splits)
{
	for (size_t k = 0; k < ARRAY_LEN(split_msgs); k++) {
		const char *msg = split_msgs[k];
		size_t n = strlen(msg);
		char sha[65];
		char *whole = scan_all(&key_new, msg, n, sha);
		for (size_t i = 0; i <= n; i++) {
			for (size_t j = i; j <= n; j++) {
				struct trace_scan *ts = trace_scan_new(&key_new, GATE, TID, T0);
				struct buf out;
				buf_init(&out);
				trace_scan_feed(ts, msg, i, &out);
				ck_assert_uint_le(trace__scan_held(ts), i);
				trace_scan_feed(ts, msg + i, j - i, &out);
				trace_scan_feed(ts, msg + j, n - j, &out);
				trace_scan_finish(ts, &out);
				ck_assert_msg(out.len == strlen(whole) &&
				              memcmp(out.data, whole, out.len) == 0,
				              "msg %zu split %zu/%zu", k, i, j);
				ck_assert_str_eq(trace_scan_sha256(ts), sha);
				trace_scan_free(ts);
				buf_free(&out);
			}
		}
		/* byte by byte */
		struct trace_scan *ts = trace_scan_new(&key_new, GATE, TID, T0);
		struct buf out;
		buf_init(&out);
		for (size_t i = 0; i < n; i++)
			trace_scan_feed(ts, msg + i, 1, &out);
		trace_scan_finish(ts, &out);
		ck_assert(out.len == strlen(whole) && memcmp(out.data, whole, out.len) == 0);
		trace_scan_free(ts);
		buf_free(&out);
		free(whole);
	}
}
END_TEST

START_TEST(test_scan_placement)
{
	char *o;
	struct trace_scan *ts;
	struct buf out;
	struct trace_found f;

	/* folded, odd-case Message-ID; the first one counts */
	o = scan_all(&key_new, split_msgs[0], strlen(split_msgs[0]), NULL);
	ts = trace_scan_new(&key_new, GATE, TID, T0);
	buf_init(&out);
	trace_scan_feed(ts, split_msgs[0], strlen(split_msgs[0]), &out);
	trace_scan_finish(ts, &out);
	ck_assert_str_eq(trace_scan_message_id(ts), "<odd.case@example.org>");
	trace_scan_free(ts);
	buf_free(&out);
	ck_assert_ptr_nonnull(strstr(o, "Subject: s\r\nX-Postern-Trace: "));
	ck_assert_ptr_nonnull(strstr(o, "=\r\n\r\nbody\r\n\r\n.line\r\n"));
	ck_assert_int_eq(check(o, &key_new, 1, &f), TRACE_VALID);
	ck_assert_str_eq(f.message_id, "<odd.case@example.org>");
	free(o);

	/* headers only: at the end */
	o = scan_all(&key_new, split_msgs[1], strlen(split_msgs[1]), NULL);
	ck_assert(strncmp(o, split_msgs[1], strlen(split_msgs[1])) == 0);
	ck_assert(strncmp(o + strlen(split_msgs[1]), "X-Postern-Trace: ", 17) == 0);
	ck_assert(o[strlen(o) - 1] == '\n');
	ck_assert_int_eq(check(o, &key_new, 1, &f), TRACE_VALID);
	ck_assert_str_eq(f.message_id, "<h@o>");
	free(o);
	o = scan_all(&key_new, split_msgs[2], strlen(split_msgs[2]), NULL);
	ck_assert(strncmp(o, "Subject: no final CRLF\r\nMessage-Id: <h@o>\r\nX-Postern-Trace: ",
	                  60) == 0);
	ck_assert_int_eq(check(o, &key_new, 1, NULL), TRACE_VALID);
	free(o);

	/* no headers: first */
	o = scan_all(&key_new, split_msgs[3], strlen(split_msgs[3]), NULL);
	ck_assert(strncmp(o, "X-Postern-Trace: ", 17) == 0);
	ck_assert_ptr_nonnull(strstr(o, "=\r\n\r\nno headers at all\r\n"));
	ck_assert_int_eq(check(o, &key_new, 1, &f), TRACE_VALID);
	ck_assert_str_eq(f.message_id, "");
	free(o);

	/* look-alikes of Message-ID do not count; a line that is no field
	 * ends the header block, and we go before it */
	o = scan_all(&key_new, split_msgs[6], strlen(split_msgs[6]), NULL);
	ck_assert_int_eq(check(o, &key_new, 1, &f), TRACE_VALID);
	ck_assert_str_eq(f.message_id, "<yes@x>");
	ck_assert_ptr_nonnull(strstr(o, "Message-ID:<yes@x>\r\nX-Postern-Trace: "));
	ck_assert_ptr_nonnull(strstr(o, "=\r\n\rjunk line\r\n"));
	free(o);
	for (size_t k = 8; k <= 10; k++) {
		/* no header block at all: first, with an empty line of its own */
		o = scan_all(&key_new, split_msgs[k], strlen(split_msgs[k]), NULL);
		ck_assert(strncmp(o, "X-Postern-Trace: ", 17) == 0);
		ck_assert_ptr_nonnull(strstr(o, "=\r\n\r\n"));
		ck_assert_str_eq(strstr(o, "=\r\n\r\n") + 5, split_msgs[k]);
		ck_assert_int_eq(check(o, &key_new, 1, &f), TRACE_VALID);
		ck_assert_str_eq(f.message_id, "");
		free(o);
	}
	o = scan_all(&key_new, split_msgs[11], strlen(split_msgs[11]), NULL);
	ck_assert_ptr_nonnull(strstr(o, "Subject: x\r\nX-Postern-Trace: "));
	ck_assert_ptr_nonnull(strstr(o, "=\r\nno colon here\r\n\r\nbody\r\n"));
	free(o);
	o = scan_all(&key_new, split_msgs[12], strlen(split_msgs[12]), NULL);
	ck_assert_ptr_nonnull(strstr(o, "Subject: x\r\nX-Postern-Trace: "));
	ck_assert_ptr_nonnull(strstr(o, "=\r\nLast-line-without-colon"));
	ck_assert_int_eq(check(o, &key_new, 1, NULL), TRACE_VALID);
	free(o);
	o = scan_all(&key_new, split_msgs[13], strlen(split_msgs[13]), NULL);
	ck_assert_ptr_nonnull(strstr(o, "continued\r\n \r\nX-Postern-Trace: "));
	ck_assert_int_eq(check(o, &key_new, 1, NULL), TRACE_VALID);
	free(o);

	/* a field name can be long, but not without end */
	struct buf m;
	buf_init(&m);
	buf_puts(&m, "Subject: x\r\n");
	for (int i = 0; i < TRACE__FIELD_NAME_MAX - 1; i++)
		buf_puts(&m, "X");
	buf_puts(&m, ": at the limit\r\nMessage-ID: <long@x>\r\n");
	o = scan_all(&key_new, m.data, m.len, NULL);
	ck_assert_int_eq(check(o, &key_new, 1, &f), TRACE_VALID);
	ck_assert_str_eq(f.message_id, "<long@x>");
	ck_assert_str_eq(strstr(o, "<long@x>\r\n") + 10, strstr(o, "X-Postern-Trace:"));
	free(o);
	buf_free(&m);
	buf_init(&m);
	buf_puts(&m, "Subject: x\r\n");
	for (int i = 0; i < TRACE__FIELD_NAME_MAX; i++)
		buf_puts(&m, "X");
	buf_puts(&m, ": past it\r\nMessage-ID: <long@x>\r\n");
	for (size_t i = 0; i <= m.len; i++) {
		/* split everywhere: held back at most the limit, then let go */
		struct trace_scan *t2 = trace_scan_new(&key_new, GATE, TID, T0);
		struct buf o2;
		buf_init(&o2);
		trace_scan_feed(t2, m.data, i, &o2);
		ck_assert_uint_le(trace__scan_held(t2), TRACE__FIELD_NAME_MAX);
		trace_scan_feed(t2, m.data + i, m.len - i, &o2);
		trace_scan_finish(t2, &o2);
		ck_assert(strncmp(o2.data, "Subject: x\r\nX-Postern-Trace: ", 29) == 0);
		ck_assert_str_eq(trace_scan_message_id(t2), "");
		ck_assert_int_eq(check(o2.data, &key_new, 1, &f), TRACE_VALID);
		ck_assert_str_eq(f.message_id, "");
		trace_scan_free(t2);
		buf_free(&o2);
	}
	buf_free(&m);

	/* bare LF ends the header block too */
	o = scan_all(&key_new, split_msgs[7], strlen(split_msgs[7]), NULL);
	ck_assert_ptr_nonnull(strstr(o, "bare: lf\nX-Postern-Trace: "));
	ck_assert_ptr_nonnull(strstr(o, "=\r\n\nbody\r\n"));
	ck_assert_int_eq(check(o, &key_new, 1, NULL), TRACE_VALID);
	free(o);
}
END_TEST

/* The scanner is the streaming form of msg/'s one definition of a header
 * section: on messages made of field lines, continuations, other lines and
 * empty lines, in any order, it puts the trace header exactly where
 * msg_header_split ends the header section. */
START_TEST(test_scan_agrees_with_msg)
{
	static const char *const pieces[] = {
		"Subject: a\r\n", " folded\r\n", "X-Long-Name : b\r\n", "not a field\r\n",
		"\r\n", "body\r\n", "From: c@d\n", "\tcont\n", "\n", ":no name\r\n",
	};
	unsigned seed = 7;
	for (int round = 0; round < 3000; round++) {
		struct buf in;
		buf_init(&in);
		int n = rand_r(&seed) % 6;
		for (int i = 0; i < n; i++)
			buf_puts(&in, pieces[rand_r(&seed) % ARRAY_LEN(pieces)]);
		const char *raw = in.data ? in.data : "";
		size_t hlen, body;
		msg_header_split(raw, in.len, &hlen, &body);
		char *out = scan_all(&key_new, raw, in.len, NULL);
		const char *mark = strstr(out, "X-Postern-Trace: v=");
		ck_assert_ptr_nonnull(mark);
		ck_assert_msg((size_t)(mark - out) == hlen, "round %d: %zu vs %zu in %s", round,
		              (size_t)(mark - out), hlen, raw);
		free(out);
		buf_free(&in);
	}
}
END_TEST

START_TEST(test_scan_no_key)
{
	char sha[65], want[65];
	char *o = scan_all(NULL, plain_msg, strlen(plain_msg), sha);
	ck_assert_str_eq(o, plain_msg);
	sha256_hex(plain_msg, strlen(plain_msg), "", 0, want);
	ck_assert_str_eq(sha, want);
	free(o);
	o = scan_all(NULL, "A: b", 4, NULL);
	ck_assert_str_eq(o, "A: b");
	free(o);
}
END_TEST

/* On submission the gate adds the Message-ID a client left out, before
 * its trace header, so that the MAC and the record have the one every
 * later hop sees. */
#define ADDED "<" TID "@" GATE ">"

START_TEST(test_scan_adds_message_id)
{
	for (size_t k = 0; k < ARRAY_LEN(split_msgs); k++) {
		const char *msg = split_msgs[k];
		size_t n = strlen(msg);
		for (int keyed = 0; keyed < 2; keyed++) {
			const struct trace_key *key = keyed ? &key_new : NULL;
			char sha[65];
			char *whole = scan_with(key, ADDED, msg, n, sha);
			struct trace_scan *plain = trace_scan_new(key, GATE, TID, T0);
			struct buf po;
			buf_init(&po);
			trace_scan_feed(plain, msg, n, &po);
			trace_scan_finish(plain, &po);
			bool had = trace_scan_message_id(plain)[0] != '\0' ||
			           strcasestr(whole, "Message-ID: " ADDED) == NULL;
			/* any split gives the same */
			for (size_t i = 0; i <= n; i++) {
				struct trace_scan *ts = trace_scan_new(key, GATE, TID, T0);
				trace_scan_add_message_id(ts, ADDED);
				struct buf out;
				buf_init(&out);
				trace_scan_feed(ts, msg, i, &out);
				trace_scan_feed(ts, msg + i, n - i, &out);
				trace_scan_finish(ts, &out);
				ck_assert_msg(out.len == strlen(whole) &&
				              memcmp(out.data, whole, out.len) == 0, "msg %zu cut %zu", k, i);
				ck_assert_str_eq(trace_scan_sha256(ts), sha);
				if (!had)
					ck_assert_str_eq(trace_scan_message_id(ts), ADDED);
				trace_scan_free(ts);
				buf_free(&out);
			}
			if (had) {
				/* a Message-ID of its own: nothing added */
				ck_assert_msg(po.len == strlen(whole) && memcmp(po.data, whole, po.len) == 0,
				              "msg %zu", k);
			} else if (keyed) {
				ck_assert_ptr_nonnull(strstr(whole, "Message-ID: " ADDED "\r\nX-Postern-Trace: "));
			}
			if (keyed) {
				struct trace_found f;
				ck_assert_int_eq(check(whole, &key_new, 1, &f), TRACE_VALID);
				ck_assert_str_eq(f.message_id, had ? trace_scan_message_id(plain) : ADDED);
			}
			trace_scan_free(plain);
			buf_free(&po);
			free(whole);
		}
	}
	/* placed like the trace header: headers only, unterminated, none */
	char *o = scan_with(NULL, ADDED, "Subject: x", 10, NULL);
	ck_assert_str_eq(o, "Subject: x\r\nMessage-ID: " ADDED "\r\n");
	free(o);
	o = scan_with(NULL, ADDED, "Subject: x\r\n\r\nbody\r\n", 20, NULL);
	ck_assert_str_eq(o, "Subject: x\r\nMessage-ID: " ADDED "\r\n\r\nbody\r\n");
	free(o);
	o = scan_with(NULL, ADDED, " no headers\r\n", 13, NULL);
	ck_assert_str_eq(o, "Message-ID: " ADDED "\r\n\r\n no headers\r\n");
	free(o);
	o = scan_with(NULL, ADDED, "", 0, NULL);
	ck_assert_str_eq(o, "Message-ID: " ADDED "\r\n");
	free(o);
	/* an empty Message-ID field is the client's: none added */
	o = scan_with(NULL, ADDED, "Message-ID:\r\n\r\nb\r\n", 18, NULL);
	ck_assert_str_eq(o, "Message-ID:\r\n\r\nb\r\n");
	free(o);
}
END_TEST

START_TEST(test_scan_long_msgid)
{
	/* a Message-ID longer than a line may be is cut the same way on both sides */
	struct buf m;
	buf_init(&m);
	buf_puts(&m, "Message-ID: <");
	for (int i = 0; i < 300; i++)
		buf_puts(&m, "abcd\r\n ");
	buf_puts(&m, "@x>\r\n\r\nbody\r\n");
	char *o = scan_all(&key_new, m.data, m.len, NULL);
	struct trace_found f;
	ck_assert_int_eq(check(o, &key_new, 1, &f), TRACE_VALID);
	ck_assert_uint_eq(strlen(f.message_id), TRACE__MSGID_MAX);
	ck_assert(f.message_id[TRACE__MSGID_MAX - 1] != ' ');
	free(o);
	buf_free(&m);
}
END_TEST

/* Scanner and finder must agree on every message, however odd: the header
 * goes where find looks, on the Message-ID find sees, and chunking changes
 * nothing. Messages are random runs of lines meant to hit the edges. */
START_TEST(test_scan_find_agree)
{
	static const char *const pieces[] = {
		"Subject: hi\r\n", "Message-ID: <a@b>\r\n", "message-id:<c@d>\n",
		"MESSAGE-ID \t: \r\n <e@f>\r\n", "Message-ID:", " <g@\r\n\th>\r\n",
		" cont\r\n", "\tcont\n", "junk line\r\n", "\r\n", "\n", "\r", "\r\r\n",
		"X: y", ":\r\n", "Message-IDx: <no@x>\r\n", "body text\r\n", "From x\r\n",
		"A\t:\tb\r\n", "From :x\r\n", "\x80" "bad: x\r\n", "--b\r\n", "Message-Id: <dup@x>\r\n",
	};
	uint32_t seed = 4242;
	for (int iter = 0; iter < 4000; iter++) {
		struct buf m;
		buf_init(&m);
		seed = seed * 1103515245u + 12345u;
		int n = (int)((seed >> 8) % 9);
		for (int i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			buf_puts(&m, pieces[(seed >> 8) % ARRAY_LEN(pieces)]);
		}
		buf_append(&m, "", 0);
		const char *msg = m.data ? m.data : "";
		char sha[65];
		char *whole = scan_all(&key_new, msg, m.len, sha);

		struct trace_scan *ts = trace_scan_new(&key_new, GATE, TID, T0);
		struct buf out;
		buf_init(&out);
		for (size_t at = 0; at < m.len;) {
			seed = seed * 1103515245u + 12345u;
			size_t step = 1 + (seed >> 8) % 7;
			if (step > m.len - at)
				step = m.len - at;
			trace_scan_feed(ts, msg + at, step, &out);
			at += step;
		}
		trace_scan_finish(ts, &out);
		ck_assert_msg(out.len == strlen(whole) && memcmp(out.data, whole, out.len) == 0,
		              "iter %d", iter);
		ck_assert_str_eq(trace_scan_sha256(ts), sha);

		struct trace_found f;
		int rc = trace_header_find(whole, strlen(whole), GATE, &key_new, 1, &f);
		ck_assert_msg(rc == 0 && f.verdict == TRACE_VALID, "iter %d: %s", iter, whole);
		ck_assert_str_eq(f.message_id, trace_scan_message_id(ts));
		/* and without a key, the input is left exactly as it was */
		char *same = scan_all(NULL, msg, m.len, NULL);
		ck_assert(strcmp(same, msg) == 0);
		free(same);
		trace_scan_free(ts);
		buf_free(&out);
		free(whole);
		buf_free(&m);
	}
}
END_TEST

START_TEST(test_scan_large)
{
	/* 20 MB of body in 64 KiB pieces: once past the headers, each piece
	 * comes straight out and nothing is held. */
	enum { CHUNK = 65536, TOTAL = 20 << 20 };
	char *chunk = xmalloc(CHUNK);
	for (size_t i = 0; i < CHUNK; i++)
		chunk[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : (char)('a' + i % 26);
	struct trace_scan *ts = trace_scan_new(&key_new, GATE, TID, T0);
	struct buf out;
	buf_init(&out);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	trace_scan_feed(ts, plain_msg, strlen(plain_msg), &out);
	EVP_DigestUpdate(c, out.data, out.len);
	out.len = 0;
	for (size_t done = 0; done < TOTAL; done += CHUNK) {
		trace_scan_feed(ts, chunk, CHUNK, &out);
		ck_assert_uint_eq(out.len, CHUNK);
		ck_assert_uint_eq(trace__scan_held(ts), 0);
		EVP_DigestUpdate(c, out.data, out.len);
		out.len = 0;
	}
	trace_scan_finish(ts, &out);
	ck_assert_uint_eq(out.len, 0);
	unsigned char md[32];
	char want[65];
	EVP_DigestFinal_ex(c, md, NULL);
	for (int i = 0; i < 32; i++)
		snprintf(want + 2 * i, 3, "%02x", md[i]);
	ck_assert_str_eq(trace_scan_sha256(ts), want);
	/* the output buffer never grew past one piece */
	ck_assert_uint_le(out.cap, 2 * CHUNK);
	EVP_MD_CTX_free(c);
	trace_scan_free(ts);
	buf_free(&out);
	free(chunk);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("trace_header");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_new_id);
	tcase_add_test(tc, test_keys_load);
	tcase_add_test(tc, test_keys_errors);
	tcase_add_test(tc, test_keys_mode);
	tcase_add_test(tc, test_verdict_names);
	tcase_add_test(tc, test_make_format);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_altered);
	tcase_add_test(tc, test_mac_altered);
	tcase_add_test(tc, test_keys_verdicts);
	tcase_add_test(tc, test_missing);
	tcase_add_test(tc, test_not_a_message);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_several_headers);
	tcase_add_test(tc, test_folding);
	tcase_add_test(tc, test_msgid_forms);
	tcase_add_test(tc, test_v1_compat);
	tcase_add_test(tc, test_relaying);
	tcase_add_test(tc, test_against_record);
	tcase_add_test(tc, test_arf);
	tcase_add_test(tc, test_encoded_attachment);
	tcase_add_test(tc, test_nesting_limit);
	tcase_add_test(tc, test_enclosed_never_outranks);
	tcase_add_test(tc, test_prior_is_evidence);
	tcase_add_test(tc, test_hostile);
	tcase_add_test(tc, test_scan_hash);
	tcase_add_test(tc, test_scan_splits);
	tcase_add_test(tc, test_scan_renames_client_trace_header);
	tcase_add_test(tc, test_scan_placement);
	tcase_add_test(tc, test_scan_agrees_with_msg);
	tcase_add_test(tc, test_scan_no_key);
	tcase_add_test(tc, test_scan_adds_message_id);
	tcase_add_test(tc, test_scan_long_msgid);
	tcase_add_test(tc, test_scan_find_agree);
	tcase_add_test(tc, test_scan_large);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
