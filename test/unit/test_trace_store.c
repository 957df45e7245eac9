/*
 * test_trace_store.c - unit tests of the trace store: records written in
 * batches and visible to another connection once written, group commit
 * with refusals and delivery results riding along (or written by the
 * store's own thread when no record comes), concurrent writers, failures
 * that must reach the owner, lookups by every key (CIDR v4/v6, time ranges,
 * combinations), pruning, statistics and schema migration. Each test works
 * in its own mkdtemp directory under `base`, removed by main().
 *
 * POSTERN_BIG_TRACE_TEST=1 also times lookups among 1,000,000 records.
 */
#include "trace/trace.h"
#include "trace/store_int.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char base[64];
static char dir[PATH_MAX];
static char db_path[PATH_MAX + 16];

static void fresh_dir(void)
{
	snprintf(dir, sizeof(dir), "%s/t.XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(db_path, sizeof(db_path), "%s/trace.db", dir);
}

/* A store in a fresh directory. */
static struct trace_store *fresh_store(void)
{
	char err[512];
	fresh_dir();
	struct trace_store *ts = trace_store_open(db_path, err, sizeof(err));
	ck_assert_msg(ts != NULL, "%s", err);
	return ts;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void remove_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* ---- fake records --------------------------------------------------------- */

#define BASE_TIME 1700000000
static const char *const ips[] = {
	"192.0.2.1", "192.0.2.200", "198.51.100.7", "2001:db8::1", "2001:db8:1::5",
	"::ffff:192.0.2.9",
};

/* A record whose strings live beside it: do not move it once made. */
struct fake {
	struct trace_record r;
	char account[32], from[64], mid[64], fp[96], rcpt0[64];
	const char *rcpts[2];
};

static void fake_make(struct fake *f, int i)
{
	memset(f, 0, sizeof(*f));
	struct trace_record *r = &f->r;
	snprintf(r->qid, sizeof(r->qid), "Q%015d", i);
	snprintf(r->trace_id, sizeof(r->trace_id), "t%025d", i);
	r->time = BASE_TIME + (int64_t)i * 3600;
	r->sid = "s1";
	r->listener = i % 2 ? "smtps" : "submission";
	r->client_ip = ips[i % ARRAY_LEN(ips)];
	r->client_port = 40000 + (unsigned)i;
	r->reverse_name = "client.example.net";
	r->helo = "laptop";
	r->tls_version = i % 3 ? "TLSv1.3" : "TLSv1.2";
	r->tls_cipher = i % 3 ? "TLS_AES_256_GCM_SHA384" : "ECDHE-RSA-AES128-GCM-SHA256";
	r->tls_sni = "mail.example.org";
	if (i % 2 == 0) {
		/* the server's spelling: lowercase hex, no colons */
		snprintf(f->fp, sizeof(f->fp), "%064x", i + 0xab);
		r->cert_fp = f->fp;
		r->cert_subject = "CN=client";
		r->cert_issuer = "CN=Example CA";
	}
	r->sasl_mech = "PLAIN";
	snprintf(f->account, sizeof(f->account), "user%d", i % 3);
	r->account = f->account;
	snprintf(f->from, sizeof(f->from), "sender%d@example.org", i % 4);
	r->mail_from = f->from;
	snprintf(f->rcpt0, sizeof(f->rcpt0), "rcpt%d@dest.example", i);
	f->rcpts[0] = f->rcpt0;
	f->rcpts[1] = "all@dest.example";
	r->rcpts = f->rcpts;
	r->nrcpts = i % 2 == 0 ? 2 : 1;
	r->size = 1000 * (uint64_t)(i + 1);
	r->body_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
	snprintf(f->mid, sizeof(f->mid), "<msg%d@example.org>", i);
	r->message_id = f->mid;
	r->trust_class = "authenticated";
}

/* ---- writing as the spool's commit thread does ------------------------------- */

static bool row_visible(const char *qid)
{
	sqlite3 *db;
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return false;
	}
	sqlite3_stmt *st;
	bool seen = false;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM messages WHERE qid = ?1", -1, &st, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_text(st, 1, qid, -1, SQLITE_STATIC);
		seen = sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return seen;
}

/* Writes f[0..n) as one batch; their statuses go to status[]. With
 * fail_writes no file may grow meanwhile (as on a full disk); no
 * ck_assert runs then, for Check itself could not write. Returns what
 * trace_store_write() did: 0 if the transaction committed. */
static int write_all(struct trace_store *ts, struct fake *f, size_t n, int *status,
                     bool fail_writes)
{
	struct trace_entry **v = xcalloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		v[i] = trace_entry_new(&f[i].r);
		ck_assert_int_eq(trace_entry_status(v[i]), -EINPROGRESS);
	}
	struct rlimit saved;
	if (fail_writes) {
		getrlimit(RLIMIT_FSIZE, &saved);
		struct rlimit tiny = { 1, saved.rlim_max };
		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &tiny);
	}
	int rc = trace_store_write(ts, v, n);
	if (fail_writes)
		setrlimit(RLIMIT_FSIZE, &saved);
	for (size_t i = 0; i < n; i++) {
		status[i] = trace_entry_status(v[i]);
		trace_entry_free(v[i]);
	}
	free(v);
	return rc;
}

static struct fake *fakes_make(size_t n)
{
	struct fake *f = xcalloc(n, sizeof(*f));
	for (size_t i = 0; i < n; i++)
		fake_make(&f[i], (int)i);
	return f;
}

/* A fresh store that holds the first of n fakes, written and answered. */
static struct trace_store *store_with_first(struct fake **f, size_t n)
{
	struct trace_store *ts = fresh_store();
	*f = fakes_make(n);
	int status = -1;
	write_all(ts, *f, 1, &status, false);
	ck_assert_int_eq(status, 0);
	return ts;
}

#define NSEED 12

/* The store with NSEED records, some refusals and delivery results. */
static void seed(void)
{
	char err[512];
	struct trace_store *ts = trace_store_open(db_path, err, sizeof(err));
	ck_assert_msg(ts != NULL, "%s", err);
	struct fake *f = fakes_make(NSEED);
	int status[NSEED];
	write_all(ts, f, NSEED, status, false);
	for (size_t i = 0; i < NSEED; i++)
		ck_assert_int_eq(status[i], 0);

	/* delays 10..60 s for records 0..5, then one deferred, one bounced,
	 * one deferred that was delivered 5 s after arrival at last */
	for (int i = 0; i < 6; i++) {
		struct trace_delivery d = { f[i].r.qid, f[i].rcpt0, "delivered", "[127.0.0.1]:10025",
			                    "250 2.0.0 ok", f[i].r.time + 10 * (i + 1) };
		trace_store_delivery(ts, &d);
	}
	struct trace_delivery d6 = { f[6].r.qid, f[6].rcpt0, "deferred", "[127.0.0.1]:10025",
		                     "451 4.3.0 later", f[6].r.time + 100 };
	struct trace_delivery d7 = { f[7].r.qid, "RCPT7@dest.example", "bounced",
		                     "[127.0.0.1]:10025", "550 5.1.1 no such user", f[7].r.time + 7 };
	struct trace_delivery d8a = { f[8].r.qid, f[8].rcpt0, "deferred", NULL, "timeout",
		                      f[8].r.time + 2 };
	struct trace_delivery d8b = { f[8].r.qid, f[8].rcpt0, "delivered", "[127.0.0.1]:10025",
		                      "250 ok", f[8].r.time + 5 };
	trace_store_delivery(ts, &d6);
	trace_store_delivery(ts, &d7);   /* recipients compare without case */
	trace_store_delivery(ts, &d8a);
	trace_store_delivery(ts, &d8b);

	for (int i = 0; i < 4; i++) {
		struct trace_reject r = {
			.time = BASE_TIME + 60 * i, .sid = "s2", .listener = "submission",
			.client_ip = i < 3 ? "203.0.113.5" : "203.0.113.6", .helo = "bot",
			.account = i < 3 ? "mallory" : "user0", .command = "AUTH",
			.rule = "auth_failed", .code = 535, .enh = "5.7.8", .text = "bad credentials",
		};
		trace_store_reject(ts, &r);
	}
	for (int i = 0; i < 2; i++) {
		struct trace_reject r = {
			.time = BASE_TIME + 30 * 3600, .listener = "mx", .client_ip = "2001:db8::99",
			.command = "RCPT", .mail_from = "x@y.example", .rcpt = "victim@else.example",
			.rule = "relay_denied", .code = 554, .enh = "5.7.1", .text = "relay denied",
		};
		trace_store_reject(ts, &r);
	}
	trace_store_close(ts);   /* writes everything queued */
	free(f);
}

/* ---- lookups ------------------------------------------------------------------ */

struct hits {
	int n;
	char qids[NSEED * 2][ID_LEN + 1];
};

static void on_hit(const struct trace_match *m, void *arg)
{
	struct hits *h = arg;
	ck_assert_int_lt(h->n, NSEED * 2);
	str_lcpy(h->qids[h->n++], m->rec.qid, ID_LEN + 1);
}

static void on_count(const struct trace_match *m, void *arg)
{
	(*(int *)arg)++;
}

static int lookup(const struct trace_query *q, struct hits *h)
{
	char err[512];
	memset(h, 0, sizeof(*h));
	int rc = trace_query_run(db_path, q, on_hit, h, err, sizeof(err));
	if (rc >= 0)
		ck_assert_int_eq(rc, h->n);
	return rc;
}

/* Checks a lookup against what the fake records say should match. */
static void expect(const struct trace_query *q, bool (*want)(const struct fake *, const void *),
                   const void *arg, int at_least)
{
	struct fake f;
	struct hits h;
	int rc = lookup(q, &h);
	ck_assert_int_ge(rc, 0);
	int expected = 0;
	for (int i = NSEED - 1; i >= 0; i--) {   /* newest first */
		fake_make(&f, i);
		if (q->since && f.r.time < q->since)
			continue;
		if (q->until && f.r.time >= q->until)
			continue;
		if (!want(&f, arg))
			continue;
		if (q->limit && expected == (int)q->limit)
			break;
		ck_assert_int_lt(expected, h.n);
		ck_assert_str_eq(h.qids[expected], f.r.qid);
		expected++;
	}
	ck_assert_int_eq(h.n, expected);
	ck_assert_int_ge(h.n, at_least);
}

static bool want_all(const struct fake *f, const void *arg) { return true; }
static bool want_account(const struct fake *f, const void *a) { return strcmp(f->account, a) == 0; }
static bool want_from(const struct fake *f, const void *a) { return strcmp(f->from, a) == 0; }
static bool want_rcpt_all(const struct fake *f, const void *a) { return f->r.nrcpts == 2; }
static bool want_index(const struct fake *f, const void *a)
{
	return strcmp(f->r.qid, a) == 0;
}
static bool want_ips(const struct fake *f, const void *a)
{
	/* a: a string of ips[] indexes, e.g. "015" */
	for (const char *p = a; *p; p++)
		if (f->r.client_ip == ips[*p - '0'])
			return true;
	return false;
}
static bool want_acct_even(const struct fake *f, const void *a)
{
	return strcmp(f->account, a) == 0 && f->r.cert_fp != NULL;
}

START_TEST(query_by_each_key)
{
	fresh_dir();
	seed();
	struct fake f5;
	fake_make(&f5, 5);
	struct trace_query q = { .qid = f5.r.qid };
	expect(&q, want_index, f5.r.qid, 1);
	q = (struct trace_query){ .trace_id = f5.r.trace_id };
	expect(&q, want_index, f5.r.qid, 1);
	q = (struct trace_query){ .message_id = "<msg5@example.org>" };
	expect(&q, want_index, f5.r.qid, 1);
	q = (struct trace_query){ .message_id = "msg5@example.org" };
	expect(&q, want_index, f5.r.qid, 1);
	q = (struct trace_query){ .account = "user1" };
	expect(&q, want_account, "user1", 4);
	q = (struct trace_query){ .account = "USER1" };
	expect(&q, want_account, "user1", 4);
	q = (struct trace_query){ .mail_from = "sender2@example.org" };
	expect(&q, want_from, "sender2@example.org", 3);
	q = (struct trace_query){ .rcpt = "all@dest.example" };
	expect(&q, want_rcpt_all, NULL, 6);
	q = (struct trace_query){ .rcpt = "Rcpt5@Dest.Example" };
	expect(&q, want_index, f5.r.qid, 1);

	/* fingerprints: as stored, with colons, in capitals */
	struct fake f4;
	fake_make(&f4, 4);
	char colons[200] = "";
	for (int i = 0; i < 64; i += 2)
		snprintf(colons + strlen(colons), sizeof(colons) - strlen(colons), "%s%c%c",
		         i ? ":" : "", f4.fp[i] - (f4.fp[i] >= 'a' ? 32 : 0), f4.fp[i + 1]);
	q = (struct trace_query){ .cert_fp = f4.fp };
	expect(&q, want_index, f4.r.qid, 1);
	q = (struct trace_query){ .cert_fp = colons };
	expect(&q, want_index, f4.r.qid, 1);

	/* nothing, and a bad filter */
	struct hits h;
	q = (struct trace_query){ .account = "nobody" };
	ck_assert_int_eq(lookup(&q, &h), 0);
	q = (struct trace_query){ .cert_fp = "abcd" };
	ck_assert_int_eq(lookup(&q, &h), -EINVAL);
	remove_tree(dir);
}
END_TEST

START_TEST(query_cidr)
{
	fresh_dir();
	seed();
	struct trace_query q = { .client_ip = "192.0.2.1" };
	expect(&q, want_ips, "0", 2);
	q.client_ip = "192.0.2.0/24";       /* IPv4-mapped clients are IPv4 clients */
	expect(&q, want_ips, "015", 6);
	q.client_ip = "192.0.2.128/25";
	expect(&q, want_ips, "1", 2);
	q.client_ip = "0.0.0.0/0";
	expect(&q, want_ips, "0125", 8);
	q.client_ip = "2001:db8::/32";
	expect(&q, want_ips, "34", 4);
	q.client_ip = "2001:db8::/48";
	expect(&q, want_ips, "3", 2);
	q.client_ip = "[2001:db8::1]";
	expect(&q, want_ips, "3", 2);
	q.client_ip = "2001:db8:1::/64";
	expect(&q, want_ips, "4", 2);
	q.client_ip = "::ffff:192.0.2.9";
	expect(&q, want_ips, "5", 2);
	q.client_ip = "::/0";
	expect(&q, want_all, NULL, NSEED);
	struct hits h;
	static const char *const bad[] = { "192.0.2.0/33", "2001:db8::/129", "192.0.2.0/",
		                           "192.0.2.0/-1", "host.example", "", "1.2.3.4/8x" };
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		q.client_ip = bad[i];
		ck_assert_msg(lookup(&q, &h) == -EINVAL, "accepted %s", bad[i]);
	}
	remove_tree(dir);
}
END_TEST

START_TEST(query_time_and_combinations)
{
	fresh_dir();
	seed();
	struct trace_query q = { .since = BASE_TIME + 3 * 3600 };
	expect(&q, want_all, NULL, 9);
	q = (struct trace_query){ .until = BASE_TIME + 3 * 3600 };
	expect(&q, want_all, NULL, 3);
	q = (struct trace_query){ .since = BASE_TIME + 2 * 3600, .until = BASE_TIME + 5 * 3600 };
	expect(&q, want_all, NULL, 3);
	q = (struct trace_query){ .limit = 4 };
	expect(&q, want_all, NULL, 4);
	q = (struct trace_query){ .account = "user0", .since = BASE_TIME + 4 * 3600 };
	expect(&q, want_account, "user0", 2);
	q = (struct trace_query){ .account = "user1", .client_ip = "192.0.2.0/24" };
	struct hits h;
	ck_assert_int_eq(lookup(&q, &h), 2);   /* records 1 and 7 */
	/* account AND rcpt: user0 is records 0,3,6,9; "all@" the even ones */
	q = (struct trace_query){ .account = "user0", .rcpt = "all@dest.example" };
	expect(&q, want_acct_even, "user0", 2);
	q = (struct trace_query){ .account = "user0", .rcpt = "all@dest.example", .limit = 1 };
	expect(&q, want_acct_even, "user0", 1);
	q = (struct trace_query){ .account = "user2", .mail_from = "sender3@example.org",
		                  .client_ip = "2001:db8::/32", .since = BASE_TIME,
		                  .until = BASE_TIME + NSEED * 3600 };
	ck_assert_int_eq(lookup(&q, &h), 0);   /* user2 = 2,5,8,11; sender3 = 3,7,11: ip[5] */
	q.client_ip = "192.0.2.9";
	ck_assert_int_eq(lookup(&q, &h), 1);
	remove_tree(dir);
}
END_TEST

/* Everything stored comes back, with each recipient's delivery result. */
struct full {
	int n;
	bool ok;
};

static void on_full(const struct trace_match *m, void *arg)
{
	struct full *fu = arg;
	struct fake f;
	fake_make(&f, 8);
	const struct trace_record *r = &m->rec;
	fu->n++;
	ck_assert_str_eq(r->qid, f.r.qid);
	ck_assert_str_eq(r->trace_id, f.r.trace_id);
	ck_assert_int_eq(r->time, f.r.time);
	ck_assert_str_eq(r->sid, "s1");
	ck_assert_str_eq(r->listener, "submission");
	ck_assert_str_eq(r->client_ip, "198.51.100.7");
	ck_assert_uint_eq(r->client_port, 40008);
	ck_assert_str_eq(r->reverse_name, "client.example.net");
	ck_assert_str_eq(r->helo, "laptop");
	ck_assert_str_eq(r->tls_version, "TLSv1.3");
	ck_assert_str_eq(r->tls_cipher, "TLS_AES_256_GCM_SHA384");
	ck_assert_str_eq(r->tls_sni, "mail.example.org");
	ck_assert_str_eq(r->cert_fp, f.fp);
	ck_assert_str_eq(r->cert_subject, "CN=client");
	ck_assert_str_eq(r->cert_issuer, "CN=Example CA");
	ck_assert_str_eq(r->sasl_mech, "PLAIN");
	ck_assert_str_eq(r->account, "user2");
	ck_assert_str_eq(r->mail_from, "sender0@example.org");
	ck_assert_uint_eq(r->size, 9000);
	ck_assert_str_eq(r->body_sha256, f.r.body_sha256);
	ck_assert_str_eq(r->message_id, "<msg8@example.org>");
	ck_assert_ptr_null(r->smime_status);
	ck_assert_str_eq(r->trust_class, "authenticated");
	ck_assert_uint_eq(r->nrcpts, 2);
	ck_assert_uint_eq(m->nrcpts, 2);
	ck_assert_str_eq(r->rcpts[0], "rcpt8@dest.example");
	ck_assert_str_eq(r->rcpts[1], "all@dest.example");
	ck_assert_str_eq(m->rcpts[0].rcpt, "rcpt8@dest.example");
	ck_assert_str_eq(m->rcpts[0].status, "delivered");   /* the latest result */
	ck_assert_str_eq(m->rcpts[0].relay, "[127.0.0.1]:10025");
	ck_assert_str_eq(m->rcpts[0].reply, "250 ok");
	ck_assert_int_eq(m->rcpts[0].time, f.r.time + 5);
	ck_assert_str_eq(m->rcpts[1].status, "queued");
	ck_assert_ptr_null(m->rcpts[1].relay);
	ck_assert_int_eq(m->rcpts[1].time, 0);
	fu->ok = true;
}

/* The start-up check asks for many queue ids in one read. */
START_TEST(known_qids)
{
	fresh_dir();
	seed();
	struct fake a, b;
	fake_make(&a, 3);
	fake_make(&b, NSEED - 1);
	const char *qids[] = { a.r.qid, "QNOTINTHESTORE01", b.r.qid, "" };
	bool known[4] = { false, true, false, true };
	char err[512];
	ck_assert_int_eq(trace_known_qids(db_path, qids, 4, known, err, sizeof(err)), 0);
	ck_assert(known[0] && !known[1] && known[2] && !known[3]);
	char missing[PATH_MAX + 16];
	snprintf(missing, sizeof(missing), "%s/none.db", dir);
	ck_assert_int_eq(trace_known_qids(missing, qids, 4, known, err, sizeof(err)), -EIO);
	ck_assert_ptr_nonnull(strstr(err, "none.db"));
	remove_tree(dir);
}
END_TEST

START_TEST(record_roundtrip)
{
	fresh_dir();
	seed();
	struct fake f;
	fake_make(&f, 8);
	struct trace_query q = { .qid = f.r.qid };
	struct full fu = { 0 };
	char err[512];
	ck_assert_int_eq(trace_query_run(db_path, &q, on_full, &fu, err, sizeof(err)), 1);
	ck_assert(fu.ok);
	/* refusals are stored whole too */
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*), min(code), max(text) FROM rejects"
	                                        " WHERE rule = 'relay_denied'"
	                                        " AND rcpt = 'victim@else.example'",
	                                    -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(st, 0), 2);
	ck_assert_int_eq(sqlite3_column_int(st, 1), 554);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 2), "relay denied");
	sqlite3_finalize(st);
	sqlite3_close(db);
	remove_tree(dir);
}
END_TEST

/* ---- the writer ---------------------------------------------------------------- */

/* Once written, a record is there for every other connection; the store
 * kept copies, not the caller's strings. */
START_TEST(visible_when_written)
{
	struct trace_store *ts = fresh_store();
	struct fake *f = fakes_make(20);
	struct trace_entry *v[20];
	for (size_t i = 0; i < 20; i++)
		v[i] = trace_entry_new(&f[i].r);
	snprintf(f[0].account, sizeof(f[0].account), "changed");
	f[0].rcpt0[0] = 'X';
	trace_store_write(ts, v, 20);
	for (size_t i = 0; i < 20; i++) {
		ck_assert_int_eq(trace_entry_status(v[i]), 0);
		ck_assert(row_visible(f[i].r.qid));
		trace_entry_free(v[i]);
	}
	trace_store_close(ts);
	struct trace_query q = { .account = "user0", .rcpt = "rcpt0@dest.example" };
	struct hits h;
	ck_assert_int_eq(lookup(&q, &h), 1);
	ck_assert_str_eq(h.qids[0], f[0].r.qid);
	free(f);
	remove_tree(dir);
}
END_TEST

static int db_count(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	int n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}

static int rcpts_of(const struct fake *f, int n)
{
	int total = 0;
	for (int i = 0; i < n; i++)
		total += (int)f[i].r.nrcpts;
	return total;
}

/* One bad record (a queue id seen before) fails alone; its batch lives. */
START_TEST(bad_record_fails_alone)
{
	struct trace_store *ts = fresh_store();
	struct fake *f = fakes_make(5);
	memcpy(f[3].r.qid, f[1].r.qid, sizeof(f[1].r.qid));
	int status[5];
	write_all(ts, f, 5, status, false);
	ck_assert_int_eq(status[0], 0);
	ck_assert_int_eq(status[1], 0);
	ck_assert_int_eq(status[2], 0);
	ck_assert_int_eq(status[3], -EIO);
	ck_assert_int_eq(status[4], 0);
	trace_store_close(ts);
	struct trace_query q = { 0 };
	struct hits h;
	ck_assert_int_eq(lookup(&q, &h), 4);
	/* Nothing of the refused record is left: no recipient row without
	 * its message, and the first record keeps only its own recipients. */
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	ck_assert_int_eq(db_count(db, "SELECT count(*) FROM message_rcpts"
	                              " WHERE message NOT IN (SELECT id FROM messages)"), 0);
	ck_assert_int_eq(db_count(db, "SELECT count(*) FROM message_rcpts"), rcpts_of(f, 5) -
	                 (int)f[3].r.nrcpts);
	sqlite3_close(db);
	free(f);
	remove_tree(dir);
}
END_TEST

/* A recipient that cannot be written after its message row (here a
 * trigger refuses it) leaves no half record: the batch is rolled back,
 * its records fail, and the store goes on working. */
START_TEST(failed_recipient_leaves_no_half_record)
{
	char err[512];
	struct trace_store *ts = fresh_store();
	trace_store_close(ts);
	struct fake *f = fakes_make(3);
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	char *sql = sqlite3_mprintf("CREATE TRIGGER refuse BEFORE INSERT ON message_rcpts"
	                            " WHEN NEW.rcpt = %Q BEGIN SELECT RAISE(ABORT, 'refused'); END",
	                            f[1].r.rcpts[0]);
	ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_free(sql);
	sqlite3_close(db);

	ts = trace_store_open(db_path, err, sizeof(err));
	ck_assert_msg(ts != NULL, "%s", err);
	int status[2];
	write_all(ts, f, 2, status, false);
	ck_assert_int_eq(status[0], -EIO);   /* the whole batch */
	ck_assert_int_eq(status[1], -EIO);
	write_all(ts, f + 2, 1, status, false);   /* the store still writes */
	ck_assert_int_eq(status[0], 0);
	trace_store_close(ts);

	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	char q[128];
	snprintf(q, sizeof(q), "SELECT count(*) FROM messages WHERE qid = '%s'", f[1].r.qid);
	ck_assert_int_eq(db_count(db, q), 0);
	ck_assert_int_eq(db_count(db, "SELECT count(*) FROM message_rcpts"
	                              " WHERE message NOT IN (SELECT id FROM messages)"), 0);
	snprintf(q, sizeof(q), "SELECT count(*) FROM messages WHERE qid = '%s'", f[2].r.qid);
	ck_assert_int_eq(db_count(db, q), 1);
	sqlite3_close(db);
	free(f);
	remove_tree(dir);
}
END_TEST

/* One call, one transaction, whatever its size; refusals and delivery
 * results waiting meanwhile ride along in it. */
START_TEST(group_commit)
{
	char err[512];
	enum { N = 1000 };
	struct fake *f;
	struct trace_store *ts = store_with_first(&f, N + 1);
	int *status = xcalloc(N + 1, sizeof(*status));
	struct trace_delivery d = { f[0].r.qid, f[0].rcpt0, "delivered", "[127.0.0.1]:10025",
		                    "250 2.0.0 ok", BASE_TIME + 5 };
	trace_store_delivery(ts, &d);
	struct trace_reject rj = { .time = BASE_TIME, .client_ip = "192.0.2.66",
		                   .command = "AUTH", .rule = "auth_failed", .code = 535 };
	trace_store_reject(ts, &rj);
	uint64_t before = trace__store_commits(ts);
	double t0 = now_ms();
	write_all(ts, f + 1, N, status, false);
	double t1 = now_ms();
	uint64_t batches = trace__store_commits(ts) - before;
	for (size_t i = 0; i < N; i++)
		ck_assert_int_eq(status[i], 0);
	printf("group commit: %d records in %llu transaction(s), %.1f ms\n", N,
	       (unsigned long long)batches, t1 - t0);
	ck_assert_uint_eq(batches, 1);
	/* well before the store's own thread would have written them */
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	ck_assert_int_eq(db_count(db, "SELECT count(*) FROM rejects WHERE rule = 'auth_failed'"), 1);
	ck_assert_int_eq(db_count(db, "SELECT count(*) FROM message_rcpts WHERE status = 'delivered'"),
	                 1);
	sqlite3_close(db);
	trace_store_close(ts);
	struct trace_query q = { 0 };
	int n = 0;
	ck_assert_int_eq(trace_query_run(db_path, &q, on_count, &n, err, sizeof(err)), N + 1);
	ck_assert_int_eq(n, N + 1);
	free(status);
	free(f);
	remove_tree(dir);
}
END_TEST

/* A record whose queue file failed after it was written is taken back,
 * recipients and all, even when the first transaction to carry the
 * retraction fails; the others stay, and an unknown queue id is no harm. */
START_TEST(retract)
{
	struct trace_store *ts = fresh_store();
	struct fake *f = fakes_make(3);
	int status[3];
	write_all(ts, f, 3, status, false);
	trace_store_retract(ts, "Q0NOSUCHQUEUEID0");
	/* A transaction that fails keeps the retraction for the next one (the
	 * batch comes well within the 100 ms a retraction waits for one). */
	int more[1];
	struct fake *g = fakes_make(4);
	trace_store_retract(ts, f[0].r.qid);
	ck_assert_int_eq(write_all(ts, g + 3, 1, more, true), -EIO);
	ck_assert_int_eq(more[0], -EIO);
	ck_assert(row_visible(f[0].r.qid));
	ck_assert_int_eq(trace_store_write(ts, NULL, 0), 0);   /* an empty batch: a transaction to wait for */
	ck_assert(!row_visible(f[0].r.qid));
	trace_store_close(ts);
	free(g);
	struct trace_query q = { 0 };
	struct hits h;
	ck_assert_int_eq(lookup(&q, &h), 2);
	ck_assert(!row_visible(f[0].r.qid));
	ck_assert(row_visible(f[1].r.qid));
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	ck_assert_int_eq(db_count(db, "SELECT count(*) FROM message_rcpts"),
	                 (int)(f[1].r.nrcpts + f[2].r.nrcpts));
	sqlite3_close(db);
	free(f);
	remove_tree(dir);
}
END_TEST

/* With no record to ride with, a delivery result is written by the
 * store's own thread, soon. */
START_TEST(lazy_items_written_alone)
{
	struct fake *f;
	struct trace_store *ts = store_with_first(&f, 1);
	struct trace_delivery d = { f[0].r.qid, f[0].rcpt0, "bounced", "[127.0.0.1]:10025",
		                    "550 5.1.1 no", BASE_TIME + 5 };
	trace_store_delivery(ts, &d);
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	int seen = 0;
	for (int i = 0; i < 300 && !seen; i++) {
		usleep(10000);
		seen = db_count(db, "SELECT count(*) FROM message_rcpts WHERE status = 'bounced'");
	}
	ck_assert_int_eq(seen, 1);
	sqlite3_close(db);
	trace_store_close(ts);
	free(f);
	remove_tree(dir);
}
END_TEST

/* Two threads writing at once: batches submitted while another is being
 * written share the next transaction; nothing is lost. */
struct writer_arg {
	struct trace_store *ts;
	struct fake *f;
	int status[50];
};

static void *writer_thread(void *arg)
{
	struct writer_arg *wa = arg;
	for (size_t i = 0; i < 50; i += 5) {
		struct trace_entry *v[5];
		for (size_t j = 0; j < 5; j++)
			v[j] = trace_entry_new(&wa->f[i + j].r);
		trace_store_write(wa->ts, v, 5);
		for (size_t j = 0; j < 5; j++) {
			wa->status[i + j] = trace_entry_status(v[j]);
			trace_entry_free(v[j]);
		}
	}
	return NULL;
}

START_TEST(two_writers)
{
	char err[512];
	struct trace_store *ts = fresh_store();
	struct fake *f = fakes_make(100);
	struct writer_arg a = { .ts = ts, .f = f }, b = { .ts = ts, .f = f + 50 };
	pthread_t ta, tb;
	ck_assert_int_eq(pthread_create(&ta, NULL, writer_thread, &a), 0);
	ck_assert_int_eq(pthread_create(&tb, NULL, writer_thread, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	for (size_t i = 0; i < 50; i++) {
		ck_assert_int_eq(a.status[i], 0);
		ck_assert_int_eq(b.status[i], 0);
	}
	uint64_t commits = trace__store_commits(ts);
	ck_assert_uint_ge(commits, 1);
	ck_assert_uint_le(commits, 20);
	trace_store_close(ts);
	struct trace_query q = { 0 };
	int n = 0;
	ck_assert_int_eq(trace_query_run(db_path, &q, on_count, &n, err, sizeof(err)), 100);
	free(f);
	remove_tree(dir);
}
END_TEST

/* The disk refuses to grow (as when it is full): every record of the batch
 * hears -EIO, and the store works again once the disk does. */
START_TEST(write_failure_reaches_owner)
{
	struct fake *f;
	struct trace_store *ts = store_with_first(&f, 6);
	int status[4];

	write_all(ts, f + 1, 4, status, true);
	for (size_t i = 0; i < 4; i++)
		ck_assert_int_eq(status[i], -EIO);

	write_all(ts, f + 5, 1, status, false);
	ck_assert_int_eq(status[0], 0);
	ck_assert(row_visible(f[5].r.qid));
	trace_store_close(ts);

	struct hits h;
	struct trace_query q = { 0 };
	ck_assert_int_eq(lookup(&q, &h), 2);
	ck_assert_str_eq(h.qids[0], f[5].r.qid);
	ck_assert_str_eq(h.qids[1], f[0].r.qid);
	free(f);
	remove_tree(dir);
}
END_TEST

START_TEST(open_errors)
{
	fresh_dir();
	char err[512], path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/missing/trace.db", dir);
	ck_assert_ptr_null(trace_store_open(path, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, path));
	struct trace_query q = { 0 };
	struct hits h;
	memset(&h, 0, sizeof(h));
	ck_assert_int_eq(trace_query_run(db_path, &q, on_hit, &h, err, sizeof(err)), -EIO);
	uint64_t m, r;
	ck_assert_int_eq(trace_prune(db_path, BASE_TIME, &m, &r, err, sizeof(err)), -EIO);
	struct trace_stats st;
	ck_assert_int_eq(trace_stats_run(db_path, 0, 0, 10, &st, err, sizeof(err)), -EIO);
	trace_stats_free(&st);

	/* a read-only file: root writes anyway, so only others can see this */
	struct trace_store *ts = trace_store_open(db_path, err, sizeof(err));
	ck_assert(ts != NULL);
	trace_store_close(ts);
	if (geteuid() != 0) {
		ck_assert_int_eq(chmod(db_path, 0444), 0);
		ck_assert_ptr_null(trace_store_open(db_path, err, sizeof(err)));
		ck_assert_ptr_nonnull(strstr(err, "read-only"));
		chmod(db_path, 0644);
	}
	remove_tree(dir);
}
END_TEST

static void make_db(const char *sql)
{
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static int64_t db_int(const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

START_TEST(migration)
{
	char err[512];
	struct trace_store *ts;
	struct trace_query q = { 0 };
	struct hits h;

	/* version 0, no tables: created by an older Postern before its first
	 * record, or by hand */
	fresh_dir();
	make_db("PRAGMA user_version = 0; CREATE TABLE x (a); DROP TABLE x;");
	ck_assert_int_eq(lookup(&q, &h), -EIO);     /* lookups do not migrate */
	ts = trace_store_open(db_path, err, sizeof(err));
	ck_assert_msg(ts != NULL, "%s", err);
	trace_store_close(ts);
	ck_assert_int_eq(db_int("PRAGMA user_version"), TRACE__SCHEMA_VERSION);
	ck_assert_int_eq(db_int("SELECT count(*) FROM sqlite_master WHERE type = 'index'"
	                        " AND name LIKE 'messages_%'"), 8);
	ck_assert_int_eq(db_int("SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
	ck_assert_int_eq(lookup(&q, &h), 0);
	/* again: nothing to do, nothing lost */
	seed();
	ts = trace_store_open(db_path, err, sizeof(err));
	ck_assert(ts != NULL);
	trace_store_close(ts);
	ck_assert_int_eq(lookup(&q, &h), NSEED);
	remove_tree(dir);

	/* someone else's database */
	fresh_dir();
	make_db("CREATE TABLE other (a)");
	ck_assert_ptr_null(trace_store_open(db_path, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "not a Postern trace database"));
	remove_tree(dir);

	/* a newer Postern's */
	fresh_dir();
	make_db("PRAGMA user_version = 99; CREATE TABLE messages (a)");
	ck_assert_ptr_null(trace_store_open(db_path, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "newer"));
	ck_assert_int_eq(trace_query_run(db_path, &q, on_hit, &h, err, sizeof(err)), -EIO);
	ck_assert_ptr_nonnull(strstr(err, "newer"));
	remove_tree(dir);
}
END_TEST

/* recipients in the order given, as a comma-separated list */
static void on_rcpts(const struct trace_match *m, void *arg)
{
	char *out = arg;
	for (size_t i = 0; i < m->nrcpts; i++) {
		strcat(out, m->rcpts[i].rcpt);
		strcat(out, ",");
		strcat(out, m->rcpts[i].status);
		strcat(out, ";");
	}
}

/* A version 1 database with records keeps them all through the migration
 * to version 2: recipients in their order with their delivery results,
 * lookups by certificate and account, and the new form of the tables. */
START_TEST(migration_from_v1)
{
	fresh_dir();
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, trace__migration(0), NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db,
		"PRAGMA user_version = 1;"
		"INSERT INTO messages (id, qid, trace_id, time, client_ip, client_ip_key, cert_fp,"
		" account, mail_from, size) VALUES"
		" (1, 'Q1', 'T1', 1700000000, '192.0.2.1', '00000000000000000000ffffc0000201',"
		"  'abababababababababababababababababababababababababababababababab', 'alice', 'a@example.org', 10),"
		" (2, 'Q2', 'T2', 1700000001, '192.0.2.2', '00000000000000000000ffffc0000202',"
		"  NULL, NULL, 'b@example.net', 20);"
		"INSERT INTO message_rcpts (message, rcpt, status) VALUES"
		" (1, 'zed@dest.example', 'delivered'), (1, 'amy@dest.example', 'bounced'),"
		" (2, 'bob@dest.example', 'queued');", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	char err[512];
	struct trace_store *ts = trace_store_open(db_path, err, sizeof(err));
	ck_assert_msg(ts != NULL, "%s", err);
	trace_store_close(ts);
	ck_assert_int_eq(db_int("PRAGMA user_version"), 2);
	ck_assert_int_eq(db_int("SELECT count(*) FROM sqlite_master WHERE name = 'message_rcpts'"
	                        " AND sql LIKE '%WITHOUT ROWID%'"), 1);
	ck_assert_int_eq(db_int("SELECT count(*) FROM sqlite_master WHERE name = 'messages_cert_fp'"
	                        " AND sql LIKE '%WHERE cert_fp IS NOT NULL%'"), 1);
	ck_assert_int_eq(db_int("SELECT count(*) FROM sqlite_master"
	                        " WHERE name = 'message_rcpts_rcpt'"), 1);
	ck_assert_int_eq(db_int("SELECT count(*) FROM sqlite_master WHERE type = 'index'"
	                        " AND name LIKE 'messages_%'"), 8);

	char rcpts[256] = "";
	struct trace_query q = { .cert_fp = "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB", .account = "ALICE" };
	ck_assert_int_eq(trace_query_run(db_path, &q, on_rcpts, rcpts, err, sizeof(err)), 1);
	ck_assert_str_eq(rcpts, "zed@dest.example,delivered;amy@dest.example,bounced;");
	struct hits h;
	q = (struct trace_query){ .rcpt = "Bob@Dest.Example" };
	ck_assert_int_eq(lookup(&q, &h), 1);
	ck_assert_str_eq(h.qids[0], "Q2");
	q = (struct trace_query){ 0 };
	ck_assert_int_eq(lookup(&q, &h), 2);
	remove_tree(dir);
}
END_TEST

START_TEST(prune)
{
	fresh_dir();
	seed();
	/* more than one chunk of old messages */
	make_db("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 11000)"
	        " INSERT INTO messages (qid, trace_id, time, size)"
	        " SELECT printf('OLD%013d', i), printf('old%023d', i), 1600000000 + i, 10 FROM n;"
	        "INSERT INTO message_rcpts (message, rcpt)"
	        " SELECT id, 'old@dest.example' FROM messages WHERE qid LIKE 'OLD%';");
	char err[512];
	uint64_t m, r;
	ck_assert_int_eq(trace_prune(db_path, BASE_TIME + 6 * 3600, &m, &r, err, sizeof(err)), 0);
	ck_assert_uint_eq(m, 11000 + 6);
	ck_assert_uint_eq(r, 4);
	ck_assert_int_eq(db_int("SELECT count(*) FROM messages"), 6);
	ck_assert_int_eq(db_int("SELECT min(time) FROM messages"), BASE_TIME + 6 * 3600);
	ck_assert_int_eq(db_int("SELECT count(*) FROM message_rcpts WHERE message NOT IN"
	                        " (SELECT id FROM messages)"), 0);
	ck_assert_int_eq(db_int("SELECT count(*) FROM message_rcpts"), 9);
	ck_assert_int_eq(db_int("SELECT count(*) FROM rejects"), 2);
	ck_assert_int_eq(trace_prune(db_path, BASE_TIME, &m, &r, err, sizeof(err)), 0);
	ck_assert_uint_eq(m, 0);
	ck_assert_uint_eq(r, 0);
	remove_tree(dir);
}
END_TEST

static void expect_count(const struct trace_counts *c, size_t i, const char *key,
                         uint64_t count, uint64_t bytes)
{
	ck_assert_uint_gt(c->n, i);
	ck_assert_str_eq(c->v[i].key, key);
	ck_assert_uint_eq(c->v[i].count, count);
	ck_assert_uint_eq(c->v[i].bytes, bytes);
}

START_TEST(stats)
{
	fresh_dir();
	seed();
	char err[512];
	struct trace_stats st;
	ck_assert_int_eq(trace_stats_run(db_path, 0, 0, 10, &st, err, sizeof(err)), 0);
	ck_assert_uint_eq(st.messages, 12);
	ck_assert_uint_eq(st.bytes, 78000);
	ck_assert_uint_eq(st.recipients, 18);
	ck_assert_uint_eq(st.rejects, 6);
	ck_assert_uint_eq(st.accepted_by_listener.n, 2);
	expect_count(&st.accepted_by_listener, 0, "smtps", 6, 42000);
	expect_count(&st.accepted_by_listener, 1, "submission", 6, 36000);
	ck_assert_uint_eq(st.rejected_by_rule.n, 2);
	expect_count(&st.rejected_by_rule, 0, "auth_failed", 4, 0);
	expect_count(&st.rejected_by_rule, 1, "relay_denied", 2, 0);
	expect_count(&st.rejected_by_listener, 0, "submission", 4, 0);
	expect_count(&st.rejected_by_listener, 1, "mx", 2, 0);
	ck_assert_uint_eq(st.auth_failures_by_account.n, 2);
	expect_count(&st.auth_failures_by_account, 0, "mallory", 3, 0);
	expect_count(&st.auth_failures_by_account, 1, "user0", 1, 0);
	expect_count(&st.auth_failures_by_ip, 0, "203.0.113.5", 3, 0);
	expect_count(&st.auth_failures_by_ip, 1, "203.0.113.6", 1, 0);
	ck_assert_uint_eq(st.top_accounts.n, 3);
	expect_count(&st.top_accounts, 0, "user2", 4, 30000);
	expect_count(&st.top_accounts, 2, "user0", 4, 22000);
	expect_count(&st.top_accounts_by_bytes, 0, "user2", 4, 30000);
	ck_assert_uint_eq(st.top_ips.n, 6);
	expect_count(&st.top_ips, 0, "::ffff:192.0.2.9", 2, 18000);
	expect_count(&st.top_ips_by_bytes, 5, "192.0.2.1", 2, 8000);
	expect_count(&st.tls_versions, 0, "TLSv1.3", 8, 56000);
	expect_count(&st.tls_versions, 1, "TLSv1.2", 4, 22000);
	expect_count(&st.tls_ciphers, 0, "TLS_AES_256_GCM_SHA384", 8, 56000);
	ck_assert_uint_eq(st.delivered, 7);
	ck_assert_uint_eq(st.deferred, 1);
	ck_assert_uint_eq(st.bounced, 1);
	ck_assert_uint_eq(st.queued, 9);
	ck_assert_int_eq(st.delay_median, 30);
	ck_assert_int_eq(st.delay_p99, 60);
	trace_stats_free(&st);

	/* a window, and a shorter "top" */
	ck_assert_int_eq(trace_stats_run(db_path, BASE_TIME + 6 * 3600, 0, 2, &st, err,
	                                 sizeof(err)), 0);
	ck_assert_uint_eq(st.messages, 6);
	ck_assert_uint_eq(st.rejects, 2);
	ck_assert_uint_eq(st.top_ips.n, 2);
	ck_assert_uint_eq(st.tls_versions.n, 2);   /* not a "top" list */
	ck_assert_uint_eq(st.delivered, 1);
	ck_assert_uint_eq(st.deferred, 1);
	ck_assert_uint_eq(st.bounced, 1);
	ck_assert_int_eq(st.delay_median, 5);
	ck_assert_int_eq(st.delay_p99, 5);
	trace_stats_free(&st);

	/* an empty window */
	ck_assert_int_eq(trace_stats_run(db_path, 1, 2, 10, &st, err, sizeof(err)), 0);
	ck_assert_uint_eq(st.messages, 0);
	ck_assert_uint_eq(st.top_accounts.n, 0);
	ck_assert_int_eq(st.delay_median, -1);
	trace_stats_free(&st);
	remove_tree(dir);
}
END_TEST

/* ---- a million records ------------------------------------------------------- */

static double time_lookup(const struct trace_query *q, int *n)
{
	char err[512];
	double best = 1e9;
	for (int i = 0; i < 3; i++) {
		*n = 0;
		double t0 = now_ms();
		int rc = trace_query_run(db_path, q, on_count, n, err, sizeof(err));
		double t = now_ms() - t0;
		ck_assert_msg(rc >= 0, "%s", err);
		best = t < best ? t : best;
	}
	return best;
}

START_TEST(million_records)
{
	struct trace_store *ts = fresh_store();
	trace_store_close(ts);
	double t0 = now_ms();
	/* test data, not mail: no need to fsync it */
	make_db("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144; BEGIN;"
	        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)"
	        " INSERT INTO messages (qid, trace_id, time, listener, client_ip, client_ip_key,"
	        " client_port, tls_version, account, mail_from, size, message_id)"
	        " SELECT printf('B%015d', i), printf('b%025d', i), 1600000000 + i * 30,"
	        " 'submission', printf('10.%d.%d.%d', (i >> 16) & 255, (i >> 8) & 255, i & 255),"
	        " printf('00000000000000000000ffff0a%06x', i & 16777215), 1024 + i % 50000,"
	        " 'TLSv1.3', printf('acct%d', i % 10000), printf('from%d@example.org', i % 20000),"
	        " 1000 + i % 5000, printf('<m%d@example.org>', i) FROM n;"
	        "INSERT INTO message_rcpts (message, rcpt)"
	        " SELECT id, printf('r%d@dest.example', id % 100000) FROM messages;"
	        "INSERT INTO message_rcpts (message, rcpt)"
	        " SELECT id, printf('team%d@dest.example', id % 7) FROM messages WHERE id % 3 = 0;"
	        "COMMIT;");
	double gen = now_ms() - t0;
	int n;
	struct trace_query q = { .account = "acct1234" };
	double by_account = time_lookup(&q, &n);
	ck_assert_int_eq(n, 100);
	printf("1M records: generated in %.1f s\n", gen / 1e3);
	printf("1M records: lookup by account: %.2f ms (%d matches)\n", by_account, n);
	q = (struct trace_query){ .rcpt = "r4321@dest.example" };
	double by_rcpt = time_lookup(&q, &n);
	ck_assert_int_eq(n, 10);
	printf("1M records: lookup by rcpt: %.2f ms (%d matches)\n", by_rcpt, n);
	q = (struct trace_query){ .client_ip = "10.1.2.0/24" };
	double by_cidr = time_lookup(&q, &n);
	ck_assert_int_eq(n, 256);
	printf("1M records: lookup by CIDR /24: %.2f ms (%d matches)\n", by_cidr, n);
	q = (struct trace_query){ .account = "acct1234", .since = 1600000000 + 500000 * 30,
		                  .limit = 10 };
	double combined = time_lookup(&q, &n);
	ck_assert_int_eq(n, 10);
	printf("1M records: account + since + limit: %.2f ms (%d matches)\n", combined, n);
	q = (struct trace_query){ .message_id = "m777777@example.org" };
	double by_mid = time_lookup(&q, &n);
	ck_assert_int_eq(n, 1);
	printf("1M records: lookup by Message-ID: %.2f ms\n", by_mid);
	remove_tree(dir);
}
END_TEST

static Suite *trace_suite(void)
{
	Suite *s = suite_create("trace_store");
	TCase *w = tcase_create("writer");
	tcase_set_timeout(w, 60);
	tcase_add_test(w, visible_when_written);
	tcase_add_test(w, bad_record_fails_alone);
	tcase_add_test(w, failed_recipient_leaves_no_half_record);
	tcase_add_test(w, group_commit);
	tcase_add_test(w, lazy_items_written_alone);
	tcase_add_test(w, retract);
	tcase_add_test(w, two_writers);
	tcase_add_test(w, write_failure_reaches_owner);
	tcase_add_test(w, open_errors);
	tcase_add_test(w, migration);
	tcase_add_test(w, migration_from_v1);
	suite_add_tcase(s, w);
	TCase *r = tcase_create("reader");
	tcase_set_timeout(r, 60);
	tcase_add_test(r, query_by_each_key);
	tcase_add_test(r, query_cidr);
	tcase_add_test(r, query_time_and_combinations);
	tcase_add_test(r, record_roundtrip);
	tcase_add_test(r, known_qids);
	tcase_add_test(r, prune);
	tcase_add_test(r, stats);
	suite_add_tcase(s, r);
	if (getenv("POSTERN_BIG_TRACE_TEST")) {
		TCase *big = tcase_create("big");
		tcase_set_timeout(big, 600);
		tcase_add_test(big, million_records);
		suite_add_tcase(s, big);
	}
	return s;
}

int main(void)
{
	log_open("test_trace_store", false,
	         getenv("TEST_VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN);
	strcpy(base, "/tmp/test_trace_store.XXXXXX");
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	SRunner *sr = srunner_create(trace_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	remove_tree(base);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
