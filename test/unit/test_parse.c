/*
 * test_parse.c - unit tests for the SMTP line reader and command parser.
 *
 * The parser is tested against golden files: test/unit/golden/parse.in
 * holds one command per line (C-like escapes: \r \n \t \0 \xHH \\, and \e
 * for the empty line; "#" lines are comments, copied to the output), and
 * parse.ref holds what the parser made of each. The files are found under
 * $top_srcdir (default "."). On a mismatch the actual output is written to
 * parse.out in the current directory, to diff and, once reviewed, copy.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/parse.h"

/* ---- golden files ------------------------------------------------------- */

/* Decodes the escapes of parse.in into out (at least as long as s). */
static size_t unescape(const char *s, char *out)
{
	size_t n = 0;

	while (*s) {
		if (*s != '\\') {
			out[n++] = *s++;
			continue;
		}
		s++;
		switch (*s) {
		case 'r': out[n++] = '\r'; s++; break;
		case 'n': out[n++] = '\n'; s++; break;
		case 't': out[n++] = '\t'; s++; break;
		case '0': out[n++] = '\0'; s++; break;
		case 'e': s++; break;
		case 'x':
			ck_assert_msg(codec_hexval(s[1]) >= 0 && codec_hexval(s[2]) >= 0, "bad \\x in parse.in");
			out[n++] = (char)(codec_hexval(s[1]) * 16 + codec_hexval(s[2]));
			s += 3;
			break;
		default: out[n++] = *s++; break;
		}
	}
	return n;
}

static void put_quoted(struct buf *b, const char *key, const char *s)
{
	if (!s)
		return;
	buf_printf(b, " %s=\"", key);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			buf_printf(b, "\\x%02x", c);
		else
			buf_append(b, s, 1);
	}
	buf_puts(b, "\"");
}

static const char *const err_names[] = {
	"ok", "unknown_verb", "syntax", "bad_path", "unknown_param", "non_ascii",
};

static const char *const body_names[] = { "", "7BIT", "8BITMIME", "BINARYMIME" };

static void put_path_fields(struct buf *b, const struct smtp_cmd *c)
{
	put_quoted(b, "path", c->path);
	if (c->non_ascii)
		buf_puts(b, " non_ascii");
	if (c->has_size)
		buf_printf(b, " size=%llu", (unsigned long long)c->size);
	if (c->body)
		buf_printf(b, " body=%s", body_names[c->body]);
	if (c->smtputf8)
		buf_puts(b, " smtputf8");
	put_quoted(b, "auth", c->auth_param);
	put_quoted(b, "ret", c->ret);
	put_quoted(b, "envid", c->envid);
	put_quoted(b, "notify", c->notify);
	put_quoted(b, "orcpt", c->orcpt);
}

static void put_fields(struct buf *b, const struct smtp_cmd *c)
{
	switch (c->verb) {
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		put_quoted(b, "domain", c->domain);
		break;
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
		put_path_fields(b, c);
		break;
	case SMTP_VERB_BDAT:
		buf_printf(b, " chunk=%llu%s", (unsigned long long)c->chunk_size,
		           c->last ? " last" : "");
		break;
	case SMTP_VERB_AUTH:
		put_quoted(b, "mech", c->mech);
		put_quoted(b, "initial", c->initial);
		break;
	case SMTP_VERB_NOOP:
	case SMTP_VERB_HELP:
	case SMTP_VERB_VRFY:
	case SMTP_VERB_EXPN:
		if (*c->arg)
			put_quoted(b, "arg", c->arg);
		break;
	default:
		break;
	}
}

/* One case: the input line as written, then the result. */
static void run_case(struct buf *out, const char *text)
{
	size_t cap = strlen(text) + 1;
	char *line = malloc(cap);
	ck_assert_ptr_nonnull(line);
	size_t len = unescape(text, line);
	line[len] = '\0';

	struct smtp_cmd cmd;
	int rc = smtp_parse(line, len, &cmd);
	ck_assert_int_ge(rc, 0);
	ck_assert_int_lt(rc, (int)ARRAY_LEN(err_names));
	buf_printf(out, "> %s\n  %s", text, err_names[rc]);
	if (cmd.verb != SMTP_VERB_UNKNOWN)
		buf_printf(out, " verb=%s", smtp_verb_name(cmd.verb));
	if (rc == SMTP_PARSE_OK)
		put_fields(out, &cmd);
	buf_puts(out, "\n");
	free(line);
}

static char *golden_path(const char *name)
{
	const char *top = getenv("top_srcdir");
	return str_printf("%s/test/unit/golden/%s", top && *top ? top : ".", name);
}

static void read_file(const char *name, struct buf *b)
{
	char *path = golden_path(name);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s (set top_srcdir)", path);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(b, chunk, n);
	fclose(f);
	free(path);
}

/* Line number of the first difference, for the failure message. */
static int first_diff_line(const struct buf *a, const struct buf *b)
{
	int line = 1;
	for (size_t i = 0; i < a->len && i < b->len && a->data[i] == b->data[i]; i++)
		if (a->data[i] == '\n')
			line++;
	return line;
}

START_TEST(test_golden)
{
	struct buf in, ref, out;
	buf_init(&in);
	buf_init(&ref);
	buf_init(&out);
	read_file("parse.in", &in);
	read_file("parse.ref", &ref);

	char *save = NULL;
	for (char *l = strtok_r(in.data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (l[0] == '#')
			buf_printf(&out, "%s\n", l);
		else
			run_case(&out, l);
	}
	bool same = out.len == ref.len && memcmp(out.data, ref.data, out.len) == 0;
	if (!same) {
		FILE *f = fopen("parse.out", "w");
		if (f) {
			fwrite(out.data, 1, out.len, f);
			fclose(f);
		}
	}
	ck_assert_msg(same, "parse.ref differs at line %d; actual output in parse.out",
	              first_diff_line(&out, &ref));
	buf_free(&in);
	buf_free(&ref);
	buf_free(&out);
}
END_TEST

/* ---- parser details the golden file cannot show ------------------------- */

static int parse_str(const char *text, struct smtp_cmd *cmd, char **copy)
{
	*copy = str_dup(text);
	return smtp_parse(*copy, strlen(text), cmd);
}

START_TEST(test_parse_in_place)
{
	struct smtp_cmd cmd;
	char *line;
	ck_assert_int_eq(parse_str("MAIL FROM:<a@b.example> SIZE=5", &cmd, &line), SMTP_PARSE_OK);
	/* Every pointer lies inside the line. */
	ck_assert_ptr_eq(cmd.path, line + 11);
	ck_assert_str_eq(cmd.path, "a@b.example");
	ck_assert(cmd.has_size && cmd.size == 5);
	free(line);

	ck_assert_int_eq(parse_str("QUIT", &cmd, &line), SMTP_PARSE_OK);
	ck_assert_str_eq(cmd.arg, "");
	free(line);
}
END_TEST

START_TEST(test_parse_embedded_nul)
{
	/* The reader hands over lines with NULs; len, not strlen, is the truth. */
	char line[] = "NOOP a\0b";
	struct smtp_cmd cmd;
	ck_assert_int_eq(smtp_parse(line, sizeof(line) - 1, &cmd), SMTP_PARSE_SYNTAX);
	ck_assert_int_eq(cmd.verb, SMTP_VERB_NOOP);

	char mail[] = "MAIL FROM:<a@b.example>\0 XFOO";
	ck_assert_int_eq(smtp_parse(mail, sizeof(mail) - 1, &cmd), SMTP_PARSE_SYNTAX);
}
END_TEST

START_TEST(test_verb_names)
{
	ck_assert_str_eq(smtp_verb_name(SMTP_VERB_MAIL), "MAIL");
	ck_assert_str_eq(smtp_verb_name(SMTP_VERB_STARTTLS), "STARTTLS");
	ck_assert_str_eq(smtp_verb_name(SMTP_VERB_UNKNOWN), "UNKNOWN");
	ck_assert_str_eq(smtp_verb_name(SMTP_VERB_COUNT), "UNKNOWN");
	for (int v = 1; v < SMTP_VERB_COUNT; v++) {
		/* Each name parses back to its verb. */
		char line[32];
		struct smtp_cmd cmd;
		snprintf(line, sizeof(line), "%s", smtp_verb_name((enum smtp_verb)v));
		smtp_parse(line, strlen(line), &cmd);
		ck_assert_int_eq(cmd.verb, v);
	}
}
END_TEST

/* Random lines from an SMTP-flavoured alphabet: no crash, no overread
 * (ASan), and pointers stay inside the line. */
START_TEST(test_parse_random)
{
	static const char alphabet[] = "MAILFROM:RCPTTO<>@.\"\\ =,;[]:-+SIZEBODY8\x80\xc3\xa9\x01";
	unsigned seed = 12345;
	for (int i = 0; i < 20000; i++) {
		char line[80];
		size_t len = (size_t)(rand_r(&seed) % 60);
		const char *start = i % 3 == 0 ? "" : i % 3 == 1 ? "MAIL FROM:<" : "RCPT TO:<";
		size_t pre = strlen(start);
		memcpy(line, start, pre);
		for (size_t j = pre; j < len; j++)
			line[j] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
		if (len < pre)
			len = pre;
		line[len] = '\0';
		struct smtp_cmd cmd;
		int rc = smtp_parse(line, len, &cmd);
		ck_assert_int_ge(rc, 0);
		ck_assert_int_le(rc, SMTP_PARSE_NON_ASCII);
		if (rc == SMTP_PARSE_OK && cmd.path)
			ck_assert(cmd.path >= line && cmd.path <= line + len);
	}
}
END_TEST

/* ---- mailbox syntax ------------------------------------------------------ */

static const struct {
	const char *path;
	bool ascii_ok;
	bool utf8_ok;
} mailboxes[] = {
	{ "user@example.org", true, true },
	{ "first.last@sub.example.org", true, true },
	{ "a!#$%&'*+-/=?^_`{|}~@example.org", true, true },
	{ "\"quoted space\"@example.org", true, true },
	{ "\"\"@example.org", true, true },
	{ "\"a\\\"b\"@example.org", true, true },
	{ "\"a\\\x01\"@example.org", false, false },
	{ "user@localhost", true, true },
	{ "user@1.2.3.4", true, true },
	{ "user@[1.2.3.4]", true, true },
	{ "user@[IPv6:::1]", true, true },
	{ "user@[ipv6:2001:db8::ffff:192.0.2.1]", true, true },
	{ "user@[IPv6:1.2.3.4]", false, false },
	{ "user@[1.2.3]", false, false },
	{ "user@[01.2.3.4]", false, false },
	{ "user@[tag:data]", false, false },
	{ "user@[1.2.3.4]x", false, false },
	{ "user@[1.2.3.4", false, false },
	{ "user", false, false },
	{ "@example.org", false, false },
	{ "user@", false, false },
	{ "user@@example.org", false, false },
	{ "us er@example.org", false, false },
	{ "user@exam_ple.org", false, false },
	{ "user@example.org.", false, false },
	{ "user@.example.org", false, false },
	{ "user@-x.org", false, false },
	{ "user@x-.org", false, false },
	{ "user@x--y.org", true, true },
	{ "user@xn--bcher-kva.example", true, true },
	{ "j\xc3\xb6ran@example.org", false, true },
	{ "user@b\xc3\xbc" "cher.example", false, true },
	{ "\"j\xc3\xb6 r\"@example.org", false, true },
	{ "\xe2\x82\xac@example.org", false, true },
	{ "\xf0\x9f\x93\xa7@example.org", false, true },
	{ "\xc3@example.org", false, false },
	{ "\xc0\x80@example.org", false, false },
	{ "\xe0\x80\x80@example.org", false, false },
	{ "\xed\xa0\x80@example.org", false, false },
	{ "\xf4\x90\x80\x80@example.org", false, false },
	{ "\xf5\x80\x80\x80@example.org", false, false },
	{ "\xff@example.org", false, false },
};

START_TEST(test_valid_mailbox)
{
	for (size_t i = 0; i < ARRAY_LEN(mailboxes); i++) {
		ck_assert_msg(smtp_valid_mailbox(mailboxes[i].path, false) == mailboxes[i].ascii_ok,
		              "ascii case %zu: %s", i, mailboxes[i].path);
		ck_assert_msg(smtp_valid_mailbox(mailboxes[i].path, true) == mailboxes[i].utf8_ok,
		              "utf8 case %zu: %s", i, mailboxes[i].path);
	}
}
END_TEST

static char *repeat(char c, size_t n)
{
	char *s = xmalloc(n + 1);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

START_TEST(test_mailbox_lengths)
{
	char *l64 = repeat('a', 64), *l65 = repeat('a', 65);
	char *lab63 = repeat('b', 63), *lab64 = repeat('b', 64);
	char *s;

	s = str_printf("%s@example.org", l64);
	ck_assert(smtp_valid_mailbox(s, false));
	free(s);
	s = str_printf("%s@example.org", l65);
	ck_assert(!smtp_valid_mailbox(s, false));
	free(s);
	s = str_printf("u@%s.org", lab63);
	ck_assert(smtp_valid_mailbox(s, false));
	free(s);
	s = str_printf("u@%s.org", lab64);
	ck_assert(!smtp_valid_mailbox(s, false));
	free(s);
	/* 254 octets, 256 with the brackets (RFC 5321 4.5.3.1.3): the most. */
	char *lab61 = repeat('c', 61), *lab62 = repeat('c', 62);
	s = str_printf("%s@%s.%s.%s", l64, lab63, lab63, lab61);
	ck_assert_uint_eq(strlen(s), 254);
	ck_assert(smtp_valid_mailbox(s, false));
	free(s);
	s = str_printf("%s@%s.%s.%s", l64, lab63, lab63, lab62);
	ck_assert(!smtp_valid_mailbox(s, false));
	free(s);
	free(lab61);
	free(lab62);
	free(l64);
	free(l65);
	free(lab63);
	free(lab64);
}
END_TEST

/* ---- line reader ----------------------------------------------------------- */

struct got {
	int rc;
	char line[600];
	size_t len;
};

/* Drains the reader into at most max results; returns how many. */
static size_t drain(struct smtp_reader *r, struct got *g, size_t max)
{
	size_t n = 0;
	char *line;
	size_t len;
	int rc;
	while ((rc = smtp_reader_next(r, &line, &len)) != SMTP_LINE_NONE) {
		ck_assert_uint_lt(n, max);
		g[n].rc = rc;
		g[n].len = len;
		if (rc == SMTP_LINE_OK) {
			ck_assert_uint_lt(len, sizeof(g[n].line));
			ck_assert_int_eq(line[len], '\0');
			memcpy(g[n].line, line, len + 1);
		}
		n++;
	}
	return n;
}

static void push_str(struct smtp_reader *r, const char *s)
{
	smtp_reader_push(r, s, strlen(s));
}

START_TEST(test_reader_split)
{
	struct smtp_reader r;
	struct got g[4];
	const char *s = "EHLO client.example.org\r\n";
	smtp_reader_init(&r, 512);
	for (size_t i = 0; s[i]; i++) {
		ck_assert_uint_eq(drain(&r, g, 4), 0);
		smtp_reader_push(&r, s + i, 1);
	}
	ck_assert_uint_eq(drain(&r, g, 4), 1);
	ck_assert_int_eq(g[0].rc, SMTP_LINE_OK);
	ck_assert_str_eq(g[0].line, "EHLO client.example.org");
	ck_assert_uint_eq(g[0].len, 23);
	ck_assert_ptr_null(r.in.data);
	smtp_reader_free(&r);
}
END_TEST

START_TEST(test_reader_crlf_across_chunks)
{
	struct smtp_reader r;
	struct got g[4];
	smtp_reader_init(&r, 512);
	push_str(&r, "NOOP\r");
	ck_assert_uint_eq(drain(&r, g, 4), 0);
	ck_assert_uint_eq(smtp_reader_pending(&r), 5);
	push_str(&r, "\nQUIT\r");
	ck_assert_uint_eq(drain(&r, g, 4), 1);
	ck_assert_str_eq(g[0].line, "NOOP");
	push_str(&r, "\n");
	ck_assert_uint_eq(drain(&r, g, 4), 1);
	ck_assert_str_eq(g[0].line, "QUIT");
	ck_assert_uint_eq(smtp_reader_pending(&r), 0);
	smtp_reader_free(&r);
}
END_TEST

START_TEST(test_reader_pipelined)
{
	struct smtp_reader r;
	struct got g[8];
	smtp_reader_init(&r, 512);
	push_str(&r, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n\r\nDATA\r\nQU");
	ck_assert_uint_eq(drain(&r, g, 8), 4);
	ck_assert_str_eq(g[0].line, "MAIL FROM:<a@b.example>");
	ck_assert_str_eq(g[1].line, "RCPT TO:<c@d.example>");
	ck_assert_int_eq(g[2].rc, SMTP_LINE_OK);
	ck_assert_str_eq(g[2].line, "");
	ck_assert_str_eq(g[3].line, "DATA");
	ck_assert_uint_eq(smtp_reader_pending(&r), 2);
	push_str(&r, "IT\r\n");
	ck_assert_uint_eq(drain(&r, g, 8), 1);
	ck_assert_str_eq(g[0].line, "QUIT");
	smtp_reader_free(&r);
}
END_TEST

/* The limit counts the CRLF: 16 bytes with it pass, 17 do not. */
START_TEST(test_reader_limit_exact)
{
	struct smtp_reader r;
	struct got g[4];
	smtp_reader_init(&r, 16);
	push_str(&r, "NOOP 123456789\r\nNOOP 1234567890\r\nQUIT\r\n");
	ck_assert_uint_eq(drain(&r, g, 4), 3);
	ck_assert_int_eq(g[0].rc, SMTP_LINE_OK);
	ck_assert_str_eq(g[0].line, "NOOP 123456789");
	ck_assert_int_eq(g[1].rc, SMTP_LINE_TOO_LONG);
	ck_assert_int_eq(g[2].rc, SMTP_LINE_OK);
	ck_assert_str_eq(g[2].line, "QUIT");
	smtp_reader_free(&r);
}
END_TEST

START_TEST(test_reader_overlong_then_good)
{
	struct smtp_reader r;
	struct got g[4];
	smtp_reader_init(&r, 16);
	push_str(&r, "NOOP aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nQUIT\r\n");
	ck_assert_uint_eq(drain(&r, g, 4), 2);
	ck_assert_int_eq(g[0].rc, SMTP_LINE_TOO_LONG);
	ck_assert_int_eq(g[1].rc, SMTP_LINE_OK);
	ck_assert_str_eq(g[1].line, "QUIT");
	smtp_reader_free(&r);
}
END_TEST

/* Reported early, before its CRLF; the rest of the line, including a bare
 * LF and a CRLF split across chunks, is skipped, and reported only once. */
START_TEST(test_reader_overlong_reported_early)
{
	struct smtp_reader r;
	struct got g[4];
	smtp_reader_init(&r, 16);
	push_str(&r, "NOOP aaaaaaaaaaaaaaaaaaaaaa");
	ck_assert_uint_eq(drain(&r, g, 4), 1);
	ck_assert_int_eq(g[0].rc, SMTP_LINE_TOO_LONG);
	push_str(&r, "bbbb\nQUIT\r");
	ck_assert_uint_eq(drain(&r, g, 4), 0);
	ck_assert_ptr_null(r.in.data);
	push_str(&r, "\nRSET\r\n");
	ck_assert_uint_eq(drain(&r, g, 4), 1);
	ck_assert_int_eq(g[0].rc, SMTP_LINE_OK);
	ck_assert_str_eq(g[0].line, "RSET");
	smtp_reader_free(&r);
}
END_TEST

/* An overlong line's head leaves the reader empty and discarding: asking
 * again before more input comes must not touch the freed buffer (it did
 * NULL + 0 arithmetic, undefined behaviour that clang's UBSan stops on). */
START_TEST(test_reader_overlong_empty_between)
{
	struct smtp_reader r;
	struct got g[4];
	smtp_reader_init(&r, 16);
	push_str(&r, "NOOP aaaaaaaaaaaaaaaaaaaaaa");
	ck_assert_uint_eq(drain(&r, g, 4), 1);
	ck_assert_ptr_null(r.in.data);
	ck_assert(r.discarding);
	ck_assert_uint_eq(drain(&r, g, 4), 0);
	size_t len;
	smtp_reader_peek(&r, &len);
	ck_assert_uint_eq(len, 0);
	smtp_reader_skip(&r, 0);
	push_str(&r, "bbb\r\nQUIT\r\n");
	ck_assert_uint_eq(drain(&r, g, 4), 1);
	ck_assert_str_eq(g[0].line, "QUIT");
	smtp_reader_free(&r);
}
END_TEST

/* Overlong line cut right after its CR: the LF in the next chunk ends it. */
START_TEST(test_reader_overlong_cut_at_cr)
{
	struct smtp_reader r;
	struct got g[4];
	smtp_reader_init(&r, 8);
	push_str(&r, "NOOP abc\r");
	push_str(&r, "\nQUIT\r\n");
	ck_assert_uint_eq(drain(&r, g, 4), 2);
	ck_assert_int_eq(g[0].rc, SMTP_LINE_TOO_LONG);
	ck_assert_str_eq(g[1].line, "QUIT");
	smtp_reader_free(&r);
}
END_TEST

START_TEST(test_reader_bare_lf)
{
	struct smtp_reader r;
	struct got g[4];
	smtp_reader_init(&r, 512);
	push_str(&r, "NOOP\nQUIT\r\n\n");
	ck_assert_uint_eq(drain(&r, g, 4), 3);
	ck_assert_int_eq(g[0].rc, SMTP_LINE_BARE_LF);
	ck_assert_int_eq(g[1].rc, SMTP_LINE_OK);
	ck_assert_str_eq(g[1].line, "QUIT");
	ck_assert_int_eq(g[2].rc, SMTP_LINE_BARE_LF);
	smtp_reader_free(&r);
}
END_TEST

START_TEST(test_reader_bare_cr)
{
	struct smtp_reader r;
	struct got g[4];
	smtp_reader_init(&r, 512);
	/* A CR that is not followed by LF is never a line end. */
	push_str(&r, "NOOP\rRSET\r\nQUIT\r\r\nNOOP\r\n");
	ck_assert_uint_eq(drain(&r, g, 4), 3);
	ck_assert_int_eq(g[0].rc, SMTP_LINE_BARE_LF);
	ck_assert_int_eq(g[1].rc, SMTP_LINE_BARE_LF);
	ck_assert_int_eq(g[2].rc, SMTP_LINE_OK);
	ck_assert_str_eq(g[2].line, "NOOP");
	smtp_reader_free(&r);
}
END_TEST

START_TEST(test_reader_nul)
{
	struct smtp_reader r;
	struct got g[4];
	struct smtp_cmd cmd;
	char *line;
	size_t len;
	smtp_reader_init(&r, 512);
	smtp_reader_push(&r, "NOOP a\0b\r\n", 10);
	ck_assert_int_eq(smtp_reader_next(&r, &line, &len), SMTP_LINE_OK);
	ck_assert_uint_eq(len, 8);
	ck_assert_int_eq(smtp_parse(line, len, &cmd), SMTP_PARSE_SYNTAX);
	ck_assert_uint_eq(drain(&r, g, 4), 0);
	smtp_reader_free(&r);
}
END_TEST

/* Megabytes without CRLF: the session takes lines after every read, so
 * memory stays within one read plus max_line however much arrives. */
START_TEST(test_reader_memory_bounded)
{
	struct smtp_reader r;
	struct got g[4];
	size_t chunk = 65536;
	char *junk = repeat('x', chunk);
	int too_long = 0;
	smtp_reader_init(&r, 512);
	for (int i = 0; i < 128; i++) {
		smtp_reader_push(&r, junk, chunk);
		size_t n = drain(&r, g, 4);
		for (size_t j = 0; j < n; j++)
			too_long += g[j].rc == SMTP_LINE_TOO_LONG;
		ck_assert_uint_le(r.in.cap, 2 * chunk);
	}
	ck_assert_int_eq(too_long, 1);
	ck_assert_ptr_null(r.in.data);
	push_str(&r, "\r\nQUIT\r\n");
	ck_assert_uint_eq(drain(&r, g, 4), 1);
	ck_assert_str_eq(g[0].line, "QUIT");
	ck_assert_ptr_null(r.in.data);
	free(junk);
	smtp_reader_free(&r);
}
END_TEST

START_TEST(test_reader_discard)
{
	struct smtp_reader r;
	struct got g[4];
	char *line;
	size_t len;
	smtp_reader_init(&r, 512);
	/* STARTTLS with a command injected behind it (CVE-2011-0411). */
	push_str(&r, "STARTTLS\r\nRSET\r\n");
	ck_assert_int_eq(smtp_reader_next(&r, &line, &len), SMTP_LINE_OK);
	ck_assert_str_eq(line, "STARTTLS");
	ck_assert_uint_eq(smtp_reader_pending(&r), 6);
	smtp_reader_discard(&r);
	ck_assert_uint_eq(smtp_reader_pending(&r), 0);
	ck_assert_uint_eq(drain(&r, g, 4), 0);
	ck_assert_ptr_null(r.in.data);
	smtp_reader_free(&r);
}
END_TEST

/* The same stream in every two-way split gives the same results. */
START_TEST(test_reader_all_splits)
{
	const char *s = "EHLO x\r\nNOOP aaaaaaaaaaaaaaaaaaaaaaaaaa\r\nbad\nNOOP\rx\r\n"
	                "MAIL FROM:<a@b>\r\nNOOP bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\r\nQUIT\r\n";
	size_t len = strlen(s);
	struct got want[16], g[16];
	struct smtp_reader r;

	smtp_reader_init(&r, 20);
	smtp_reader_push(&r, s, len);
	size_t nwant = drain(&r, want, 16);
	smtp_reader_free(&r);
	ck_assert_uint_eq(nwant, 7);

	for (size_t cut = 0; cut <= len; cut++) {
		size_t n;
		smtp_reader_init(&r, 20);
		smtp_reader_push(&r, s, cut);
		n = drain(&r, g, 16);
		smtp_reader_push(&r, s + cut, len - cut);
		n += drain(&r, g + n, 16 - n);
		ck_assert_uint_eq(n, nwant);
		for (size_t i = 0; i < n; i++) {
			ck_assert_int_eq(g[i].rc, want[i].rc);
			if (g[i].rc == SMTP_LINE_OK)
				ck_assert_str_eq(g[i].line, want[i].line);
		}
		ck_assert_ptr_null(r.in.data);
		smtp_reader_free(&r);
	}
}
END_TEST

static Suite *parse_suite(void)
{
	Suite *s = suite_create("smtp_parse");
	TCase *tc = tcase_create("parser");
	tcase_add_test(tc, test_golden);
	tcase_add_test(tc, test_parse_in_place);
	tcase_add_test(tc, test_parse_embedded_nul);
	tcase_add_test(tc, test_verb_names);
	tcase_add_test(tc, test_parse_random);
	tcase_add_test(tc, test_valid_mailbox);
	tcase_add_test(tc, test_mailbox_lengths);
	suite_add_tcase(s, tc);

	tc = tcase_create("reader");
	tcase_add_test(tc, test_reader_split);
	tcase_add_test(tc, test_reader_crlf_across_chunks);
	tcase_add_test(tc, test_reader_pipelined);
	tcase_add_test(tc, test_reader_limit_exact);
	tcase_add_test(tc, test_reader_overlong_then_good);
	tcase_add_test(tc, test_reader_overlong_reported_early);
	tcase_add_test(tc, test_reader_overlong_cut_at_cr);
	tcase_add_test(tc, test_reader_overlong_empty_between);
	tcase_add_test(tc, test_reader_bare_lf);
	tcase_add_test(tc, test_reader_bare_cr);
	tcase_add_test(tc, test_reader_nul);
	tcase_add_test(tc, test_reader_memory_bounded);
	tcase_add_test(tc, test_reader_discard);
	tcase_add_test(tc, test_reader_all_splits);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(parse_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
