/* Unit tests for common/: buffers, size and duration parsing, ids. */
#include "common/common.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_buf)
{
	struct buf b;
	buf_init(&b);
	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "%d,", i);
	ck_assert(b.len > 1000);
	ck_assert(strncmp(b.data, "0,1,2,", 6) == 0);
	size_t len = b.len;
	buf_consume(&b, 2);
	ck_assert_uint_eq(b.len, len - 2);
	ck_assert(strncmp(b.data, "1,2,", 4) == 0);
	ck_assert_uint_eq(b.data[b.len], '\0');
	buf_consume(&b, b.len);
	buf_shrink(&b);
	ck_assert_ptr_null(b.data);
	buf_free(&b);
}
END_TEST

START_TEST(test_sizes)
{
	uint64_t v;
	ck_assert_int_eq(str_parse_size("512", &v), 0);
	ck_assert_uint_eq(v, 512);
	ck_assert_int_eq(str_parse_size("64k", &v), 0);
	ck_assert_uint_eq(v, 65536);
	ck_assert_int_eq(str_parse_size("50M", &v), 0);
	ck_assert_uint_eq(v, 50ULL << 20);
	ck_assert_int_eq(str_parse_size("1GB", &v), 0);
	ck_assert_uint_eq(v, 1ULL << 30);
	ck_assert_int_lt(str_parse_size("", &v), 0);
	ck_assert_int_lt(str_parse_size("12x", &v), 0);
	ck_assert_int_lt(str_parse_size("-1", &v), 0);
	ck_assert_int_lt(str_parse_size("99999999999999999999G", &v), 0);
}
END_TEST

START_TEST(test_durations)
{
	uint64_t v;
	ck_assert_int_eq(str_parse_duration("30", &v), 0);
	ck_assert_uint_eq(v, 30);
	ck_assert_int_eq(str_parse_duration("5m", &v), 0);
	ck_assert_uint_eq(v, 300);
	ck_assert_int_eq(str_parse_duration("2h", &v), 0);
	ck_assert_uint_eq(v, 7200);
	ck_assert_int_eq(str_parse_duration("5d", &v), 0);
	ck_assert_uint_eq(v, 5 * 86400);
	ck_assert_int_lt(str_parse_duration("5 m", &v), 0);
	ck_assert_int_lt(str_parse_duration("m", &v), 0);
}
END_TEST

START_TEST(test_queue_ids)
{
	char a[ID_LEN + 1], b[ID_LEN + 1];
	id_queue(a);
	ck_assert_uint_eq(strlen(a), ID_LEN);
	for (int i = 0; i < 10000; i++) {
		id_queue(b);
		ck_assert_str_ne(a, b);
		ck_assert(strcmp(a, b) < 0 || memcmp(a, b, 10) == 0); /* time-ordered */
		for (int j = 0; j < ID_LEN; j++)
			ck_assert((b[j] >= '0' && b[j] <= '9') || (b[j] >= 'A' && b[j] <= 'V'));
		memcpy(a, b, sizeof(a));
	}
}
END_TEST

START_TEST(test_sanitize)
{
	char out[16];
	str_sanitize(out, sizeof(out), "a\r\nb\"c\\d", 8);
	ck_assert_str_eq(out, "a??b?c?d");
	str_sanitize(out, 4, "abcdef", 6);
	ck_assert_str_eq(out, "abc");
}
END_TEST

/* Log values: quoted always, nothing inside can end the field. */
START_TEST(test_log_quote)
{
	ck_assert_str_eq(log_q("alice"), "\"alice\"");
	ck_assert_str_eq(log_q(NULL), "-");
	ck_assert_str_eq(log_q(""), "\"\"");
	ck_assert_str_eq(log_q("x\" result=ok INJ=1 y"), "\"x\\\" result=ok INJ=1 y\"");
	ck_assert_str_eq(log_q("a\\b"), "\"a\\\\b\"");
	ck_assert_str_eq(log_qn("a\r\n\t\0\x7f\x01", 7), "\"a\\r\\n\\t\\x00\\x7f\\x01\"");
	ck_assert_str_eq(log_q("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
	/* Several in one call: the ring keeps them apart. */
	char line[256];
	snprintf(line, sizeof(line), "a=%s b=%s c=%s", log_q("1"), log_q("2 3"), log_q(NULL));
	ck_assert_str_eq(line, "a=\"1\" b=\"2 3\" c=-");
	/* Long values are cut inside their quotes. */
	char big[LOG_Q_MAX * 2];
	memset(big, '"', sizeof(big));
	const char *q = log_qn(big, sizeof(big));
	size_t n = strlen(q);
	ck_assert_uint_eq(n, 1 + 2 * LOG_Q_MAX + 3 + 1);
	ck_assert_str_eq(q + n - 4, "...\"");
	struct buf b;
	buf_init(&b);
	buf_puts(&b, "k=");
	log_quote(&b, "\"\n", 2);
	ck_assert_str_eq(b.data, "k=\"\\\"\\n\"");
	buf_free(&b);
}
END_TEST

START_TEST(test_codec)
{
	char out[64];
	codec_hex("\x00\x9f\xff", 3, out);
	ck_assert_str_eq(out, "009fff");
	ck_assert_int_eq(codec_hexval('F'), 15);
	ck_assert_int_eq(codec_hexval('g'), -1);
	static const struct {
		const char *raw, *b64;
	} v[] = { { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		  { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" } };
	for (size_t i = 0; i < ARRAY_LEN(v); i++) {   /* RFC 4648 10 */
		codec_b64_encode(v[i].raw, strlen(v[i].raw), out);
		ck_assert_str_eq(out, v[i].b64);
		char dec[16];
		long n = codec_b64_decode(v[i].b64, strlen(v[i].b64), dec, sizeof(dec), 0);
		ck_assert_int_eq(n, (long)strlen(v[i].raw));
		ck_assert(memcmp(dec, v[i].raw, (size_t)n) == 0);
	}
	char dec[16];
	/* strict: bad characters, padding in the middle, stray bits, overflow */
	ck_assert_int_lt(codec_b64_decode("Zm9v!", 5, dec, sizeof(dec), 0), 0);
	ck_assert_int_lt(codec_b64_decode("Zg==Zg==", 8, dec, sizeof(dec), 0), 0);
	ck_assert_int_lt(codec_b64_decode("Zh==", 4, dec, sizeof(dec), 0), 0);
	ck_assert_int_lt(codec_b64_decode("Z", 1, dec, sizeof(dec), 0), 0);
	ck_assert_int_lt(codec_b64_decode("Zm9vYmFy", 8, dec, 5, 0), 0);
	ck_assert_int_eq(codec_b64_decode("Zm9v", 4, dec, sizeof(dec), 0), 3);   /* unpadded */
	ck_assert_int_eq(codec_b64_decode("-_8", 3, dec, sizeof(dec), CODEC_B64_URL), 2);
	/* lenient (MIME): line breaks and junk skipped, '=' ends */
	ck_assert_int_eq(codec_b64_decode("Zm9v\r\nYmFy=junk", 15, dec, sizeof(dec),
	                                  CODEC_B64_LENIENT), 6);
	ck_assert(memcmp(dec, "foobar", 6) == 0);
	ck_assert_uint_eq(codec_utf8_len("\xc3\xa9"), 2);
	ck_assert_uint_eq(codec_utf8_len("\xc0\xaf"), 0);        /* overlong */
	ck_assert_uint_eq(codec_utf8_len("\xed\xa0\x80"), 0);   /* surrogate */
	ck_assert_uint_eq(codec_utf8_len("\xf4\x90\x80\x80"), 0); /* past U+10FFFF */
	ck_assert(codec_utf8_valid("caf\xc3\xa9"));
	ck_assert(!codec_utf8_valid("caf\xc3"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("common");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_buf);
	tcase_add_test(tc, test_sizes);
	tcase_add_test(tc, test_durations);
	tcase_add_test(tc, test_queue_ids);
	tcase_add_test(tc, test_sanitize);
	tcase_add_test(tc, test_log_quote);
	tcase_add_test(tc, test_codec);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
