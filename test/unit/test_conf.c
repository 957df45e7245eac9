/* Unit tests for conf/: a good file loads with its values; every kind of
 * error names file:line and the reason. */
#include "conf/conf.h"
#include "common/common.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *write_conf(const char *name, const char *text)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	return path;
}

#define GOOD_BASE \
	"hostname = \"mx.test\"\n" \
	"listen smtps { address = \"127.0.0.1:10465\" }\n" \
	"tls { cert = \"c.pem\" key = \"sub/k.pem\" }\n"

START_TEST(test_good)
{
	char err[512];
	const char *p = write_conf("good.conf", GOOD_BASE
		"listen mx { address = \"[::1]:10025\" require_tls = false }\n"
		"limits { max_message_size = \"10M\" idle_timeout = \"2m\" max_recipients = 7 }\n"
		"policy { local_domains = { \"example.org\", \"example.net\" } }\n"
		"relay { downstream = \"lmtp://127.0.0.1:24\" retry_min = \"10s\" }\n");
	struct conf *c = conf_load(p, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_str_eq(c->hostname, "mx.test");
	ck_assert_uint_eq(c->nlistens, 2);
	ck_assert_int_eq(c->listens[0].mode, CONF_MODE_SMTPS);
	ck_assert_str_eq(c->listens[0].host, "127.0.0.1");
	ck_assert_uint_eq(c->listens[0].port, 10465);
	ck_assert(c->listens[0].require_auth);
	ck_assert(c->listens[0].require_tls);
	ck_assert_int_eq(c->listens[1].mode, CONF_MODE_MX);
	ck_assert_str_eq(c->listens[1].host, "::1");
	ck_assert(!c->listens[1].require_auth);
	ck_assert(!c->listens[1].require_tls);
	ck_assert_uint_eq(c->max_message_size, 10u << 20);
	ck_assert_uint_eq(c->idle_timeout, 120);
	ck_assert_uint_eq(c->data_timeout, 600); /* RFC 5321 default */
	ck_assert_uint_eq(c->max_recipients, 7);
	ck_assert_uint_eq(c->nlocal_domains, 2);
	ck_assert_str_eq(c->local_domains[1], "example.net");
	ck_assert_str_eq(c->relay_downstream, "lmtp://127.0.0.1:24");
	ck_assert_uint_eq(c->relay_retry_min, 10);
	/* Relative paths are relative to the file. */
	char want[128];
	snprintf(want, sizeof(want), "%s/c.pem", dir);
	ck_assert_str_eq(c->tls_cert, want);
	snprintf(want, sizeof(want), "%s/sub/k.pem", dir);
	ck_assert_str_eq(c->tls_key, want);
	ck_assert_str_eq(c->sasl_mechanisms, "PLAIN LOGIN SCRAM-SHA-256");
	ck_assert(c->sasl_credential_cache);   /* on unless turned off */
	ck_assert(c->sandbox_seccomp);         /* likewise */
	conf_free(c);
	p = write_conf("off.conf", GOOD_BASE "sandbox { seccomp = false }\n");
	c = conf_load(p, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert(!c->sandbox_seccomp);
	conf_free(c);
}
END_TEST

struct bad_case {
	const char *text;
	const char *want;  /* substring of the error */
};

static const struct bad_case bad_cases[] = {
	{ GOOD_BASE "limits {\n max_message_size = \"lots\"\n}\n", "bad.conf:5: max_message_size: 'lots' is not a size" },
	{ GOOD_BASE "limits { idle_timeout = \"5 minutes\" }\n", "bad.conf:4: idle_timeout" },
	{ GOOD_BASE "limits { max_recipients = 0 }\n", "max_recipients: must be a positive number" },
	{ GOOD_BASE "listen smpts { address = \"127.0.0.1:1\" }\n", "bad.conf:4: listen smpts: the title is not a mode" },
	{ GOOD_BASE "\n\nlisten mx { address = \"127.0.0.1\" }\n", "bad.conf:6: address: '127.0.0.1' is not host:port" },
	{ GOOD_BASE "listen mx { address = \"127.0.0.1:99999\" }\n", "is not host:port" },
	{ GOOD_BASE "listen submission { address = \"127.0.0.1:1\" client_cert = \"maybe\" }\n", "client_cert: 'maybe' is not one of none, optional, require" },
	{ GOOD_BASE "relay { downstream = \"http://x\" }\n", "downstream: 'http://x' is not smtp://host:port" },
	{ GOOD_BASE "bogus = 1\n", "bad.conf:4: no such option 'bogus'" },
	{ GOOD_BASE "limits { max_recipients = \n", "bad.conf:" },
	{ "hostname = \"x\"\ntls { cert = \"c.pem\" key = \"c.pem\" }\n", "no listen section" },
	{ "listen smtps { address = \"127.0.0.1:1\" }\n", "tls { cert key } are required" },
	{ GOOD_BASE "listen mx { address = \"127.0.0.1:25\" }\n", "an mx listener needs policy { local_domains }" },
	{ GOOD_BASE "listen submission { address = \"127.0.0.1:2\" client_cert = \"require\" }\n", "client_cert needs tls { ca }" },
	{ GOOD_BASE "relay { retry_min = \"2h\" retry_max = \"1h\" }\n", "retry_min must be > 0 and <= retry_max" },
	{ GOOD_BASE "log { level = \"loud\" }\n", "level: 'loud' is not one of" },
	{ GOOD_BASE "sasl { credential_cache = maybe }\n", "bad.conf:4:" },
	{ GOOD_BASE "sandbox { seccomp = sometimes }\n", "bad.conf:4:" },
	{ GOOD_BASE "sandbox {\n filter = true\n}\n", "bad.conf:5: no such option 'filter'" },
	{ "listen smtps { address = \"127.0.0.1:1\" }\ntls {\n cert = \"c.pem\"\n key = \"missing.pem\"\n}\n", "bad.conf:4: key: cannot read" },
	{ GOOD_BASE "limits {\n max_recipients = 5\n idle_timeout = \"soon\"\n}\n", "bad.conf:6: idle_timeout" },
};

START_TEST(test_bad)
{
	char err[512];
	const struct bad_case *bc = &bad_cases[_i];
	const char *p = write_conf("bad.conf", bc->text);
	struct conf *c = conf_load(p, err, sizeof(err));
	ck_assert_msg(c == NULL, "case %d loaded", _i);
	ck_assert_msg(strstr(err, bc->want) != NULL, "case %d: got '%s', want '%s'", _i, err, bc->want);
	ck_assert_msg(strstr(err, "bad.conf") != NULL, "case %d: no file name in '%s'", _i, err);
}
END_TEST

START_TEST(test_missing_file)
{
	char err[512];
	struct conf *c = conf_load("/nonexistent/postern.conf", err, sizeof(err));
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(err, "/nonexistent/postern.conf") != NULL, "%s", err);
}
END_TEST

START_TEST(test_address)
{
	char *host;
	unsigned port;
	ck_assert_int_eq(conf_parse_address("[2001:db8::1]:587", &host, &port), 0);
	ck_assert_str_eq(host, "2001:db8::1");
	ck_assert_uint_eq(port, 587);
	free(host);
	ck_assert_int_lt(conf_parse_address(":25", &host, &port), 0);
	ck_assert_int_lt(conf_parse_address("[::1]25", &host, &port), 0);
	ck_assert_int_lt(conf_parse_address("host:0", &host, &port), 0);
}
END_TEST

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/postern-conf-XXXXXX");
	if (!mkdtemp(dir))
		return EXIT_FAILURE;
	/* The files only have to be readable: their content is checked later. */
	char path[128];
	snprintf(path, sizeof(path), "%s/sub", dir);
	mkdir(path, 0700);
	const char *files[] = { "c.pem", "sub/k.pem" };
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		FILE *f = fopen(path, "w");
		if (!f)
			return EXIT_FAILURE;
		fclose(f);
	}
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_good);
	tcase_add_loop_test(tc, test_bad, 0, (int)ARRAY_LEN(bad_cases));
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_address);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		failed++;
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
