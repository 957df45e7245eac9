/*
 * test_policy.c - unit tests for policy/: the sender map, trusted
 * networks, the header From parser, MAIL/RCPT verdicts, the rate limiter,
 * connection counts, the auth guard, and the shared tables under threads.
 *
 * Table-driven: each table row is one case; a failing row is reported
 * with its index. Time is simulated (the functions take "now"), so the
 * whole suite runs in a few seconds. Temporary map files are created with
 * mkstemp() under $TMPDIR (default /tmp) and removed afterwards.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "policy/policy.h"

/* ---- helpers ------------------------------------------------------------------- */

/* Writes text to a new temporary file; returns its path (free it). */
static char *write_temp(const char *text)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char *path = str_printf("%s/test_policy.XXXXXX", dir);
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(file_write_all(fd, text, strlen(text)), 0);
	close(fd);
	return path;
}

static struct policy_sendermap *load_text(const char *text, char *err, size_t errlen,
                                          char **pathp)
{
	char *path = write_temp(text);
	struct policy_sendermap *m = policy_sendermap_load(path, err, errlen);
	unlink(path);
	if (pathp)
		*pathp = path;
	else
		free(path);
	return m;
}

static const char map_text[] =
	"# accounts and what they may send as\n"
	"\n"
	"alice@example.org  =, alice.smith@example.org\n"
	"alice@example.org  sales@example.org   # send-as grant to a shared address\n"
	"bob                @bob.example\n"
	"carol              *.sales@example.org c?rol@example.net\n"
	"bounces            <>\n"
	"dave@example.org   @*.dave.example\n"
	"Mixed@Example.ORG  Other@EXAMPLE.org\n"
	"*                  =\n"
	"*                  noreply@example.org\n"
	"!limit alice@example.org messages_per_hour=2 recipients_per_hour=3\n"
	"!limit alice@example.org recipients_per_message=2\n"
	"!limit erin@example.org messages_per_hour=1\n";

/* ---- sender map ------------------------------------------------------------------ */

static const struct {
	const char *account, *sender;
	bool owned;
} owned_cases[] = {
	{ "alice@example.org", "alice@example.org", true },           /* '=' */
	{ "ALICE@Example.ORG", "Alice.Smith@EXAMPLE.org", true },     /* case */
	{ "alice@example.org", "sales@example.org", true },           /* lines add up */
	{ "alice@example.org", "bob@example.org", false },
	{ "alice@example.org", "", false },
	{ "alice@example.org", "noreply@example.org", true },         /* '*' rule */
	{ "bob", "anything@bob.example", true },                      /* domain */
	{ "bob", "x@sub.bob.example", false },                        /* not subdomains */
	{ "bob", "bob", false },                                      /* '=' needs an address */
	{ "bob", "bob@example.org", false },
	{ "carol", "east.sales@example.org", true },                  /* pattern */
	{ "carol", "sales@example.org", false },
	{ "carol", "carol@example.net", true },                       /* '?' */
	{ "carol", "caarol@example.net", false },
	{ "bounces", "", true },                                      /* <> */
	{ "bounces", "<>", true },
	{ "bounces", "bounces@example.org", false },
	{ "dave@example.org", "x@a.dave.example", true },             /* @*.domain */
	{ "dave@example.org", "x@dave.example", false },
	{ "dave@example.org", "dave@example.org", true },             /* "* =" */
	{ "mixed@example.org", "other@example.org", true },
	{ "frank@example.org", "frank@example.org", true },           /* no entry: default */
	{ "frank@example.org", "FRANK@example.ORG", true },
	{ "frank@example.org", "frank2@example.org", false },
	{ "frank@example.org", "", false },
	{ "frank", "frank@example.org", false },
	{ "erin@example.org", "erin@example.org", true },             /* !limit keeps default */
};

START_TEST(test_sender_owned)
{
	char err[256];
	struct policy_sendermap *m = load_text(map_text, err, sizeof(err), NULL);
	ck_assert_msg(m != NULL, "load: %s", err);
	for (size_t i = 0; i < ARRAY_LEN(owned_cases); i++)
		ck_assert_msg(policy_sender_owned(m, owned_cases[i].account, owned_cases[i].sender) ==
		                      owned_cases[i].owned,
		              "case %zu: %s -> <%s>", i, owned_cases[i].account, owned_cases[i].sender);
	policy_sendermap_free(m);
}
END_TEST

static const struct {
	const char *account, *sender;
	bool owned;
} default_cases[] = {
	{ "alice@example.org", "alice@example.org", true },
	{ "alice@example.org", "ALICE@example.org", true },
	{ "alice@example.org", "alice@example.net", false },
	{ "alice@example.org", "", false },
	{ "alice@example.org", "<>", false },
	{ "alice", "alice", false },
	{ "alice", "alice@example.org", false },
	{ "@example.org", "@example.org", false },
};

START_TEST(test_sender_default)
{
	for (size_t i = 0; i < ARRAY_LEN(default_cases); i++)
		ck_assert_msg(policy_sender_owned(NULL, default_cases[i].account,
		                                  default_cases[i].sender) == default_cases[i].owned,
		              "case %zu", i);
}
END_TEST

START_TEST(test_sender_limits)
{
	char err[256];
	struct policy_account_limits al;
	struct policy_sendermap *m = load_text(map_text, err, sizeof(err), NULL);
	ck_assert_ptr_nonnull(m);
	policy_sendermap_limits(m, "Alice@example.org", &al);
	ck_assert_uint_eq(al.mask, 7);
	ck_assert_uint_eq(al.messages_per_hour, 2);
	ck_assert_uint_eq(al.recipients_per_hour, 3);
	ck_assert_uint_eq(al.recipients_per_message, 2);
	policy_sendermap_limits(m, "erin@example.org", &al);
	ck_assert_uint_eq(al.mask, POLICY_LIMIT_MESSAGES_PER_HOUR);
	policy_sendermap_limits(m, "bob", &al);
	ck_assert_uint_eq(al.mask, 0);
	policy_sendermap_limits(NULL, "bob", &al);
	ck_assert_uint_eq(al.mask, 0);
	policy_sendermap_free(m);
}
END_TEST

static const struct {
	const char *text, *error;  /* error: what follows "path" */
} bad_maps[] = {
	{ "alice@example.org alice@example.org\nbob\n", ":2: missing target (\"bob\")" },
	{ "# c\nalice bad\n", ":2: not an address, @domain, pattern, <> or = (\"bad\")" },
	{ "alice a@\n", ":1: empty domain (\"a@\")" },
	{ "alice @\n", ":1: empty domain" },
	{ "alice @a@b\n", ":1: '@' in a domain" },
	{ "alice x@y, @z\n", ":1: empty local part" /* never: @z is a domain */ },
	{ "alice <a@b>\n", ":1: unexpected character (\"<a@b>\")" },
	{ "alice a;b@c\n", ":1: unexpected character" },
	{ "al*ce a@b\n", ":1: '*' must be the whole account" },
	{ "!limit alice messages_per_hour=x\n", ":1: bad number" },
	{ "!limit alice messages_per_hour=-1\n", ":1: bad number" },
	{ "!limit alice frobs=1\n", ":1: unknown limit (\"frobs=1\")" },
	{ "!limit alice messages_per_hour\n", ":1: expected key=value" },
	{ "!limit alice\n", ":1: missing limit" },
	{ "!limit\n", ":1: missing account" },
	{ "!limit * messages_per_hour=1\n", ":1: no !limit for '*'" },
	{ "\n\n\nalice\tfoo@bar, \n  x \n", ":5: missing target (\"x\")" },
};

START_TEST(test_sender_bad_files)
{
	for (size_t i = 0; i < ARRAY_LEN(bad_maps); i++) {
		char err[256] = "", *path;
		struct policy_sendermap *m = load_text(bad_maps[i].text, err, sizeof(err), &path);
		if (i == 5) {  /* the control row: "@z" is valid */
			ck_assert_msg(m != NULL, "case 5: %s", err);
			policy_sendermap_free(m);
			free(path);
			continue;
		}
		ck_assert_msg(m == NULL, "case %zu loaded", i);
		char *want = str_printf("%s%s", path, bad_maps[i].error);
		ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "case %zu: got \"%s\" want \"%s\"",
		              i, err, want);
		free(want);
		free(path);
	}
	char err[256];
	ck_assert_ptr_null(policy_sendermap_load("/nonexistent/sendermap", err, sizeof(err)));
	ck_assert_str_eq(err, "/nonexistent/sendermap: No such file or directory");
}
END_TEST

START_TEST(test_sender_big_map)
{
	struct buf b;
	buf_init(&b);
	for (unsigned i = 0; i < 300000; i++)
		buf_printf(&b, "user%u@example.org =, alias%u@example.net\n", i, i);
	buf_append(&b, "", 1);
	char err[256];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct policy_sendermap *m = load_text(b.data, err, sizeof(err), NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	ck_assert_msg(m != NULL, "%s", err);
	/* About half a second in an -O2 build; the bound is loose for sanitizer
	 * builds and catches what matters, a load gone quadratic. */
	ck_assert_msg(secs < 5.0, "load took %.2fs", secs);
	ck_assert(policy_sender_owned(m, "user123456@example.org", "alias123456@example.net"));
	ck_assert(!policy_sender_owned(m, "user123456@example.org", "alias123457@example.net"));
	policy_sendermap_free(m);
	buf_free(&b);
}
END_TEST

/* ---- trusted networks -------------------------------------------------------------- */

static const char *const nets[] = { "10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1",
	                            "172.16.0.0/12" };

static const struct {
	const char *ip;
	bool match;
} net_cases[] = {
	{ "10.1.2.3", true },        { "11.0.0.1", false },       { "9.255.255.255", false },
	{ "192.168.1.7", true },     { "192.168.1.8", false },    { "172.31.255.255", true },
	{ "172.32.0.0", false },     { "2001:db8:1::5", true },   { "2001:DB8::", true },
	{ "2001:db9::", false },     { "::1", true },             { "::2", false },
	{ "::ffff:10.0.0.1", true }, { "::ffff:11.0.0.1", false }, { "garbage", false },
	{ "", false },               { "10.1.2", false },
};

START_TEST(test_netlist)
{
	char err[128];
	struct policy_netlist *nl = policy_netlist_parse(nets, ARRAY_LEN(nets), err, sizeof(err));
	ck_assert_msg(nl != NULL, "%s", err);
	for (size_t i = 0; i < ARRAY_LEN(net_cases); i++)
		ck_assert_msg(policy_netlist_match(nl, net_cases[i].ip) == net_cases[i].match,
		              "case %zu: %s", i, net_cases[i].ip);
	ck_assert(!policy_netlist_match(NULL, "10.1.2.3"));
	policy_netlist_free(nl);

	const char *all[] = { "0.0.0.0/0" };
	nl = policy_netlist_parse(all, 1, err, sizeof(err));
	ck_assert(policy_netlist_match(nl, "203.0.113.9"));
	ck_assert(!policy_netlist_match(nl, "2001:db8::1"));
	policy_netlist_free(nl);
}
END_TEST

static const struct {
	const char *cidr, *error;
} bad_nets[] = {
	{ "10.0.0.1/8", "10.0.0.1/8: host bits set" },
	{ "10.0.0.0/33", "10.0.0.0/33: bad prefix length" },
	{ "10.0.0.0/", "10.0.0.0/: bad prefix length" },
	{ "10.0.0.0/+8", "10.0.0.0/+8: bad prefix length" },
	{ "2001:db8::/129", "2001:db8::/129: bad prefix length" },
	{ "1.2.3", "1.2.3: not an address" },
	{ "/8", "/8: not an address" },
	{ "::ffff:1.2.3.4", "::ffff:1.2.3.4: write IPv4 networks in IPv4 notation" },
};

START_TEST(test_netlist_bad)
{
	for (size_t i = 0; i < ARRAY_LEN(bad_nets); i++) {
		char err[128] = "";
		const char *list[] = { "10.0.0.0/8", bad_nets[i].cidr };
		ck_assert_ptr_null(policy_netlist_parse(list, 2, err, sizeof(err)));
		ck_assert_msg(strcmp(err, bad_nets[i].error) == 0, "case %zu: %s", i, err);
	}
}
END_TEST

/* ---- MAIL and RCPT verdicts --------------------------------------------------------- */

enum listener { SUBMISSION, MX };

static const char *const local_domains[] = { "example.org" };

static struct policy_conf make_conf(enum listener l, const struct policy_sendermap *m,
                                    const struct policy_netlist *trusted)
{
	return (struct policy_conf){
		.require_auth = l == SUBMISSION,
		.require_tls = true,
		.local_only = l == MX,
		.max_recipients = 100,
		.local_domains = local_domains,
		.nlocal_domains = 1,
		.check_sender = l == SUBMISSION,
		.sendermap = m,
		.trusted = trusted,
	};
}

static const struct {
	enum listener l;
	bool tls;
	const char *account, *ip, *from;
	int code;
	const char *rule;
} mail_cases[] = {
	{ SUBMISSION, false, NULL, "203.0.113.1", "a@b.org", 530, "tls_required" },
	{ SUBMISSION, true, NULL, "203.0.113.1", "a@b.org", 530, "auth_required" },
	{ SUBMISSION, true, NULL, "10.0.0.5", "a@b.org", 0, "trusted_network" },
	{ SUBMISSION, true, NULL, "::ffff:10.0.0.5", "", 0, "trusted_network" },
	{ SUBMISSION, true, "alice@example.org", "203.0.113.1", "alice@example.org", 0, NULL },
	{ SUBMISSION, true, "alice@example.org", "203.0.113.1", "sales@example.org", 0, NULL },
	{ SUBMISSION, true, "alice@example.org", "203.0.113.1", "ceo@example.org", 553,
	  "sender_mismatch" },
	{ SUBMISSION, true, "alice@example.org", "10.0.0.5", "ceo@example.org", 553,
	  "sender_mismatch" },  /* trust does not widen what an account owns */
	{ SUBMISSION, true, "alice@example.org", "203.0.113.1", "", 553, "null_sender" },
	{ SUBMISSION, true, "bounces", "203.0.113.1", "", 0, NULL },
	{ MX, true, NULL, "203.0.113.1", "anyone@elsewhere.net", 0, NULL },
	{ MX, true, NULL, "203.0.113.1", "", 0, NULL },
	{ MX, false, NULL, "203.0.113.1", "a@b.org", 530, "tls_required" },
};

START_TEST(test_check_mail)
{
	char err[256];
	const char *tn[] = { "10.0.0.0/8" };
	struct policy_sendermap *m = load_text(map_text, err, sizeof(err), NULL);
	struct policy_netlist *nl = policy_netlist_parse(tn, 1, err, sizeof(err));
	ck_assert(m && nl);
	for (size_t i = 0; i < ARRAY_LEN(mail_cases); i++) {
		struct policy_conf pc = make_conf(mail_cases[i].l, m, nl);
		struct policy_session ps = { .tls = mail_cases[i].tls,
			                     .authenticated = mail_cases[i].account != NULL,
			                     .account = mail_cases[i].account,
			                     .client_ip = mail_cases[i].ip };
		struct policy_verdict v;
		policy_check_mail(&pc, &ps, mail_cases[i].from, &v);
		ck_assert_msg(v.code == mail_cases[i].code, "case %zu: code %d", i, v.code);
		ck_assert_msg((v.rule == NULL) == (mail_cases[i].rule == NULL) &&
		                      (!v.rule || strcmp(v.rule, mail_cases[i].rule) == 0),
		              "case %zu: rule %s", i, v.rule ? v.rule : "(none)");
	}
	/* The reply names the account. */
	struct policy_conf pc = make_conf(SUBMISSION, m, nl);
	struct policy_session ps = { .tls = true, .authenticated = true,
		                     .account = "alice@example.org" };
	struct policy_verdict v;
	policy_check_mail(&pc, &ps, "ceo@example.org", &v);
	ck_assert_str_eq(v.text, "Sender address not owned by alice@example.org");
	ck_assert_str_eq(v.enh, "5.7.1");
	/* check_sender off: anything goes once authenticated. */
	pc.check_sender = false;
	policy_check_mail(&pc, &ps, "ceo@example.org", &v);
	ck_assert_int_eq(v.code, 0);
	policy_sendermap_free(m);
	policy_netlist_free(nl);
}
END_TEST

static const struct {
	enum listener l;
	const char *account, *ip, *rcpt;
	size_t nrcpts;
	int code;
	const char *rule;
} rcpt_cases[] = {
	{ MX, NULL, "203.0.113.1", "u@example.org", 0, 0, NULL },
	{ MX, NULL, "203.0.113.1", "u@EXAMPLE.ORG", 0, 0, NULL },
	{ MX, NULL, "203.0.113.1", "u@elsewhere.net", 0, 550, "relay_denied" },
	{ MX, NULL, "10.0.0.5", "u@elsewhere.net", 0, 550, "relay_denied" },  /* mx: never */
	{ MX, "alice@example.org", "10.0.0.5", "u@elsewhere.net", 0, 550, "relay_denied" },
	{ MX, NULL, "203.0.113.1", "postmaster", 0, 0, NULL },
	{ MX, NULL, "203.0.113.1", "u@example.org", 100, 452, "max_recipients" },
	{ SUBMISSION, NULL, "203.0.113.1", "u@elsewhere.net", 0, 530, "auth_required" },
	{ SUBMISSION, NULL, "10.0.0.5", "u@elsewhere.net", 0, 0, "trusted_network" },
	{ SUBMISSION, "bob", "203.0.113.1", "u@elsewhere.net", 0, 0, NULL },
	{ SUBMISSION, "bob", "203.0.113.1", "u@elsewhere.net", 99, 0, NULL },
	{ SUBMISSION, "bob", "203.0.113.1", "u@elsewhere.net", 100, 452, "max_recipients" },
	/* alice's !limit recipients_per_message=2 replaces the listener's 100 */
	{ SUBMISSION, "alice@example.org", "203.0.113.1", "u@elsewhere.net", 1, 0, NULL },
	{ SUBMISSION, "alice@example.org", "203.0.113.1", "u@elsewhere.net", 2, 452,
	  "max_recipients" },
};

START_TEST(test_check_rcpt)
{
	char err[256];
	const char *tn[] = { "10.0.0.0/8" };
	struct policy_sendermap *m = load_text(map_text, err, sizeof(err), NULL);
	struct policy_netlist *nl = policy_netlist_parse(tn, 1, err, sizeof(err));
	for (size_t i = 0; i < ARRAY_LEN(rcpt_cases); i++) {
		struct policy_conf pc = make_conf(rcpt_cases[i].l, m, nl);
		struct policy_session ps = { .tls = true,
			                     .authenticated = rcpt_cases[i].account != NULL,
			                     .account = rcpt_cases[i].account,
			                     .client_ip = rcpt_cases[i].ip };
		struct policy_verdict v;
		policy_check_rcpt(&pc, &ps, rcpt_cases[i].rcpt, rcpt_cases[i].nrcpts, &v);
		ck_assert_msg(v.code == rcpt_cases[i].code, "case %zu: code %d", i, v.code);
		ck_assert_msg((v.rule == NULL) == (rcpt_cases[i].rule == NULL) &&
		                      (!v.rule || strcmp(v.rule, rcpt_cases[i].rule) == 0),
		              "case %zu: rule %s", i, v.rule ? v.rule : "(none)");
	}
	/* max_recipients 0: unlimited */
	struct policy_conf pc = make_conf(MX, NULL, NULL);
	pc.max_recipients = 0;
	struct policy_session ps = { .tls = true };
	struct policy_verdict v;
	policy_check_rcpt(&pc, &ps, "u@example.org", 100000, &v);
	ck_assert_int_eq(v.code, 0);
	policy_sendermap_free(m);
	policy_netlist_free(nl);
}
END_TEST

/* Routing in the local part (RFC 5321 3.6.1 and appendix C: '%', '!' and
 * '@', quoted or not) on mx: a downstream that honours it would relay
 * for anyone. The path keeps a quoted local part's quotes. */
static const struct {
	enum listener l;
	bool allow;              /* policy { allow_untrusted_routing } */
	const char *ip, *account, *rcpt;
	int code;
	const char *rule;
} routing_cases[] = {
	{ MX, false, "203.0.113.1", NULL, "victim%evil.example@example.org", 550, "untrusted_routing" },
	{ MX, false, "203.0.113.1", NULL, "evil.example!victim@example.org", 550, "untrusted_routing" },
	{ MX, false, "203.0.113.1", NULL, "\"victim@evil.example\"@example.org", 550,
	  "untrusted_routing" },
	{ MX, false, "203.0.113.1", NULL, "\"victim%evil.example\"@EXAMPLE.ORG", 550,
	  "untrusted_routing" },
	{ MX, false, "203.0.113.1", NULL, "\"victim\\@evil.example\"@example.org", 550,
	  "untrusted_routing" },                                     /* a quoted-pair '@' */
	{ MX, false, "203.0.113.1", NULL, "postmaster%evil.example@example.org", 550,
	  "untrusted_routing" },
	{ MX, false, "10.0.0.5", NULL, "victim%evil.example@example.org", 550,
	  "untrusted_routing" },                                     /* mx trusts nobody */
	{ MX, false, "203.0.113.1", NULL, "victim%evil.example@elsewhere.net", 550,
	  "relay_denied" },                                          /* not ours at all */
	{ MX, false, "203.0.113.1", NULL, "first.last+tag@example.org", 0, NULL },
	{ MX, false, "203.0.113.1", NULL, "\"first last\"@example.org", 0, NULL },
	{ MX, false, "203.0.113.1", NULL, "\"a\\\"b\"@example.org", 0, NULL },
	{ MX, false, "203.0.113.1", NULL, "postmaster", 0, NULL },
	{ MX, true, "203.0.113.1", NULL, "victim%evil.example@example.org", 0, NULL },
	{ MX, true, "203.0.113.1", NULL, "\"victim@evil.example\"@example.org", 0, NULL },
	{ MX, true, "203.0.113.1", NULL, "victim%evil.example@elsewhere.net", 550, "relay_denied" },
	/* Submission relays for its accounts anyway: nothing to route around. */
	{ SUBMISSION, false, "203.0.113.1", "bob", "victim%evil.example@elsewhere.net", 0, NULL },
};

START_TEST(test_check_rcpt_routing)
{
	char err[256];
	const char *tn[] = { "10.0.0.0/8" };
	struct policy_netlist *nl = policy_netlist_parse(tn, 1, err, sizeof(err));
	for (size_t i = 0; i < ARRAY_LEN(routing_cases); i++) {
		struct policy_conf pc = make_conf(routing_cases[i].l, NULL, nl);
		pc.allow_untrusted_routing = routing_cases[i].allow;
		struct policy_session ps = { .tls = true,
			                     .authenticated = routing_cases[i].account != NULL,
			                     .account = routing_cases[i].account,
			                     .client_ip = routing_cases[i].ip };
		struct policy_verdict v;
		policy_check_rcpt(&pc, &ps, routing_cases[i].rcpt, 0, &v);
		ck_assert_msg(v.code == routing_cases[i].code, "case %zu: code %d", i, v.code);
		ck_assert_msg((v.rule == NULL) == (routing_cases[i].rule == NULL) &&
		                      (!v.rule || strcmp(v.rule, routing_cases[i].rule) == 0),
		              "case %zu: rule %s", i, v.rule ? v.rule : "(none)");
		if (v.code)
			ck_assert_str_eq(v.enh, "5.7.1");
	}
	policy_netlist_free(nl);
}
END_TEST

START_TEST(test_tables)
{
	char err[256], *path = write_temp(map_text);
	const char *tn[] = { "10.0.0.0/8", "2001:db8::/32" };
	struct policy_tables *t = policy_tables_load(path, tn, 2, err, sizeof(err));
	ck_assert_msg(t != NULL, "%s", err);
	ck_assert(t->sendermap && t->trusted);
	policy_tables_free(t);
	t = policy_tables_load(NULL, NULL, 0, err, sizeof(err));
	ck_assert(t && !t->sendermap && !t->trusted);
	policy_tables_free(t);
	const char *bad[] = { "10.0.0.1/8" };
	ck_assert_ptr_null(policy_tables_load(path, bad, 1, err, sizeof(err)));
	ck_assert_str_eq(err, "trusted networks: 10.0.0.1/8: host bits set");
	unlink(path);
	ck_assert_ptr_null(policy_tables_load(path, tn, 2, err, sizeof(err)));
	free(path);
}
END_TEST

/* ---- header From -------------------------------------------------------------------- */

static void collect(const char *addr, size_t alen, void *arg)
{
	struct buf *b = arg;
	if (b->len)
		buf_puts(b, ",");
	buf_append(b, addr, alen);
	buf_append(b, "", 1);
	b->len--;
}

static const struct {
	const char *header;
	int n;
	const char *addrs;
} from_cases[] = {
	{ "From: alice@example.org\r\n\r\n", 1, "alice@example.org" },
	{ "Subject: hi\r\nFrom: Alice <alice@example.org>\r\nTo: b@c.org\r\n", 1,
	  "alice@example.org" },
	{ "From: \"Smith, Alice\"\r\n <alice@example.org>\r\nTo: b@c.org\r\n", 1,
	  "alice@example.org" },                                         /* folded, quoted comma */
	{ "From: team: a@x.org, B <b@x.org>;\r\n", 2, "a@x.org,b@x.org" },  /* group */
	{ "From: a@x.org,\n\tb@y.org\n", 2, "a@x.org,b@y.org" },           /* LF, folded list */
	{ "From: =?UTF-8?B?w4lsaXNl?= <elise@example.org>\r\n", 1, "elise@example.org" },
	{ "From: =?utf-8?q?ceo=40bank.com?= <alice@example.org>\r\n", 1, "alice@example.org" },
	{ "From: (ceo@bank.com) alice@example.org (Alice)\r\n", 1, "alice@example.org" },
	{ "From: \"ceo@bank.com\" <alice@example.org>\r\n", 1, "alice@example.org" },
	{ "FROM : a@b.org\r\n", 1, "a@b.org" },                              /* obs: blank before ':' */
	{ "From: <@relay.net:a@b.org>\r\n", 1, "a@b.org" },                  /* obs route */
	{ "From: <>\r\n", 1, "" },
	{ "From: undisclosed:;\r\n", 0, "" },
	{ "From: a@x.org\r\nX: y\r\nfrom: b@y.org\r\n", 2, "a@x.org,b@y.org" },  /* two fields */
	{ "To: x@y.org\r\n\r\nFrom: body@x.org\r\n", -1, "" },              /* after the header */
	{ "From-Address: x@y.org\r\nFromage: z@y.org\r\n", -1, "" },
	{ "", -1, "" },
	{ "From: Alice Smith\r\n", 1, "AliceSmith" },                       /* garbage: unowned */
	{ "From: a@x.org", 1, "a@x.org" },                                  /* no line end */
};

START_TEST(test_header_from_parse)
{
	for (size_t i = 0; i < ARRAY_LEN(from_cases); i++) {
		struct buf b;
		buf_init(&b);
		buf_append(&b, "", 1);
		b.len = 0;
		const char *h = from_cases[i].header;
		int n = policy_header_from_each(h, strlen(h), collect, &b);
		ck_assert_msg(n == from_cases[i].n, "case %zu: %d mailboxes", i, n);
		ck_assert_msg(strcmp(b.data, from_cases[i].addrs) == 0, "case %zu: \"%s\"", i, b.data);
		buf_free(&b);
	}
}
END_TEST

static const struct {
	bool check, authenticated;
	const char *header;
	int code;
	const char *rule;
} hfrom_cases[] = {
	{ true, true, "From: Alice <alice@example.org>\r\n\r\n", 0, NULL },
	{ true, true, "From: Alice <alice@example.org>, sales@example.org\r\n", 0, NULL },
	{ true, true, "From: Alice <alice@example.org>, Boss <ceo@example.org>\r\n", 553,
	  "header_from_mismatch" },
	/* RFC 5322 3.6: one From field, even when every one is owned. */
	{ true, true, "From: alice@example.org\r\nFrom: ceo@example.org\r\n", 554,
	  "header_from_multiple" },
	{ true, true, "From: alice@example.org\r\nSubject: x\r\nfrom : alice@example.org\r\n", 554,
	  "header_from_multiple" },
	{ true, true, "From: alice@example.org\r\n\r\nFrom: ceo@example.org\r\n", 0, NULL },
	{ true, true, "From: \"alice@example.org\" <ceo@example.org>\r\n", 553,
	  "header_from_mismatch" },
	{ true, true, "From: <>\r\n", 553, "header_from_mismatch" },
	{ true, true, "From: undisclosed:;\r\n", 550, "header_from_missing" },
	{ true, true, "Subject: no from\r\n\r\n", 550, "header_from_missing" },
	{ true, false, "From: ceo@example.org\r\n", 0, NULL },  /* mx: not ours to judge */
	{ false, true, "From: ceo@example.org\r\n", 0, NULL },
};

START_TEST(test_header_from_check)
{
	char err[256];
	struct policy_sendermap *m = load_text(map_text, err, sizeof(err), NULL);
	for (size_t i = 0; i < ARRAY_LEN(hfrom_cases); i++) {
		struct policy_conf pc = make_conf(SUBMISSION, m, NULL);
		pc.check_header_from = hfrom_cases[i].check;
		struct policy_session ps = { .tls = true,
			                     .authenticated = hfrom_cases[i].authenticated,
			                     .account = hfrom_cases[i].authenticated
			                                        ? "alice@example.org" : NULL };
		struct policy_verdict v;
		const char *h = hfrom_cases[i].header;
		int code = policy_check_header_from(&pc, &ps, h, strlen(h), &v);
		ck_assert_msg(code == hfrom_cases[i].code && v.code == code, "case %zu: %d", i, code);
		ck_assert_msg((v.rule == NULL) == (hfrom_cases[i].rule == NULL) &&
		                      (!v.rule || strcmp(v.rule, hfrom_cases[i].rule) == 0),
		              "case %zu: rule %s", i, v.rule ? v.rule : "(none)");
	}
	policy_sendermap_free(m);
}
END_TEST

/* ---- limiter ------------------------------------------------------------------------- */

START_TEST(test_limiter_refill)
{
	struct policy_limiter *l = policy_limiter_new();
	double retry = 0;
	/* burst 3, one token a second */
	for (int i = 0; i < 3; i++)
		ck_assert(policy_limiter_take(l, "k", 1, 3, 1, 100, &retry));
	ck_assert(!policy_limiter_take(l, "k", 1, 3, 1, 100, &retry));
	ck_assert(retry > 0.99 && retry < 1.01);
	ck_assert(!policy_limiter_take(l, "k", 1, 3, 1, 100.5, &retry));
	ck_assert(retry > 0.49 && retry < 0.51);
	ck_assert(policy_limiter_take(l, "K", 1, 3, 1, 101, NULL));  /* keys ignore case */
	ck_assert(!policy_limiter_take(l, "k", 1, 3, 1, 101, NULL));
	/* long idle: refills to the burst, not beyond */
	for (int i = 0; i < 3; i++)
		ck_assert(policy_limiter_take(l, "k", 1, 3, 1, 1000, NULL));
	ck_assert(!policy_limiter_take(l, "k", 1, 3, 1, 1000, NULL));
	/* another key is untouched */
	ck_assert(policy_limiter_take(l, "other", 1, 3, 3, 1000, NULL));
	ck_assert(!policy_limiter_take(l, "other", 1, 3, 1, 1000, NULL));
	/* more than the burst never fits */
	ck_assert(!policy_limiter_take(l, "x", 1, 3, 4, 1000, &retry));
	ck_assert(retry < 0);
	/* no limit */
	ck_assert(policy_limiter_take(l, "x", 0, 0, 1e9, 1000, NULL));
	policy_limiter_free(l);
}
END_TEST

START_TEST(test_limiter_bounded)
{
	struct policy_limiter *l = policy_limiter_new();
	char key[32];
	/* A flood of distinct keys at one instant: nothing expires, the cap holds. */
	for (unsigned i = 0; i < 1000000; i++) {
		snprintf(key, sizeof(key), "conn:%u", i);
		policy_limiter_take(l, key, 0.001, 10, 1, 0, NULL);
	}
	size_t n = policy_limiter_size(l);
	ck_assert_msg(n <= 64 * 4096, "%zu buckets", n);
	policy_limiter_free(l);

	/* Full buckets go: new keys much later replace the old ones. */
	l = policy_limiter_new();
	for (unsigned i = 0; i < 10000; i++) {
		snprintf(key, sizeof(key), "a:%u", i);
		policy_limiter_take(l, key, 1, 10, 1, 0, NULL);
	}
	ck_assert_uint_eq(policy_limiter_size(l), 10000);
	for (unsigned i = 0; i < 10000; i++) {
		snprintf(key, sizeof(key), "b:%u", i);
		policy_limiter_take(l, key, 1, 10, 1, 3600, NULL);
	}
	n = policy_limiter_size(l);
	ck_assert_msg(n < 12000, "%zu buckets", n);
	policy_limiter_free(l);
}
END_TEST

/* ---- connections and rates ------------------------------------------------------------- */

/* Per-address counters key an IPv6 client on its network: one /64 is one
 * subscriber, who has 2^64 addresses to rotate through. */
static const struct {
	const char *ip;
	unsigned prefix;
	const char *key;
} client_keys[] = {
	{ "192.0.2.7", 64, "192.0.2.7" },
	{ "::ffff:192.0.2.7", 64, "192.0.2.7" },        /* IPv4-mapped is IPv4 */
	{ "::ffff:192.0.2.7", 128, "192.0.2.7" },
	{ "2001:db8:1::1", 64, "2001:db8:1::/64" },
	{ "2001:db8:1:0:ffff:1:2:3", 64, "2001:db8:1::/64" },
	{ "2001:DB8:1::1", 64, "2001:db8:1::/64" },
	{ "2001:0db8:0001:0000:0000:0000:0000:0009", 64, "2001:db8:1::/64" },
	{ "2001:db8:1:ab02::1", 56, "2001:db8:1:ab00::/56" },
	{ "2001:db8:1:2::1", 48, "2001:db8:1::/48" },
	{ "2001:db8::1", 1, "::/1" },
	{ "2001:db8:1::1", 128, "2001:db8:1::1" },
	{ "2001:0db8:0001::0001", 128, "2001:db8:1::1" },
	{ "::1", 64, "::/64" },
	{ "::1", 128, "::1" },
	{ "fe80::1%lo", 64, "fe80::1%lo" },             /* not an address: as it is */
	{ "not-an-ip", 64, "not-an-ip" },
	{ "", 64, "" },
};

START_TEST(test_client_key)
{
	char key[POLICY_CLIENT_KEY_MAX];
	for (size_t i = 0; i < ARRAY_LEN(client_keys); i++) {
		policy_client_key(client_keys[i].ip, client_keys[i].prefix, key, sizeof(key));
		ck_assert_msg(strcmp(key, client_keys[i].key) == 0, "case %zu: %s/%u -> %s", i,
		              client_keys[i].ip, client_keys[i].prefix, key);
	}
	policy_client_key(NULL, 64, key, sizeof(key));
	ck_assert_str_eq(key, "");
	/* Too long to be an address: cut, never overrun. */
	char big[200];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	policy_client_key(big, 64, key, sizeof(key));
	ck_assert_uint_eq(strlen(key), sizeof(key) - 1);
}
END_TEST

START_TEST(test_conncount_ipv6_prefix)
{
	struct policy_conncount *cc = policy_conncount_new(64);
	unsigned total;
	ck_assert_uint_eq(policy_conncount_inc(cc, "2001:db8:1::1", &total), 1);
	ck_assert_uint_eq(policy_conncount_inc(cc, "2001:db8:1::2", &total), 2);
	ck_assert_uint_eq(policy_conncount_inc(cc, "2001:db8:1:0:ffff::9", &total), 3);
	ck_assert_uint_eq(policy_conncount_inc(cc, "2001:db8:2::1", &total), 1);
	ck_assert_uint_eq(policy_conncount_inc(cc, "192.0.2.1", &total), 1);
	ck_assert_uint_eq(policy_conncount_inc(cc, "::ffff:192.0.2.1", &total), 2);
	ck_assert_uint_eq(total, 6);
	ck_assert_uint_eq(policy_conncount_dec(cc, "2001:db8:1::2", &total), 2);
	ck_assert_uint_eq(policy_conncount_dec(cc, "2001:db8:1::1", &total), 1);
	ck_assert_uint_eq(policy_conncount_dec(cc, "2001:db8:1:0:ffff::9", &total), 0);
	ck_assert_uint_eq(policy_conncount_dec(cc, "::ffff:192.0.2.1", &total), 1);
	policy_conncount_free(cc);
	/* /128: every address its own. */
	cc = policy_conncount_new(128);
	ck_assert_uint_eq(policy_conncount_inc(cc, "2001:db8:1::1", NULL), 1);
	ck_assert_uint_eq(policy_conncount_inc(cc, "2001:db8:1::2", NULL), 1);
	policy_conncount_free(cc);
}
END_TEST

START_TEST(test_conncount)
{
	struct policy_conncount *cc = policy_conncount_new(POLICY_IPV6_PREFIX);
	unsigned total;
	ck_assert_uint_eq(policy_conncount_inc(cc, "192.0.2.1", &total), 1);
	ck_assert_uint_eq(policy_conncount_inc(cc, "192.0.2.1", &total), 2);
	ck_assert_uint_eq(policy_conncount_inc(cc, "2001:db8::1", &total), 1);
	ck_assert_uint_eq(total, 3);
	ck_assert_uint_eq(policy_conncount_dec(cc, "192.0.2.1", &total), 1);
	ck_assert_uint_eq(total, 2);
	ck_assert_uint_eq(policy_conncount_dec(cc, "192.0.2.1", &total), 0);
	ck_assert_uint_eq(policy_conncount_dec(cc, "192.0.2.1", &total), 0);  /* unmatched */
	ck_assert_uint_eq(total, 1);
	ck_assert_uint_eq(policy_conncount_dec(cc, "2001:db8::1", &total), 0);
	ck_assert_uint_eq(total, 0);
	policy_conncount_free(cc);
}
END_TEST

static const struct {
	const char *op;          /* "c": connect, "d": disconnect */
	const char *ip;
	double now;
	int code;
	const char *rule;
} connect_steps[] = {
	{ "c", "192.0.2.1", 0, 0, NULL },
	{ "c", "192.0.2.1", 0, 0, NULL },
	{ "c", "192.0.2.1", 0, 421, "max_connections_per_ip" },
	{ "c", "192.0.2.2", 0, 0, NULL },
	{ "c", "192.0.2.3", 0, 421, "max_connections" },
	{ "d", "192.0.2.1", 0, 0, NULL },
	{ "c", "192.0.2.3", 0, 0, NULL },
	{ "d", "192.0.2.3", 0, 0, NULL },
	/* 192.0.2.1 has made 3 attempts this minute, refused one included */
	{ "d", "192.0.2.1", 0, 0, NULL },
	{ "c", "192.0.2.1", 1, 0, NULL },
	{ "d", "192.0.2.1", 1, 0, NULL },
	{ "c", "192.0.2.1", 2, 421, "connection_rate" },
	{ "c", "192.0.2.1", 17, 0, NULL },  /* 4 a minute: a token every 15 s */
};

START_TEST(test_check_connect_ipv6)
{
	/* Three addresses of one /64 are one client: concurrency and rate. */
	struct policy_state *st = policy_state_new(64);
	struct policy_conf pc = make_conf(MX, NULL, NULL);
	pc.max_conn_per_ip = 2;
	pc.conn_per_ip_per_minute = 3;
	struct policy_verdict v;
	policy_check_connect(&pc, st, "2001:db8:1::1", 0, &v);
	ck_assert_int_eq(v.code, 0);
	policy_check_connect(&pc, st, "2001:db8:1::2", 0, &v);
	ck_assert_int_eq(v.code, 0);
	policy_check_connect(&pc, st, "2001:db8:1::3", 0, &v);
	ck_assert_str_eq(v.rule, "max_connections_per_ip");
	policy_check_connect(&pc, st, "2001:db8:2::1", 0, &v);
	ck_assert_int_eq(v.code, 0);
	policy_note_disconnect(st, "2001:db8:1::2");
	policy_check_connect(&pc, st, "2001:db8:1::4", 0, &v);  /* the fourth this minute */
	ck_assert_str_eq(v.rule, "connection_rate");
	policy_state_free(st);
}
END_TEST

START_TEST(test_check_connect)
{
	struct policy_state *st = policy_state_new(POLICY_IPV6_PREFIX);
	struct policy_conf pc = make_conf(MX, NULL, NULL);
	pc.max_conn_per_ip = 2;
	pc.max_conn_total = 3;
	pc.conn_per_ip_per_minute = 4;
	for (size_t i = 0; i < ARRAY_LEN(connect_steps); i++) {
		struct policy_verdict v = { 0 };
		if (connect_steps[i].op[0] == 'd') {
			policy_note_disconnect(st, connect_steps[i].ip);
			continue;
		}
		policy_check_connect(&pc, st, connect_steps[i].ip, connect_steps[i].now, &v);
		ck_assert_msg(v.code == connect_steps[i].code, "step %zu: %d %s", i, v.code,
		              v.rule ? v.rule : "");
		ck_assert_msg(!v.code || strcmp(v.rule, connect_steps[i].rule) == 0, "step %zu", i);
		ck_assert(!v.code || strcmp(v.enh, "4.7.0") == 0);
	}
	policy_state_free(st);
}
END_TEST

START_TEST(test_rates)
{
	char err[256];
	struct policy_sendermap *m = load_text(map_text, err, sizeof(err), NULL);
	struct policy_state *st = policy_state_new(POLICY_IPV6_PREFIX);
	struct policy_conf pc = make_conf(SUBMISSION, m, NULL);
	pc.messages_per_hour = 3;
	pc.recipients_per_hour = 0;
	struct policy_session bob = { .tls = true, .authenticated = true, .account = "bob" };
	struct policy_session alice = { .tls = true, .authenticated = true,
		                        .account = "alice@example.org" };
	struct policy_session anon = { .tls = true };
	struct policy_verdict v;
	/* bob: the listener's 3 an hour */
	for (int i = 0; i < 3; i++) {
		policy_check_rate_message(&pc, st, &bob, 0, &v);
		ck_assert_int_eq(v.code, 0);
	}
	policy_check_rate_message(&pc, st, &bob, 0, &v);
	ck_assert_int_eq(v.code, 450);
	ck_assert_str_eq(v.enh, "4.7.1");
	ck_assert_str_eq(v.rule, "message_rate");
	policy_check_rate_message(&pc, st, &bob, 1200, &v);  /* 20 min: one more */
	ck_assert_int_eq(v.code, 0);
	/* alice: her !limit of 2 messages and 3 recipients */
	for (int i = 0; i < 2; i++) {
		policy_check_rate_message(&pc, st, &alice, 0, &v);
		ck_assert_int_eq(v.code, 0);
	}
	policy_check_rate_message(&pc, st, &alice, 0, &v);
	ck_assert_str_eq(v.rule, "message_rate");
	for (int i = 0; i < 3; i++) {
		policy_check_rate_rcpt(&pc, st, &alice, 0, &v);
		ck_assert_int_eq(v.code, 0);
	}
	policy_check_rate_rcpt(&pc, st, &alice, 0, &v);
	ck_assert_int_eq(v.code, 450);
	ck_assert_str_eq(v.rule, "recipient_rate");
	/* unlimited recipients for bob; unauthenticated: not counted */
	for (int i = 0; i < 100; i++) {
		policy_check_rate_rcpt(&pc, st, &bob, 0, &v);
		ck_assert_int_eq(v.code, 0);
		policy_check_rate_message(&pc, st, &anon, 0, &v);
		ck_assert_int_eq(v.code, 0);
	}
	policy_state_free(st);
	policy_sendermap_free(m);
}
END_TEST

/* ---- auth guard --------------------------------------------------------------------------- */

static struct policy_conf guard_conf(void)
{
	struct policy_conf pc = make_conf(SUBMISSION, NULL, NULL);
	pc.auth_max_failures = 3;
	pc.auth_window = 600;
	pc.auth_lockout = 300;
	pc.auth_ip_budget = 5;
	pc.auth_ip_lockout = 900;
	pc.auth_delay_ms = 100;
	pc.auth_delay_max_ms = 1000;
	return pc;
}

/* One step: 'f' failure (want: delay), 's' success, 'c' check (want: code).
 * typed: the name as the client spelled it, when not the account's. */
struct guard_step {
	char op;
	const char *ip, *account;
	double now;
	unsigned want;
	const char *typed;
};

static void run_guard(const struct guard_step *steps, size_t n, unsigned ip_budget)
{
	struct policy_conf pc = guard_conf();
	pc.auth_ip_budget = ip_budget;
	struct policy_authguard *g = policy_authguard_new(POLICY_IPV6_PREFIX);
	for (size_t i = 0; i < n; i++) {
		const struct guard_step *s = &steps[i];
		struct policy_verdict v;
		if (s->op == 'f') {
			unsigned d = policy_auth_failed(g, &pc, s->ip, s->account, s->typed, s->now);
			ck_assert_msg(d == s->want, "step %zu: delay %u", i, d);
		} else if (s->op == 's') {
			policy_auth_succeeded(g, s->ip, s->account, s->typed);
		} else {
			policy_auth_check(g, &pc, s->ip, s->account, s->typed, s->now, &v);
			ck_assert_msg((unsigned)v.code == s->want, "step %zu: code %d", i, v.code);
			if (v.code == 454)
				ck_assert_str_eq(v.rule, "auth_locked");
			if (v.code == 421)
				ck_assert_str_eq(v.rule, "auth_ip_locked");
		}
	}
	policy_authguard_free(g);
}

static const struct guard_step pair_steps[] = {
	{ 'f', "192.0.2.1", "alice", 0, 100, NULL },
	{ 'f', "192.0.2.1", "alice", 1, 200, NULL },     /* growing delay */
	{ 'c', "192.0.2.1", "alice", 2, 0, NULL },
	{ 'f', "192.0.2.1", "alice", 2, 400, NULL },     /* third: locked */
	{ 'c', "192.0.2.1", "alice", 3, 454, NULL },
	{ 'c', "192.0.2.1", "ALICE", 3, 454, NULL },
	{ 'c', "192.0.2.9", "alice", 3, 0, NULL },       /* the real user elsewhere */
	{ 'c', "192.0.2.1", "bob", 3, 0, NULL },         /* IP budget not spent (3 of 5) */
	{ 'c', "192.0.2.1", NULL, 3, 0, NULL },
	{ 'c', "192.0.2.1", "alice", 301, 454, NULL },
	{ 'c', "192.0.2.1", "alice", 303, 0, NULL },     /* lockout over */
	{ 'f', "192.0.2.1", "alice", 303, 100, NULL },   /* and the count starts afresh */
};

static const struct guard_step spray_steps[] = {
	{ 'f', "198.51.100.7", "u1", 0, 100, NULL },
	{ 'f', "198.51.100.7", "u2", 0, 100, NULL },
	{ 'f', "198.51.100.7", "u3", 0, 100, NULL },
	{ 'f', "198.51.100.7", NULL, 0, 100, NULL },     /* no name decoded: IP only */
	{ 'c', "198.51.100.7", NULL, 0, 0, NULL },
	{ 'f', "198.51.100.7", "u5", 0, 100, NULL },     /* fifth: the IP is locked */
	{ 'c', "198.51.100.7", NULL, 1, 421, NULL },
	{ 'c', "198.51.100.7", "u9", 1, 421, NULL },
	{ 'c', "198.51.100.8", "u1", 1, 0, NULL },
	{ 'c', "198.51.100.7", NULL, 901, 0, NULL },
};

static const struct guard_step window_steps[] = {
	{ 'f', "203.0.113.5", "carol", 0, 100, NULL },
	{ 'f', "203.0.113.5", "carol", 10, 200, NULL },
	{ 'f', "203.0.113.5", "carol", 611, 100, NULL }, /* window over: forgotten */
	{ 'f', "203.0.113.5", "carol", 612, 200, NULL },
	{ 'c', "203.0.113.5", "carol", 612, 0, NULL },
	{ 's', "203.0.113.5", "carol", 613, 0, NULL },   /* success clears the pair */
	{ 'f', "203.0.113.5", "carol", 614, 100, NULL },
	{ 'f', "203.0.113.5", "carol", 615, 200, NULL },
	{ 'c', "203.0.113.5", "carol", 615, 0, NULL },
	{ 'f', "203.0.113.5", "carol", 615, 400, NULL },
	{ 'c', "203.0.113.5", "carol", 616, 454, NULL },
};

/* One account under several spellings (auth names the account; the
 * typed name rides along): failures add up on the account, and a lock
 * on either name holds. */
static const struct guard_step spelling_steps[] = {
	{ 'f', "192.0.2.1", "alice", 0, 100, "alice@mx.example" },
	{ 'f', "192.0.2.1", "alice", 1, 200, NULL },
	{ 'c', "192.0.2.1", "alice", 2, 0, "alice@mx.example" },
	{ 'f', "192.0.2.1", "alice", 2, 400, "alice@MX.example" },  /* third: locked */
	{ 'c', "192.0.2.1", "alice", 3, 454, NULL },
	{ 'c', "192.0.2.1", "alice", 3, 454, "alice@mx.example" },
	{ 'c', "192.0.2.9", "alice", 3, 0, "alice@mx.example" },
	/* A success clears the account and the name it was typed as ... */
	{ 's', "192.0.2.2", "bob", 0, 0, NULL },
	{ 'f', "192.0.2.2", "bob", 0, 100, "bob@mx.example" },
	{ 'f', "192.0.2.2", "bob", 1, 200, "bob@mx.example" },
	{ 's', "192.0.2.2", "bob", 2, 0, NULL },
	/* ... but not another spelling's count, which locks that spelling. */
	{ 'f', "192.0.2.2", "bob", 3, 400, "bob@mx.example" },
	{ 'c', "192.0.2.2", "bob", 4, 454, "bob@mx.example" },
	{ 'c', "192.0.2.2", "bob", 4, 0, NULL },
	/* The same name in another case is one name, counted once. */
	{ 'f', "192.0.2.3", "carol", 0, 100, "CAROL" },
	{ 'f', "192.0.2.3", "carol", 1, 200, "Carol" },
	{ 'c', "192.0.2.3", "carol", 2, 0, NULL },
};

/* One /64 is one client for the AUTH budget and the pair lockout. */
static const struct guard_step ipv6_steps[] = {
	{ 'f', "2001:db8:1::1", "alice", 0, 100, NULL },
	{ 'f', "2001:db8:1::2", "alice", 0, 200, NULL },
	{ 'f', "2001:db8:1:0:ffff::3", "alice", 0, 400, NULL },  /* third: locked */
	{ 'c', "2001:db8:1::4", "alice", 1, 454, NULL },
	{ 'c', "2001:db8:2::1", "alice", 1, 0, NULL },
	{ 'f', "2001:db8:1::5", "u1", 1, 100, NULL },
	{ 'f', "2001:db8:1::6", "u2", 1, 100, NULL },       /* fifth of the /64 */
	{ 'c', "2001:db8:1::7", NULL, 2, 421, NULL },
	{ 'c', "2001:db8:1:0:ffff::1", "bob", 2, 421, NULL },
	{ 'c', "2001:db8:1:1::1", NULL, 2, 0, NULL },       /* the next /64 */
	{ 'f', "::ffff:192.0.2.1", "carol", 0, 100, NULL },
	{ 'f', "192.0.2.1", "carol", 0, 200, NULL },          /* mapped is IPv4 */
};

START_TEST(test_authguard)
{
	run_guard(ipv6_steps, ARRAY_LEN(ipv6_steps), 5);
	run_guard(spelling_steps, ARRAY_LEN(spelling_steps), 20);
	run_guard(pair_steps, ARRAY_LEN(pair_steps), 5);
	run_guard(spray_steps, ARRAY_LEN(spray_steps), 5);
	/* 7 failures from one IP here: a budget of 5 would lock the IP first
	 * (as the last rows of spray_steps show). */
	run_guard(window_steps, ARRAY_LEN(window_steps), 20);
	static const struct guard_step both[] = {
		{ 'f', "203.0.113.5", "carol", 0, 100, NULL }, { 'f', "203.0.113.5", "carol", 0, 200, NULL },
		{ 's', "203.0.113.5", "carol", 0, 0, NULL },   { 'f', "203.0.113.5", "carol", 0, 100, NULL },
		{ 'f', "203.0.113.5", "carol", 0, 200, NULL },
		{ 'f', "203.0.113.5", "carol", 0, 400, NULL }, /* fifth from this IP, third of the pair */
		{ 'c', "203.0.113.5", "carol", 1, 421, NULL }, /* the IP lock is checked first */
	};
	run_guard(both, ARRAY_LEN(both), 5);
}
END_TEST

START_TEST(test_auth_delay_cap)
{
	static const unsigned want[] = { 100, 200, 400, 800, 1000, 1000, 1000 };
	struct policy_conf pc = guard_conf();
	pc.auth_max_failures = 0;  /* no lockout: watch the delay alone */
	pc.auth_ip_budget = 0;
	struct policy_authguard *g = policy_authguard_new(POLICY_IPV6_PREFIX);
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		ck_assert_uint_eq(policy_auth_failed(g, &pc, "192.0.2.1", "dan", NULL, (double)i),
		                  want[i]);
	struct policy_verdict v;
	policy_auth_check(g, &pc, "192.0.2.1", "dan", NULL, 10, &v);
	ck_assert_int_eq(v.code, 0);
	policy_authguard_free(g);
}
END_TEST

/* ---- threads -------------------------------------------------------------------------------- */

struct hammer {
	struct policy_state *st;
	struct policy_conf pc;
	int id;
	unsigned taken;
};

static void *hammer(void *arg)
{
	struct hammer *h = arg;
	char key[64], ip[64];
	for (int i = 0; i < 20000; i++) {
		double now = i / 1000.0;
		/* One shared bucket that does not refill during the test. */
		if (policy_limiter_take(h->st->limiter, "shared", 1e-9, 1000, 1, now, NULL))
			h->taken++;
		snprintf(key, sizeof(key), "k:%d", i % 500);
		policy_limiter_take(h->st->limiter, key, 10, 5, 1, now, NULL);
		snprintf(ip, sizeof(ip), "10.%d.%d.%d", h->id, (i / 250) % 250, i % 250);
		policy_conncount_inc(h->st->conns, ip, NULL);
		policy_conncount_inc(h->st->conns, "10.255.255.255", NULL);
		struct policy_verdict v;
		policy_auth_check(h->st->guard, &h->pc, ip, "victim", "Victim@x", now, &v);
		policy_auth_failed(h->st->guard, &h->pc, ip, "victim", "Victim@x", now);
		if (i % 7 == 0)
			policy_auth_succeeded(h->st->guard, ip, "victim", NULL);
		policy_conncount_dec(h->st->conns, "10.255.255.255", NULL);
		policy_conncount_dec(h->st->conns, ip, NULL);
	}
	return NULL;
}

START_TEST(test_threads)
{
	enum { NTHREADS = 4 };
	struct policy_state *st = policy_state_new(POLICY_IPV6_PREFIX);
	struct hammer h[NTHREADS];
	pthread_t t[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		h[i] = (struct hammer){ .st = st, .pc = guard_conf(), .id = i };
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, &h[i]), 0);
	}
	unsigned taken = 0;
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(t[i], NULL);
		taken += h[i].taken;
	}
	ck_assert_uint_eq(taken, 1000);  /* not one token more or less */
	unsigned total;
	ck_assert_uint_eq(policy_conncount_inc(st->conns, "10.255.255.255", &total), 1);
	ck_assert_uint_eq(total, 1);     /* every inc met its dec */
	policy_state_free(st);
}
END_TEST

/* ---- main ------------------------------------------------------------------------------------ */

/* One test case per concern, so CK_RUN_CASE=flood runs just that. */
static Suite *policy_suite(void)
{
	const struct {
		const char *tcase;
		const TTest *test;
	} tests[] = {
		{ "sendermap", test_sender_owned },      { "sendermap", test_sender_default },
		{ "sendermap", test_sender_limits },     { "sendermap", test_sender_bad_files },
		{ "bigmap", test_sender_big_map },       { "netlist", test_netlist },
		{ "netlist", test_netlist_bad },         { "verdicts", test_check_mail },
		{ "verdicts", test_check_rcpt },         { "verdicts", test_check_rcpt_routing },
		{ "verdicts", test_tables },
		{ "header_from", test_header_from_parse }, { "header_from", test_header_from_check },
		{ "limiter", test_limiter_refill },      { "flood", test_limiter_bounded },
		{ "limits", test_client_key },           { "limits", test_conncount_ipv6_prefix },
		{ "limits", test_conncount },            { "limits", test_check_connect },
		{ "limits", test_check_connect_ipv6 },
		{ "limits", test_rates },                { "authguard", test_authguard },
		{ "authguard", test_auth_delay_cap },    { "threads", test_threads },
	};
	Suite *s = suite_create("policy");
	TCase *tc = NULL;
	for (size_t i = 0; i < ARRAY_LEN(tests); i++) {
		if (i == 0 || strcmp(tests[i].tcase, tests[i - 1].tcase) != 0) {
			tc = tcase_create(tests[i].tcase);
			tcase_set_timeout(tc, 60);  /* sanitizer builds are slow */
			suite_add_tcase(s, tc);
		}
		tcase_add_test(tc, tests[i].test);
	}
	return s;
}

int main(void)
{
	log_open("test_policy", false, LOG_LEVEL_ERR);
	SRunner *sr = srunner_create(policy_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
