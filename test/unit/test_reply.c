/* Unit tests for the reply writer: codes, enhanced codes, multi-line
 * replies, and no way to inject a line break. */
#include "smtp/reply.h"

#include <check.h>
#include <stdlib.h>

START_TEST(test_single)
{
	struct buf b;
	buf_init(&b);
	reply_append(&b, 250, "2.1.0", "Ok");
	ck_assert_str_eq(b.data, "250 2.1.0 Ok\r\n");
	buf_free(&b);
	reply_append(&b, 220, NULL, "%s ESMTP Postern", "mx.example.org");
	ck_assert_str_eq(b.data, "220 mx.example.org ESMTP Postern\r\n");
	buf_free(&b);
}
END_TEST

START_TEST(test_multiline)
{
	struct buf b;
	buf_init(&b);
	reply_append(&b, 250, NULL, "mx.example.org\nPIPELINING\nSIZE 1000");
	ck_assert_str_eq(b.data, "250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 1000\r\n");
	buf_free(&b);
}
END_TEST

START_TEST(test_no_injection)
{
	struct buf b;
	buf_init(&b);
	reply_append(&b, 550, "5.1.1", "<%s>: unknown", "a\rb\x01");
	ck_assert_str_eq(b.data, "550 5.1.1 <a?b?>: unknown\r\n");
	buf_free(&b);
}
END_TEST

START_TEST(test_empty_challenge)
{
	struct buf b;
	buf_init(&b);
	reply_append(&b, 334, NULL, "%s", "");
	ck_assert_str_eq(b.data, "334 \r\n");
	buf_free(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("reply");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_single);
	tcase_add_test(tc, test_multiline);
	tcase_add_test(tc, test_no_injection);
	tcase_add_test(tc, test_empty_challenge);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
