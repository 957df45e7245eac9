/*
 * Unit tests for dns/: the pure name helpers, then lookups against a real
 * DNS server (ldns-testns on 127.0.0.1 with test/unit/dns/testns.data),
 * against a UDP socket that never answers (timeouts), and closing with
 * lookups pending. Every loop must close with no handle left.
 *
 * The server is started once by main() and stopped by pid at the end; it
 * dies with us (PR_SET_PDEATHSIG) if we crash.
 */
#include "dns/dns.h"
#include "common/common.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define TESTNS "/usr/bin/ldns-testns"
#define TIMEOUT_MS 400
#define SLACK_MS 250

static pid_t server_pid = -1;
static char server_addr[64];

/* ---- helpers ----------------------------------------------------------- */

struct result {
	int calls;
	enum dns_status st;
	char name[DNS_NAME_MAX];     /* rdns: verified name; dnsbl: zone */
	char other[DNS_NAME_MAX];    /* rdns: ptr name; dnsbl: txt */
	bool has_name, has_other;
	uint64_t at;                 /* loop time of the callback */
};

struct ctx {
	uv_loop_t loop;
	struct dns_resolver *r;
	int waiting;                 /* callbacks still due; close at 0 */
	uint64_t start;
	struct result res[4];
};

static void got(struct ctx *c, struct result *res, enum dns_status st,
                const char *a, const char *b)
{
	res->calls++;
	res->st = st;
	res->has_name = a != NULL;
	res->has_other = b != NULL;
	str_lcpy(res->name, a ? a : "", sizeof(res->name));
	str_lcpy(res->other, b ? b : "", sizeof(res->other));
	res->at = uv_now(&c->loop);
	if (--c->waiting == 0)
		dns_resolver_close(c->r);   /* from inside a callback, on purpose */
}

/* The arg is an index, as the server passes a session id. */
static struct ctx *the_ctx;

static void rdns_cb(void *arg, enum dns_status st, const char *name, const char *ptr)
{
	got(the_ctx, &the_ctx->res[(uintptr_t)arg], st, name, ptr);
}

static void dnsbl_cb(void *arg, enum dns_status st, const char *zone, const char *txt)
{
	got(the_ctx, &the_ctx->res[(uintptr_t)arg], st, zone, txt);
}

static void ctx_open(struct ctx *c, const char *server, unsigned timeout_ms)
{
	const char *servers[] = { server };
	struct dns_conf conf = { .servers = servers, .nservers = 1, .timeout_ms = timeout_ms };
	char err[256] = "";
	memset(c, 0, sizeof(*c));
	ck_assert_int_eq(uv_loop_init(&c->loop), 0);
	c->r = dns_resolver_new(&c->loop, &conf, err, sizeof(err));
	ck_assert_msg(c->r != NULL, "resolver: %s", err);
	c->start = uv_now(&c->loop);
	the_ctx = c;
}

/* Runs until every callback came and the resolver closed itself. */
static void ctx_run(struct ctx *c)
{
	ck_assert_int_eq(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(c->waiting, 0);
	ck_assert_int_eq(uv_loop_close(&c->loop), 0);
}

/* A UDP socket on 127.0.0.1 that never reads: a server that never answers. */
static int silent_socket(char *addr, size_t len)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	ck_assert_int_ge(fd, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	snprintf(addr, len, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
	return fd;
}

/* ---- pure helpers ---------------------------------------------------- */

START_TEST(test_reverse_names)
{
	char out[DNS_NAME_MAX];
	ck_assert_int_eq(dns_reverse_name("192.0.2.10", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "10.2.0.192.in-addr.arpa");
	ck_assert_int_eq(dns_reverse_name("::ffff:192.0.2.10", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "10.2.0.192.in-addr.arpa");
	ck_assert_int_eq(dns_reverse_name("2001:db8::567:89ab", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
	ck_assert_int_eq(dns_reverse_name("192.0.2", out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(dns_reverse_name("host.example", out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(dns_reverse_name("192.0.2.10", out, 10), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_dnsbl_names)
{
	char out[DNS_NAME_MAX], zone[300];
	ck_assert_int_eq(dns_dnsbl_name("127.0.0.2", "bl.example.test", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "2.0.0.127.bl.example.test");
	ck_assert_int_eq(dns_dnsbl_name("192.0.2.99", "zen.example.", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "99.2.0.192.zen.example");
	ck_assert_int_eq(dns_dnsbl_name("2001:db8::2", "bl.example.test", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example.test");
	ck_assert_int_eq(dns_dnsbl_name("127.0.0.2", "", out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(dns_dnsbl_name("127.0.0.2", "bad zone", out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(dns_dnsbl_name("127.0.0.2", "a..b", out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(dns_dnsbl_name("nope", "bl.example", out, sizeof(out)), -EINVAL);
	/* a zone that fits alone but not under an IPv6 prefix (64 chars) */
	memset(zone, 0, sizeof(zone));
	for (int i = 0; i < 4; i++)
		memcpy(zone + i * 50, i ? ".aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		                        : "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 50);
	ck_assert_int_eq(dns_dnsbl_name("127.0.0.2", zone, out, sizeof(out)), 0);
	ck_assert_int_eq(dns_dnsbl_name("::", zone, out, sizeof(out)), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_parse_server)
{
	struct sockaddr_storage ss;
	const struct sockaddr_in *s4 = (const void *)&ss;
	const struct sockaddr_in6 *s6 = (const void *)&ss;
	ck_assert_int_eq(dns_parse_server("192.0.2.1", &ss), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET);
	ck_assert_uint_eq(ntohs(s4->sin_port), 53);
	ck_assert_int_eq(dns_parse_server("127.0.0.1:5353", &ss), 0);
	ck_assert_uint_eq(ntohs(s4->sin_port), 5353);
	ck_assert_uint_eq(ntohl(s4->sin_addr.s_addr), 0x7f000001);
	ck_assert_int_eq(dns_parse_server("::1", &ss), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET6);
	ck_assert_uint_eq(ntohs(s6->sin6_port), 53);
	ck_assert_int_eq(dns_parse_server("[2001:db8::1]:5300", &ss), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET6);
	ck_assert_uint_eq(ntohs(s6->sin6_port), 5300);
	ck_assert_int_eq(dns_parse_server("[::1]", &ss), 0);
	ck_assert_uint_eq(ntohs(s6->sin6_port), 53);
	ck_assert_int_eq(dns_parse_server("", &ss), -EINVAL);
	ck_assert_int_eq(dns_parse_server("localhost", &ss), -EINVAL);
	ck_assert_int_eq(dns_parse_server("127.0.0.1:0", &ss), -EINVAL);
	ck_assert_int_eq(dns_parse_server("127.0.0.1:99999", &ss), -EINVAL);
	ck_assert_int_eq(dns_parse_server("127.0.0.1:53x", &ss), -EINVAL);
	ck_assert_int_eq(dns_parse_server("[::1]53", &ss), -EINVAL);
	ck_assert_int_eq(dns_parse_server("[::1", &ss), -EINVAL);
	ck_assert_str_eq(dns_status_str(DNS_TIMEOUT), "timeout");
}
END_TEST

START_TEST(test_resolver_conf)
{
	char path[] = "/tmp/test_dns_resolv_XXXXXX", err[256];
	uv_loop_t loop;
	const char *bad[] = { "not-an-address" };
	struct dns_conf conf = { .servers = bad, .nservers = 1 };
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	ck_assert_ptr_null(dns_resolver_new(&loop, &conf, err, sizeof(err)));
	ck_assert(strstr(err, "not-an-address") != NULL);

	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	const char *text = "# test\nsearch example\nnameserver bogus\noptions ndots:1\n";
	ck_assert_int_eq(file_write_all(fd, text, strlen(text)), 0);
	close(fd);
	conf = (struct dns_conf){ .resolv_conf = path };
	ck_assert_ptr_null(dns_resolver_new(&loop, &conf, err, sizeof(err)));
	ck_assert(strstr(err, "no usable nameserver") != NULL);

	fd = open(path, O_WRONLY | O_TRUNC);
	text = "nameserver 127.0.0.1\nnameserver 192.0.2.1\n";
	ck_assert_int_eq(file_write_all(fd, text, strlen(text)), 0);
	close(fd);
	struct dns_resolver *r = dns_resolver_new(&loop, &conf, err, sizeof(err));
	ck_assert_msg(r != NULL, "%s", err);
	dns_resolver_close(r);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	unlink(path);
}
END_TEST

/* ---- against ldns-testns ---------------------------------------------- */

START_TEST(test_rdns)
{
	struct ctx c;
	ctx_open(&c, server_addr, 2000);
	ck_assert_int_eq(dns_rdns(c.r, "192.0.2.10", rdns_cb, (void *)0), 0);
	ck_assert_int_eq(dns_rdns(c.r, "192.0.2.11", rdns_cb, (void *)1), 0);
	ck_assert_int_eq(dns_rdns(c.r, "192.0.2.12", rdns_cb, (void *)2), 0);
	ck_assert_int_eq(dns_rdns(c.r, "2001:db8::10", rdns_cb, (void *)3), 0);
	ck_assert_int_eq(dns_rdns(c.r, "not-an-ip", rdns_cb, (void *)3), -EINVAL);
	c.waiting = 4;
	ck_assert_int_eq(c.res[0].calls, 0);   /* never from inside the call */
	ctx_run(&c);

	ck_assert_int_eq(c.res[0].calls, 1);
	ck_assert_int_eq(c.res[0].st, DNS_OK);
	ck_assert_str_eq(c.res[0].name, "host.example.test");
	ck_assert_str_eq(c.res[0].other, "host.example.test");

	ck_assert_int_eq(c.res[1].st, DNS_OK);          /* PTR, but no confirmation */
	ck_assert(!c.res[1].has_name);
	ck_assert_str_eq(c.res[1].other, "liar.example.test");

	ck_assert_int_eq(c.res[2].st, DNS_NXDOMAIN);
	ck_assert(!c.res[2].has_name);
	ck_assert(!c.res[2].has_other);

	ck_assert_int_eq(c.res[3].st, DNS_OK);
	ck_assert_str_eq(c.res[3].name, "host6.example.test");
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(c.res[i].calls, 1);
}
END_TEST

START_TEST(test_dnsbl)
{
	static const char *const bl[] = { "bl.example.test" };
	static const char *const err_bl[] = { "err.example.test" };
	struct ctx c;
	ctx_open(&c, server_addr, 2000);
	ck_assert_int_eq(dns_dnsbl(c.r, "127.0.0.2", bl, 1, dnsbl_cb, (void *)0), 0);
	ck_assert_int_eq(dns_dnsbl(c.r, "192.0.2.99", bl, 1, dnsbl_cb, (void *)1), 0);
	ck_assert_int_eq(dns_dnsbl(c.r, "2001:db8::2", bl, 1, dnsbl_cb, (void *)2), 0);
	ck_assert_int_eq(dns_dnsbl(c.r, "192.0.2.99", err_bl, 1, dnsbl_cb, (void *)3), 0);
	ck_assert_int_eq(dns_dnsbl(c.r, "127.0.0.2", bl, 0, dnsbl_cb, (void *)3), -EINVAL);
	c.waiting = 4;
	ctx_run(&c);

	ck_assert_int_eq(c.res[0].st, DNS_OK);
	ck_assert_str_eq(c.res[0].name, "bl.example.test");
	ck_assert_str_eq(c.res[0].other, "listed for testing see?bl?");   /* quotes made safe */

	ck_assert_int_eq(c.res[1].st, DNS_OK);
	ck_assert(!c.res[1].has_name);

	ck_assert_int_eq(c.res[2].st, DNS_OK);
	ck_assert_str_eq(c.res[2].name, "bl.example.test");
	ck_assert(!c.res[2].has_other);                 /* listed, no reason given */

	ck_assert_int_eq(c.res[3].st, DNS_ERROR);        /* 127.255.255.254: no verdict */
	ck_assert_str_eq(c.res[3].name, "err.example.test");
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(c.res[i].calls, 1);
}
END_TEST

/* dead.example.test gets no reply at all from the server. */
START_TEST(test_dnsbl_dead_zone)
{
	static const char *const zones[] = { "dead.example.test", "bl.example.test" };
	struct ctx c;
	ctx_open(&c, server_addr, TIMEOUT_MS);
	ck_assert_int_eq(dns_dnsbl(c.r, "127.0.0.2", zones, 2, dnsbl_cb, (void *)0), 0);
	ck_assert_int_eq(dns_dnsbl(c.r, "192.0.2.99", zones, 2, dnsbl_cb, (void *)1), 0);
	c.waiting = 2;
	ctx_run(&c);

	/* a listing does not wait for the dead zone */
	ck_assert_int_eq(c.res[0].st, DNS_OK);
	ck_assert_str_eq(c.res[0].name, "bl.example.test");
	ck_assert_uint_lt(c.res[0].at - c.start, TIMEOUT_MS / 2);

	/* unlisted elsewhere, undecided here: the caller's configured outcome */
	ck_assert_int_eq(c.res[1].st, DNS_TIMEOUT);
	ck_assert_str_eq(c.res[1].name, "dead.example.test");
	ck_assert_uint_ge(c.res[1].at - c.start, TIMEOUT_MS);
	ck_assert_uint_lt(c.res[1].at - c.start, TIMEOUT_MS + SLACK_MS);
}
END_TEST

/* ---- a server that never answers ------------------------------------- */

START_TEST(test_timeout)
{
	static const char *const bl[] = { "bl.example.test" };
	char addr[64];
	int fd = silent_socket(addr, sizeof(addr));
	struct ctx c;
	ctx_open(&c, addr, TIMEOUT_MS);
	ck_assert_int_eq(dns_rdns(c.r, "192.0.2.10", rdns_cb, (void *)0), 0);
	ck_assert_int_eq(dns_dnsbl(c.r, "127.0.0.2", bl, 1, dnsbl_cb, (void *)1), 0);
	c.waiting = 2;
	ctx_run(&c);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(c.res[i].calls, 1);
		ck_assert_int_eq(c.res[i].st, DNS_TIMEOUT);
		ck_assert_uint_ge(c.res[i].at - c.start, TIMEOUT_MS);
		ck_assert_uint_lt(c.res[i].at - c.start, TIMEOUT_MS + SLACK_MS);
	}
	ck_assert(!c.res[0].has_name);
	ck_assert_str_eq(c.res[1].name, "bl.example.test");
	close(fd);
}
END_TEST

/* ---- closing with lookups pending -------------------------------------- */

static void retry_cb(void *arg, enum dns_status st, const char *name, const char *ptr)
{
	struct ctx *c = the_ctx;
	/* a lookup started from a cancelled callback is refused, not lost */
	ck_assert_int_eq(dns_rdns(c->r, "192.0.2.10", rdns_cb, (void *)3), -ECANCELED);
	got(c, &c->res[(uintptr_t)arg], st, name, ptr);
}

static void close_later(uv_timer_t *t)
{
	struct ctx *c = t->data;
	dns_resolver_close(c->r);
	dns_resolver_close(c->r);   /* twice is harmless */
	uv_close((uv_handle_t *)t, NULL);
}

START_TEST(test_close_pending)
{
	static const char *const zones[] = { "bl.example.test", "other.example.test" };
	char addr[64];
	int fd = silent_socket(addr, sizeof(addr));
	struct ctx c;
	uv_timer_t t;
	ctx_open(&c, addr, 5000);
	ck_assert_int_eq(dns_rdns(c.r, "192.0.2.10", retry_cb, (void *)0), 0);
	ck_assert_int_eq(dns_dnsbl(c.r, "127.0.0.2", zones, 2, dnsbl_cb, (void *)1), 0);
	ck_assert_int_eq(dns_rdns(c.r, "2001:db8::10", rdns_cb, (void *)2), 0);
	c.waiting = 3 + 1;   /* +1: the timer closes the resolver, not a callback */
	uv_timer_init(&c.loop, &t);
	t.data = &c;
	uv_timer_start(&t, close_later, 50, 0);
	ck_assert_int_eq(uv_run(&c.loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(c.waiting, 1);
	ck_assert_uint_lt(uv_now(&c.loop) - c.start, 1000);
	ck_assert_int_eq(uv_loop_close(&c.loop), 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(c.res[i].calls, 1);
		ck_assert_int_eq(c.res[i].st, DNS_CANCELLED);
		ck_assert(!c.res[i].has_name);
	}
	close(fd);
}
END_TEST

/* Closed before the loop ever ran: callbacks still come, once. */
START_TEST(test_close_at_once)
{
	static const char *const bl[] = { "bl.example.test" };
	struct ctx c;
	ctx_open(&c, server_addr, 2000);
	ck_assert_int_eq(dns_dnsbl(c.r, "127.0.0.2", bl, 1, dnsbl_cb, (void *)0), 0);
	ck_assert_int_eq(dns_rdns(c.r, "192.0.2.10", rdns_cb, (void *)1), 0);
	c.waiting = 3;
	dns_resolver_close(c.r);
	ck_assert_int_eq(c.waiting, 1);
	ck_assert_int_eq(c.res[0].st, DNS_CANCELLED);
	ck_assert_int_eq(c.res[1].st, DNS_CANCELLED);
	ck_assert_int_eq(uv_run(&c.loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(uv_loop_close(&c.loop), 0);
}
END_TEST

/* ---- the server ------------------------------------------------------- */

static void stop_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGTERM);
		waitpid(server_pid, NULL, 0);
		server_pid = -1;
	}
}

/* Starts ldns-testns on a random port and reads the port from its output.
 * The pipe stays open (never read again) so the server never gets EPIPE. */
static int start_server(const char *datafile)
{
	int p[2];
	char out[4096];
	size_t n = 0;
	if (pipe(p) < 0)
		return -1;
	server_pid = fork();
	if (server_pid < 0)
		return -1;
	if (server_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], STDOUT_FILENO);
		close(p[0]);
		close(p[1]);
		execl(TESTNS, "ldns-testns", "-r", datafile, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		if (poll(&pfd, 1, 5000) <= 0 || n + 1 >= sizeof(out))
			return -1;
		ssize_t got_n = read(p[0], out + n, sizeof(out) - 1 - n);
		if (got_n <= 0)
			return -1;
		n += (size_t)got_n;
		out[n] = '\0';
		const char *s = strstr(out, "Listening on port ");
		unsigned port;
		if (s && strchr(s, '\n') && sscanf(s, "Listening on port %u", &port) == 1) {
			snprintf(server_addr, sizeof(server_addr), "127.0.0.1:%u", port);
			return 0;
		}
	}
}

static Suite *dns_suite(void)
{
	Suite *s = suite_create("dns");
	TCase *pure = tcase_create("names");
	tcase_add_test(pure, test_reverse_names);
	tcase_add_test(pure, test_dnsbl_names);
	tcase_add_test(pure, test_parse_server);
	tcase_add_test(pure, test_resolver_conf);
	suite_add_tcase(s, pure);
	TCase *net = tcase_create("lookups");
	tcase_add_test(net, test_rdns);
	tcase_add_test(net, test_dnsbl);
	tcase_add_test(net, test_dnsbl_dead_zone);
	tcase_add_test(net, test_timeout);
	tcase_add_test(net, test_close_pending);
	tcase_add_test(net, test_close_at_once);
	suite_add_tcase(s, net);
	return s;
}

int main(void)
{
	const char *top = getenv("top_srcdir");
	char datafile[4096];
	if (access(TESTNS, X_OK) != 0) {
		fprintf(stderr, "SKIP: %s not installed (Debian: ldnsutils)\n", TESTNS);
		return 77;
	}
	snprintf(datafile, sizeof(datafile), "%s/test/unit/dns/testns.data", top ? top : ".");
	/* ldns-testns draws a random port and gives up when it is taken. */
	int started = -1;
	for (int i = 0; i < 5 && started < 0 && access(datafile, R_OK) == 0; i++) {
		started = start_server(datafile);
		if (started < 0)
			stop_server();
	}
	if (started < 0) {
		fprintf(stderr, "cannot start %s with %s\n", TESTNS, datafile);
		return 1;
	}
	SRunner *sr = srunner_create(dns_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	stop_server();
	return failed ? 1 : 0;
}
