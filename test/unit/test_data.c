/*
 * test_data.c - unit tests for the DATA decoder: dot-unstuffing, the end of
 * data, SMTP smuggling (bare LF / bare CR never end the data), line and
 * size limits, and independence from how the input is split. Random inputs
 * are checked against a deliberately naive reference decoder.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/parse.h"

struct result {
	int rc;
	size_t used;      /* input bytes consumed over all feeds */
	unsigned flags;
	uint64_t size;
	struct buf out;
};

/* Splits: 0 = all at once, 1 = one byte at a time, else random chunks
 * drawn from that seed. */
static void decode(const char *in, size_t len, size_t max_line, uint64_t max_size,
                   unsigned split, struct result *res)
{
	struct smtp_data d;
	unsigned seed = split;
	size_t off = 0;

	smtp_data_init(&d, max_line, max_size);
	buf_init(&res->out);
	res->rc = SMTP_DATA_MORE;
	do {
		size_t n = len - off;
		if (split == 1 && n > 1)
			n = 1;
		else if (split > 1 && n > 0)
			n = (size_t)rand_r(&seed) % (n + 1);
		size_t used = SIZE_MAX;
		res->rc = smtp_data_feed(&d, in + off, n, &used, &res->out);
		ck_assert_uint_le(used, n);
		if (res->rc == SMTP_DATA_MORE)
			ck_assert_uint_eq(used, n);
		off += used;
	} while (res->rc == SMTP_DATA_MORE && off < len);
	res->used = off;
	res->flags = d.flags;
	res->size = d.size;
}

static void decode_str(const char *in, unsigned split, struct result *res)
{
	decode(in, strlen(in), 998, 0, split, res);
}

/* memcmp that accepts the NULL data of an empty struct buf. */
static bool same_bytes(const void *a, const void *b, size_t n)
{
	return n == 0 || memcmp(a, b, n) == 0;
}

static void assert_out(const struct result *res, const char *want)
{
	ck_assert_uint_eq(res->out.len, strlen(want));
	ck_assert(same_bytes(res->out.data, want, res->out.len));
}

/* ---- the basics --------------------------------------------------------- */

static const struct {
	const char *in;
	const char *out;
} clean[] = {
	{ ".\r\n", "" },
	{ "\r\n.\r\n", "\r\n" },
	{ "Subject: hi\r\n\r\nbody\r\n.\r\n", "Subject: hi\r\n\r\nbody\r\n" },
	{ "..\r\n.\r\n", ".\r\n" },
	{ "...\r\n.\r\n", "..\r\n" },
	{ "a\r\n..b\r\n.\r\n", "a\r\n.b\r\n" },
	{ "..\r\n..\r\n.\r\n", ".\r\n.\r\n" },
	{ ".b\r\n.\r\n", "b\r\n" },          /* an unstuffed dot is still removed */
	{ ". \r\n.\r\n", " \r\n" },
	{ "a.\r\n.a\r\n.\r\n", "a.\r\na\r\n" },
	{ "\r\n\r\n.\r\n", "\r\n\r\n" },
};

START_TEST(test_clean_messages)
{
	for (size_t i = 0; i < ARRAY_LEN(clean); i++) {
		for (unsigned split = 0; split < 8; split++) {
			struct result res;
			decode_str(clean[i].in, split, &res);
			ck_assert_msg(res.rc == SMTP_DATA_END, "case %zu split %u", i, split);
			ck_assert_uint_eq(res.used, strlen(clean[i].in));
			ck_assert_uint_eq(res.flags, 0);
			assert_out(&res, clean[i].out);
			ck_assert_uint_eq(res.size, strlen(clean[i].out));
			buf_free(&res.out);
		}
	}
}
END_TEST

START_TEST(test_bytes_after_end_unused)
{
	const char *s = "hello\r\n.\r\nQUIT\r\n";
	for (unsigned split = 0; split < 8; split++) {
		struct result res;
		decode_str(s, split, &res);
		ck_assert_int_eq(res.rc, SMTP_DATA_END);
		ck_assert_uint_eq(res.used, strlen("hello\r\n.\r\n"));
		assert_out(&res, "hello\r\n");
		buf_free(&res.out);
	}
}
END_TEST

START_TEST(test_feed_after_end)
{
	struct smtp_data d;
	struct buf out;
	size_t used;
	buf_init(&out);
	smtp_data_init(&d, 998, 0);
	ck_assert_int_eq(smtp_data_feed(&d, ".\r\nRSET\r\n", 9, &used, &out), SMTP_DATA_END);
	ck_assert_uint_eq(used, 3);
	ck_assert_int_eq(smtp_data_feed(&d, "RSET\r\n", 6, &used, &out), SMTP_DATA_END);
	ck_assert_uint_eq(used, 0);
	ck_assert_uint_eq(out.len, 0);
	ck_assert_int_eq(smtp_data_feed(&d, NULL, 0, &used, &out), SMTP_DATA_END);
	buf_free(&out);
}
END_TEST

START_TEST(test_empty_feed)
{
	struct smtp_data d;
	struct buf out;
	size_t used = 99;
	buf_init(&out);
	smtp_data_init(&d, 998, 0);
	ck_assert_int_eq(smtp_data_feed(&d, NULL, 0, &used, &out), SMTP_DATA_MORE);
	ck_assert_uint_eq(used, 0);
	ck_assert_ptr_null(out.data);
}
END_TEST

/* ---- SMTP smuggling ------------------------------------------------------- */

/*
 * The end sequences other servers have accepted (postfix.org/smtp-smuggling
 * and the 2023 SEC Consult paper). None may end the data here, wherever it
 * appears, and each must be flagged so that the message is refused.
 */
static const char *const smuggle[] = {
	"\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r", "\r\n.\n", "\r.\n", "\n.\r",
	"\r.\r", "\r\n.\r\r\n", "\r\n.\r.\r\n", "\n\n.\n\n", "\r\r\n.\n",
	"\r\n\n.\r\n", "\n\r\n.\n", "\r\n.\r \r\n",
};

static const char injected[] = "MAIL FROM:<admin@bank.example>\r\n"
                               "RCPT TO:<victim@example.org>\r\nDATA\r\n"
                               "Subject: smuggled\r\n\r\nsmuggled";

static void check_smuggle(const char *prefix, const char *seq, size_t idx)
{
	char *msg = str_printf("%s%s%s\r\n.\r\nQUIT\r\n", prefix, seq, injected);
	size_t want_used = strlen(msg) - strlen("QUIT\r\n");

	for (unsigned split = 0; split < 16; split++) {
		struct result res;
		decode(msg, strlen(msg), 998, 0, split, &res);
		ck_assert_msg(res.rc == SMTP_DATA_END && res.used == want_used,
		              "sequence %zu ended the data early (split %u, used %zu)",
		              idx, split, res.used);
		ck_assert_msg(res.flags & (SMTP_DATA_ERR_BARE_LF | SMTP_DATA_ERR_BARE_CR),
		              "sequence %zu not flagged (split %u)", idx, split);
		ck_assert_uint_eq(res.flags & ~(unsigned)(SMTP_DATA_ERR_BARE_LF | SMTP_DATA_ERR_BARE_CR), 0);
		/* Nothing after the bad sequence reaches the output. */
		ck_assert(res.out.len <= strlen(prefix) + strlen(seq));
		buf_free(&res.out);
	}
	free(msg);
}

START_TEST(test_smuggling_mid_message)
{
	for (size_t i = 0; i < ARRAY_LEN(smuggle); i++)
		check_smuggle("Subject: x\r\n\r\nbody", smuggle[i], i);
}
END_TEST

START_TEST(test_smuggling_after_crlf)
{
	for (size_t i = 0; i < ARRAY_LEN(smuggle); i++)
		check_smuggle("Subject: x\r\n\r\nbody\r\n", smuggle[i], i);
}
END_TEST

/* Right after the 354, where the start of DATA counts as a CRLF. */
START_TEST(test_smuggling_at_start)
{
	static const char *const starts[] = { ".\n", ".\r", ".\r\r\n", "\n.\r\n", "\r.\r\n" };
	for (size_t i = 0; i < ARRAY_LEN(smuggle); i++)
		check_smuggle("", smuggle[i], i);
	for (size_t i = 0; i < ARRAY_LEN(starts); i++)
		check_smuggle("", starts[i], 100 + i);
}
END_TEST

START_TEST(test_bare_flags_exact)
{
	struct result res;
	decode_str("a\nb\r\n.\r\n", 0, &res);
	ck_assert_int_eq(res.rc, SMTP_DATA_END);
	ck_assert_uint_eq(res.flags, SMTP_DATA_ERR_BARE_LF);
	buf_free(&res.out);
	decode_str("a\rb\r\n.\r\n", 0, &res);
	ck_assert_uint_eq(res.flags, SMTP_DATA_ERR_BARE_CR);
	buf_free(&res.out);
	/* CR CR LF: the first CR is bare, the CRLF is a real line end. */
	decode_str("a\r\r\n.\r\n", 0, &res);
	ck_assert_int_eq(res.rc, SMTP_DATA_END);
	ck_assert_uint_eq(res.used, 7);
	ck_assert_uint_eq(res.flags, SMTP_DATA_ERR_BARE_CR);
	buf_free(&res.out);
}
END_TEST

/* The output stops at the error but the real end is still found. */
START_TEST(test_error_stops_output)
{
	struct smtp_data d;
	struct buf out;
	size_t used;
	buf_init(&out);
	smtp_data_init(&d, 998, 0);
	ck_assert_int_eq(smtp_data_feed(&d, "good\r\n", 6, &used, &out), SMTP_DATA_MORE);
	ck_assert_uint_eq(out.len, 6);
	ck_assert_int_eq(smtp_data_feed(&d, "bad\n", 4, &used, &out), SMTP_DATA_MORE);
	ck_assert_int_eq(smtp_data_feed(&d, "more\r\nmore\r\n", 12, &used, &out), SMTP_DATA_MORE);
	ck_assert_uint_eq(out.len, 6);
	ck_assert_int_eq(smtp_data_feed(&d, ".\r\nNOOP", 7, &used, &out), SMTP_DATA_END);
	ck_assert_uint_eq(used, 3);
	ck_assert_uint_eq(d.flags, SMTP_DATA_ERR_BARE_LF);
	buf_free(&out);
}
END_TEST

/* ---- limits --------------------------------------------------------------- */

static char *line_of(char c, size_t n, const char *prefix, const char *suffix)
{
	struct buf b;
	buf_init(&b);
	buf_puts(&b, prefix);
	for (size_t i = 0; i < n; i++)
		buf_append(&b, &c, 1);
	buf_puts(&b, suffix);
	return b.data;
}

START_TEST(test_long_line)
{
	struct result res;
	char *ok = line_of('x', 998, "", "\r\n.\r\n");
	char *bad = line_of('x', 999, "", "\r\n.\r\n");
	/* Dot-stuffing does not count: 998 characters of message. */
	char *stuffed = line_of('x', 997, "..", "\r\n.\r\n");
	char *two = line_of('x', 998, "short\r\n", "\r\nshort\r\n.\r\n");

	for (unsigned split = 0; split < 6; split++) {
		decode_str(ok, split, &res);
		ck_assert_uint_eq(res.flags, 0);
		ck_assert_uint_eq(res.out.len, 1000);
		buf_free(&res.out);
		decode_str(bad, split, &res);
		ck_assert_int_eq(res.rc, SMTP_DATA_END);
		ck_assert_uint_eq(res.flags, SMTP_DATA_ERR_LONG_LINE);
		buf_free(&res.out);
		decode_str(stuffed, split, &res);
		ck_assert_uint_eq(res.flags, 0);
		ck_assert_uint_eq(res.out.len, 1000);
		buf_free(&res.out);
		decode_str(two, split, &res);
		ck_assert_uint_eq(res.flags, 0);
		buf_free(&res.out);
	}
	free(ok);
	free(bad);
	free(stuffed);
	free(two);
}
END_TEST

/* A megabyte without a line end: flagged, nothing kept, end still found. */
START_TEST(test_huge_line)
{
	struct smtp_data d;
	struct buf out;
	size_t used;
	char *junk = line_of('x', 65536, "", "");
	buf_init(&out);
	smtp_data_init(&d, 998, 0);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(smtp_data_feed(&d, junk, 65536, &used, &out), SMTP_DATA_MORE);
	ck_assert_uint_eq(d.flags, SMTP_DATA_ERR_LONG_LINE);
	ck_assert_ptr_null(out.data);
	ck_assert_int_eq(smtp_data_feed(&d, "\r\n.\r\n", 5, &used, &out), SMTP_DATA_END);
	ck_assert_uint_eq(used, 5);
	free(junk);
}
END_TEST

START_TEST(test_no_line_limit)
{
	struct result res;
	char *big = line_of('x', 5000, "", "\r\n.\r\n");
	decode(big, strlen(big), 0, 0, 0, &res);
	ck_assert_uint_eq(res.flags, 0);
	ck_assert_uint_eq(res.out.len, 5002);
	buf_free(&res.out);
	free(big);
}
END_TEST

START_TEST(test_size_limit)
{
	struct result res;
	const char *fits = "12345678\r\n.\r\n";      /* 10 bytes of message */
	const char *over = "123456789\r\n.\r\nQUIT"; /* 11 */

	for (unsigned split = 0; split < 8; split++) {
		decode(fits, strlen(fits), 998, 10, split, &res);
		ck_assert_uint_eq(res.flags, 0);
		assert_out(&res, "12345678\r\n");
		buf_free(&res.out);

		decode(over, strlen(over), 998, 10, split, &res);
		ck_assert_int_eq(res.rc, SMTP_DATA_END);
		ck_assert_uint_eq(res.used, strlen(over) - 4);
		ck_assert_uint_eq(res.flags, SMTP_DATA_ERR_TOO_BIG);
		ck_assert_uint_le(res.out.len, 10);
		ck_assert_uint_eq(res.size, 11);
		buf_free(&res.out);
	}
}
END_TEST

/* ---- split independence and the reference model --------------------------- */

static bool is_crlf(const char *in, size_t len, size_t i)
{
	return i + 1 < len && in[i] == '\r' && in[i + 1] == '\n';
}

/*
 * The definition, spelled out the slow way: the data ends at the first
 * ".CRLF" at the very start or right after a CRLF; before it, every CR must
 * start a CRLF and every LF end one; lines are CRLF-separated and lose one
 * leading dot.
 */
static void reference(const char *in, size_t len, size_t max_line, uint64_t max_size,
                      struct result *res)
{
	size_t end = SIZE_MAX;
	buf_init(&res->out);
	res->flags = 0;
	for (size_t i = 0; i + 2 < len && end == SIZE_MAX; i++)
		if (in[i] == '.' && is_crlf(in, len, i + 1) && (i == 0 || (i >= 2 && is_crlf(in, len, i - 2))))
			end = i;
	res->rc = end == SIZE_MAX ? SMTP_DATA_MORE : SMTP_DATA_END;
	res->used = end == SIZE_MAX ? len : end + 3;
	size_t body = end == SIZE_MAX ? len : end;

	for (size_t i = 0; i < body; i++) {
		if (in[i] == '\r' && !(i + 1 < len && in[i + 1] == '\n'))
			res->flags |= SMTP_DATA_ERR_BARE_CR;
		if (in[i] == '\n' && !(i > 0 && in[i - 1] == '\r'))
			res->flags |= SMTP_DATA_ERR_BARE_LF;
	}
	size_t start = 0;
	while (start < body) {
		size_t e = start;
		while (e < body && !is_crlf(in, len, e))
			e++;
		size_t s = start + (in[start] == '.' ? 1 : 0);
		if (e < body && max_line && e - s > max_line)
			res->flags |= SMTP_DATA_ERR_LONG_LINE;
		buf_append(&res->out, in + s, (e < body ? e + 2 : body) - s);
		start = e + 2;
	}
	if (max_size && res->out.len > max_size)
		res->flags |= SMTP_DATA_ERR_TOO_BIG;
}

static const unsigned bare = SMTP_DATA_ERR_BARE_LF | SMTP_DATA_ERR_BARE_CR;

static void compare_with_reference(const char *in, size_t len, size_t max_line,
                                   uint64_t max_size)
{
	struct result want, got;
	reference(in, len, max_line, max_size, &want);

	for (unsigned split = 0; split < 4; split++) {
		decode(in, len, max_line, max_size, split * 7919u + (split == 1), &got);
		ck_assert_int_eq(got.rc, want.rc);
		if (got.rc == SMTP_DATA_END)
			ck_assert_uint_eq(got.used, want.used);
		/* Without the end, the reference already knows a trailing CR is bare. */
		if (got.rc == SMTP_DATA_END)
			ck_assert_uint_eq(got.flags & bare, want.flags & bare);
		else
			ck_assert_uint_eq(got.flags & bare & ~want.flags, 0);
		/* Once bare, line lengths are a matter of interpretation. */
		if (!(want.flags & bare) && got.rc == SMTP_DATA_END) {
			ck_assert_uint_eq(got.flags, want.flags);
			if (got.flags == 0) {
				ck_assert_uint_eq(got.out.len, want.out.len);
				ck_assert(same_bytes(got.out.data, want.out.data, got.out.len));
			}
		}
		buf_free(&got.out);
	}
	buf_free(&want.out);
}

START_TEST(test_random_against_reference)
{
	static const char *const pieces[] = { "\r\n", "\r\n", "\r\n", ".", ".", "a", "bc", "\r", "\n" };
	unsigned seed = 42;
	for (int i = 0; i < 10000; i++) {
		char in[64];
		size_t len = 0;
		size_t want = (size_t)rand_r(&seed) % 40;
		while (len < want) {
			const char *p = pieces[rand_r(&seed) % ARRAY_LEN(pieces)];
			memcpy(in + len, p, strlen(p));
			len += strlen(p);
		}
		compare_with_reference(in, len, 4, 12);
	}
}
END_TEST

/* Every split gives identical output, flags, size and end. */
START_TEST(test_split_independence)
{
	static const char msg[] =
		"From: a@b.example\r\nSubject: t\r\n\r\n..stuffed\r\n.x\r\n"
		"line\r\n...\r\n\r\n..\r\nlast line\r\n.\r\nQUIT\r\n";
	static const char bad[] = "ok\r\nbare\nlf\r\n.\rcr\r\n.\r\nRSET\r\n";
	const char *const inputs[] = { msg, bad };

	for (size_t k = 0; k < ARRAY_LEN(inputs); k++) {
		const char *in = inputs[k];
		size_t len = strlen(in);
		struct result one, got;
		decode(in, len, 998, 0, 0, &one);
		ck_assert_int_eq(one.rc, SMTP_DATA_END);
		for (unsigned split = 1; split < 200; split++) {
			decode(in, len, 998, 0, split, &got);
			ck_assert_int_eq(got.rc, one.rc);
			ck_assert_uint_eq(got.used, one.used);
			ck_assert_uint_eq(got.flags, one.flags);
			ck_assert_uint_eq(got.size, one.size);
			if (one.flags == 0) {
				ck_assert_uint_eq(got.out.len, one.out.len);
				ck_assert(same_bytes(got.out.data, one.out.data, one.out.len));
			}
			buf_free(&got.out);
		}
		if (k == 0)
			assert_out(&one, "From: a@b.example\r\nSubject: t\r\n\r\n.stuffed\r\nx\r\n"
			                 "line\r\n..\r\n\r\n.\r\nlast line\r\n");
		buf_free(&one.out);
	}
}
END_TEST

/* Every two-way cut, including inside CRLF.CRLF and inside "\r\n..". */
START_TEST(test_all_two_way_cuts)
{
	static const char msg[] = "a\r\n..\r\n.b\r\n\r\n.\r\nNEXT";
	size_t len = sizeof(msg) - 1;
	for (size_t cut = 0; cut <= len; cut++) {
		struct smtp_data d;
		struct buf out;
		size_t used, total;
		buf_init(&out);
		smtp_data_init(&d, 998, 0);
		int rc = smtp_data_feed(&d, msg, cut, &used, &out);
		total = used;
		if (rc == SMTP_DATA_MORE) {
			rc = smtp_data_feed(&d, msg + cut, len - cut, &used, &out);
			total += used;
		}
		ck_assert_int_eq(rc, SMTP_DATA_END);
		ck_assert_uint_eq(total, len - 4);
		ck_assert_uint_eq(d.flags, 0);
		ck_assert_uint_eq(out.len, strlen("a\r\n.\r\nb\r\n\r\n"));
		ck_assert(same_bytes(out.data, "a\r\n.\r\nb\r\n\r\n", out.len));
		buf_free(&out);
	}
}
END_TEST

/* Input made of bare LFs must not make the scan quadratic. */
START_TEST(test_bare_lf_flood_is_linear)
{
	size_t n = 4 * 1024 * 1024;
	char *flood = line_of('\n', n, "", "");
	struct smtp_data d;
	struct buf out;
	size_t used;
	buf_init(&out);
	smtp_data_init(&d, 998, 0);
	ck_assert_int_eq(smtp_data_feed(&d, flood, n, &used, &out), SMTP_DATA_MORE);
	ck_assert_uint_eq(d.flags, SMTP_DATA_ERR_BARE_LF);
	free(flood);
	buf_free(&out);
}
END_TEST

/* ---- NUL ------------------------------------------------------------------ */

/* "\r\n\0.\r\n" would end DATA at a lenient next hop: a NUL anywhere in
 * the content is refused, in every split, and the real end is still found;
 * a NUL after the end belongs to the next command, not to the message. */
START_TEST(test_nul_flagged)
{
	static const char msg[] = "Subject: x\r\n\r\nhello\r\n\0.\r\nMAIL FROM:<e@x>\r\n.\r\nNOOP";
	size_t len = sizeof(msg) - 1;
	for (unsigned split = 0; split < 40; split++) {
		struct result res;
		decode(msg, len, 998, 0, split, &res);
		ck_assert_int_eq(res.rc, SMTP_DATA_END);
		ck_assert_uint_eq(res.used, len - 4);
		ck_assert_uint_eq(res.flags, SMTP_DATA_ERR_NUL);
		buf_free(&res.out);
	}
	struct result res;
	decode(".\r\n\0", 4, 998, 0, 0, &res);
	ck_assert_int_eq(res.rc, SMTP_DATA_END);
	ck_assert_uint_eq(res.used, 3);
	ck_assert_uint_eq(res.flags, 0);
	buf_free(&res.out);
	decode("\0\r\n.\r\n", 6, 998, 0, 1, &res);
	ck_assert_uint_eq(res.flags, SMTP_DATA_ERR_NUL);
	buf_free(&res.out);
}
END_TEST

/* ---- BDAT scanner ------------------------------------------------------- */

static unsigned bdat_flags(const char *in, size_t len, size_t max_line, size_t step)
{
	struct smtp_bdat b;
	smtp_bdat_init(&b, max_line);
	for (size_t off = 0; off < len; off += step)
		smtp_bdat_feed(&b, in + off, len - off < step ? len - off : step);
	smtp_bdat_finish(&b);
	return b.flags;
}

START_TEST(test_bdat_scan)
{
	static const struct {
		const char *in;
		size_t len;
		unsigned flags;
	} cases[] = {
		{ "Subj: x\r\n\r\nbody\r\n", 17, 0 },
		{ "", 0, 0 },
		{ "a\nb\r\n", 5, SMTP_DATA_ERR_BARE_LF },
		{ "a\rb\r\n", 5, SMTP_DATA_ERR_BARE_CR },
		{ "a\r\r\n", 4, SMTP_DATA_ERR_BARE_CR },
		{ "a\r", 2, SMTP_DATA_ERR_BARE_CR },          /* CR at the very end */
		{ "a\r\n\0.\r\n", 7, SMTP_DATA_ERR_NUL },
		{ "\0", 1, SMTP_DATA_ERR_NUL },
		{ "12345678\r\n", 10, 0 },                    /* at the limit */
		{ "123456789\r\n", 11, SMTP_DATA_ERR_LONG_LINE },
		{ "12345678\r\n12345678", 18, 0 },
		{ "\n.\n", 3, SMTP_DATA_ERR_BARE_LF },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		for (size_t step = 1; step <= cases[i].len + 1; step++)
			ck_assert_msg(bdat_flags(cases[i].in, cases[i].len, 8, step) == cases[i].flags,
			              "case %zu step %zu", i, step);
}
END_TEST

static Suite *data_suite(void)
{
	Suite *s = suite_create("smtp_data");
	TCase *tc = tcase_create("decoder");
	tcase_add_test(tc, test_clean_messages);
	tcase_add_test(tc, test_bytes_after_end_unused);
	tcase_add_test(tc, test_feed_after_end);
	tcase_add_test(tc, test_empty_feed);
	tcase_add_test(tc, test_long_line);
	tcase_add_test(tc, test_huge_line);
	tcase_add_test(tc, test_no_line_limit);
	tcase_add_test(tc, test_size_limit);
	suite_add_tcase(s, tc);

	tc = tcase_create("smuggling");
	tcase_add_test(tc, test_smuggling_mid_message);
	tcase_add_test(tc, test_smuggling_after_crlf);
	tcase_add_test(tc, test_smuggling_at_start);
	tcase_add_test(tc, test_bare_flags_exact);
	tcase_add_test(tc, test_error_stops_output);
	tcase_add_test(tc, test_bare_lf_flood_is_linear);
	tcase_add_test(tc, test_nul_flagged);
	tcase_add_test(tc, test_bdat_scan);
	suite_add_tcase(s, tc);

	tc = tcase_create("splits");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_split_independence);
	tcase_add_test(tc, test_all_two_way_cuts);
	tcase_add_test(tc, test_random_against_reference);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(data_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
