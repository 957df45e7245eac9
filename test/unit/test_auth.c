/*
 * test_auth.c - unit tests for auth/: a real sasldb is created at test
 * time with saslpasswd2 in a mkdtemp directory, then PLAIN, LOGIN,
 * SCRAM-SHA-256 (client side by Cyrus's own client API) and EXTERNAL run
 * against it, including failures and several threads at once.
 *
 * The credential cache (auth/cache.c) is tested against sasldbs of its
 * own, made at start and left alone until they are old enough to be
 * cached from; each test that changes one has its own.
 *
 * Accounts: saslpasswd2 stores user@realm. A name without '@' is looked up
 * in the realm given as server_fqdn to auth_session_new(), so "alice" is
 * created with -u FQDN; "alice@example.org" is created with -u example.org
 * and works whatever the server_fqdn.
 */
#include "auth/auth.h"
#include "auth/cache.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sasl/sasl.h>
#include <sasl/saslutil.h>

#ifndef SASLPASSWD2
#define SASLPASSWD2 "/usr/sbin/saslpasswd2"
#endif

#define FQDN "mail.test"
#define MECHS "PLAIN LOGIN SCRAM-SHA-256"
#define CB_PROC(fn) ((int (*)(void))(void (*)(void))(fn))

static char tmpdir[] = "/tmp/postern-auth-XXXXXX";
static char dbpath[sizeof(tmpdir) + 16];
static char confdir[sizeof(tmpdir) + 16];
/* For the credential cache: one shared, and one for each test that
 * changes its database. */
enum { CDB_SHARED, CDB_CHANGE, CDB_DELETE, CDB_REPLACE, CDB_STALE, CDB_COUNT };
static char cachedb[CDB_COUNT][sizeof(tmpdir) + 16];

/* ---- fixture ------------------------------------------------------------ */

/* Runs saslpasswd2 on db with the password on stdin (never on the
 * command line); pass NULL deletes the user. */
static int saslpasswd2_on(const char *db, const char *realm, const char *user, const char *pass)
{
	int fds[2];
	if (pipe(fds) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(fds[0], STDIN_FILENO);
		close(fds[0]);
		close(fds[1]);
		if (pass)
			execl(SASLPASSWD2, "saslpasswd2", "-p", "-c", "-f", db, "-u", realm, user,
			      (char *)NULL);
		else
			execl(SASLPASSWD2, "saslpasswd2", "-d", "-f", db, "-u", realm, user,
			      (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	ssize_t n = pass ? write(fds[1], pass, strlen(pass)) : 0;
	close(fds[1]);
	int status;
	if (waitpid(pid, &status, 0) < 0 || n < 0)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int add_user(const char *realm, const char *user, const char *pass)
{
	return saslpasswd2_on(dbpath, realm, user, pass);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(1);
	}
}

/* Once, in the parent: each forked test reads the same database. */
static void make_db(void)
{
	if (access(SASLPASSWD2, X_OK) != 0) {
		fprintf(stderr, "SKIP: %s not found\n", SASLPASSWD2);
		exit(77);
	}
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(dbpath, sizeof(dbpath), "%s/sasldb2", tmpdir);
	snprintf(confdir, sizeof(confdir), "%s/conf", tmpdir);
	if (add_user(FQDN, "alice", "s3cret") < 0 ||
	    add_user("example.org", "alice", "orgpass") < 0 ||
	    add_user(FQDN, "bob", "hunter2") < 0) {
		fprintf(stderr, "saslpasswd2 failed\n");
		exit(1);
	}
	for (int i = 0; i < CDB_COUNT; i++) {
		snprintf(cachedb[i], sizeof(cachedb[i]), "%s/cache%d", tmpdir, i);
		if (saslpasswd2_on(cachedb[i], FQDN, "alice", "s3cret") < 0 ||
		    saslpasswd2_on(cachedb[i], FQDN, "bob", "hunter2") < 0) {
			fprintf(stderr, "saslpasswd2 failed\n");
			exit(1);
		}
	}
	/* A Cyrus config file that only narrows the mechanisms. */
	if (mkdir(confdir, 0700) < 0) {
		perror("mkdir");
		exit(1);
	}
	char path[sizeof(confdir) + 32];
	snprintf(path, sizeof(path), "%s/postern-test.conf", confdir);
	write_file(path, "mech_list: LOGIN\npwcheck_method: auxprop\n"
	                 "auxprop_plugin: sasldb\n");
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void remove_db(void)
{
	nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void init_cache(const char *mechs, const char *db, const char *dir, bool cache)
{
	struct auth_conf conf = {
		.service = "smtp",
		.app_name = "postern-test",
		.config_dir = dir,
		.sasldb = db,
		.mech_list = mechs,
		.cache = cache,
	};
	char err[256] = "";
	ck_assert_msg(auth_init(&conf, err, sizeof(err)) == 0, "auth_init: %s", err);
}

static void init_with(const char *mechs, const char *db, const char *dir)
{
	init_cache(mechs, db, dir, false);
}

static void setup(void)
{
	init_with(MECHS, dbpath, NULL);
}

static void teardown(void)
{
	auth_shutdown();
}

/* ---- helpers ------------------------------------------------------------ */

static char *b64(const char *data, unsigned len)
{
	unsigned max = (len + 2) / 3 * 4 + 1, n;
	char *out = xmalloc(max);
	ck_assert_int_eq(sasl_encode64(data, len, out, max, &n), SASL_OK);
	return out;
}

static char *plain_response(const char *authzid, const char *user, const char *pass)
{
	struct buf raw;
	buf_init(&raw);
	buf_puts(&raw, authzid);
	buf_append(&raw, "", 1);
	buf_puts(&raw, user);
	buf_append(&raw, "", 1);
	buf_puts(&raw, pass);
	char *out = b64(raw.data, (unsigned)raw.len);
	buf_free(&raw);
	return out;
}

static struct auth_session *session_in(const char *fqdn)
{
	struct auth_session *s = auth_session_new(fqdn, "127.0.0.1;587", "127.0.0.1;40000",
	                                          256, NULL);
	ck_assert_ptr_nonnull(s);
	return s;
}

static struct auth_session *session(void)
{
	return session_in(FQDN);
}

static int plain_login(const char *user, const char *pass, struct auth_session **out)
{
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	char *ir = plain_response("", user, pass);
	int r = auth_start(s, "PLAIN", ir, &ch);
	free(ir);
	buf_free(&ch);
	if (out)
		*out = s;
	else
		auth_session_free(s);
	return r;
}

/* ---- PLAIN and LOGIN ---------------------------------------------------- */

START_TEST(plain_initial_ok)
{
	struct auth_session *s;
	ck_assert_int_eq(plain_login("alice", "s3cret", &s), AUTH_OK);
	ck_assert_str_eq(auth_username(s), "alice");
	ck_assert_str_eq(auth_mech(s), "PLAIN");
	ck_assert_str_eq(auth_attempted_user(s), "alice");
	ck_assert_ptr_null(auth_error(s));
	auth_session_free(s);
}
END_TEST

START_TEST(plain_realm_user_ok)
{
	struct auth_session *s;
	ck_assert_int_eq(plain_login("alice@example.org", "orgpass", &s), AUTH_OK);
	ck_assert_str_eq(auth_username(s), "alice@example.org");
	auth_session_free(s);
	/* Another realm is another account. */
	ck_assert_int_eq(plain_login("alice@example.org", "s3cret", NULL), AUTH_FAIL);
}
END_TEST

START_TEST(plain_wrong_password)
{
	struct auth_session *s;
	ck_assert_int_eq(plain_login("alice", "wrong", &s), AUTH_FAIL);
	ck_assert_ptr_null(auth_username(s));
	ck_assert_str_eq(auth_attempted_user(s), "alice");
	ck_assert_ptr_nonnull(auth_error(s));
	ck_assert_ptr_null(strstr(auth_error(s), "wrong"));
	auth_session_free(s);
}
END_TEST

START_TEST(plain_unknown_user)
{
	struct auth_session *s;
	ck_assert_int_eq(plain_login("mallory", "s3cret", &s), AUTH_FAIL);
	ck_assert_str_eq(auth_attempted_user(s), "mallory");
	auth_session_free(s);
}
END_TEST

START_TEST(plain_authzid_denied)
{
	/* alice may not act as bob: Cyrus's default authorization. */
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	char *ir = plain_response("bob", "alice", "s3cret");
	ck_assert_int_eq(auth_start(s, "PLAIN", ir, &ch), AUTH_FAIL);
	free(ir);
	buf_free(&ch);
	auth_session_free(s);
}
END_TEST

START_TEST(plain_no_initial_response)
{
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	ck_assert_int_eq(auth_start(s, "plain", NULL, &ch), AUTH_CONTINUE);
	ck_assert_uint_eq(ch.len, 0);
	char *resp = plain_response("", "alice", "s3cret");
	ck_assert_int_eq(auth_step(s, resp, &ch), AUTH_OK);
	free(resp);
	ck_assert_str_eq(auth_username(s), "alice");
	ck_assert_str_eq(auth_attempted_user(s), "alice");
	buf_free(&ch);
	auth_session_free(s);
}
END_TEST

START_TEST(plain_empty_initial_response)
{
	/* "=" is an empty response, not a missing one: PLAIN rejects it. */
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	ck_assert_int_eq(auth_start(s, "PLAIN", "=", &ch), AUTH_FAIL);
	buf_free(&ch);
	auth_session_free(s);
}
END_TEST

static char *decode_challenge(const struct buf *ch)
{
	char *out = xmalloc(ch->len + 4);
	unsigned n = 0;
	out[0] = '\0';
	if (ch->len)
		ck_assert_int_eq(sasl_decode64(ch->data, (unsigned)ch->len, out,
		                               (unsigned)ch->len + 4, &n), SASL_OK);
	out[n] = '\0';
	return out;
}

START_TEST(login_two_steps)
{
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	ck_assert_int_eq(auth_start(s, "LOGIN", NULL, &ch), AUTH_CONTINUE);
	char *prompt = decode_challenge(&ch);
	ck_assert_str_eq(prompt, "Username:");
	free(prompt);
	char *user = b64("alice", 5), *pass = b64("s3cret", 6);
	ck_assert_int_eq(auth_step(s, user, &ch), AUTH_CONTINUE);
	prompt = decode_challenge(&ch);
	ck_assert_str_eq(prompt, "Password:");
	free(prompt);
	ck_assert_int_eq(auth_step(s, pass, &ch), AUTH_OK);
	ck_assert_str_eq(auth_username(s), "alice");
	ck_assert_str_eq(auth_mech(s), "LOGIN");
	free(user);
	free(pass);
	buf_free(&ch);
	auth_session_free(s);
}
END_TEST

START_TEST(login_wrong_password)
{
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	char *user = b64("bob", 3), *pass = b64("nope", 4);
	ck_assert_int_eq(auth_start(s, "LOGIN", user, &ch), AUTH_CONTINUE);
	ck_assert_int_eq(auth_step(s, pass, &ch), AUTH_FAIL);
	ck_assert_str_eq(auth_attempted_user(s), "bob");
	/* The session may try again after a failure. */
	ck_assert_int_eq(auth_start(s, "LOGIN", user, &ch), AUTH_CONTINUE);
	free(pass);
	pass = b64("hunter2", 7);
	ck_assert_int_eq(auth_step(s, pass, &ch), AUTH_OK);
	ck_assert_str_eq(auth_username(s), "bob");
	/* RFC 4954: no second AUTH once authenticated. */
	ck_assert_int_eq(auth_start(s, "LOGIN", user, &ch), AUTH_FAIL);
	ck_assert_str_eq(auth_username(s), "bob");
	free(user);
	free(pass);
	buf_free(&ch);
	auth_session_free(s);
}
END_TEST

/* ---- one account, one name ---------------------------------------------- */

/* The rule (auth_account_name), without Cyrus: a user of the server's
 * realm is its bare name, a user of another realm name@realm with the
 * realm in lower case. The user part keeps its case (Cyrus looks it up
 * as given: ALICE is not alice), and the split is at the first '@', as
 * Cyrus's sasldb lookup splits. */
static const struct {
	const char *name, *realm, *account;
} account_cases[] = {
	{ "alice", FQDN, "alice" },
	{ "alice@mail.test", FQDN, "alice" },
	{ "alice@MAIL.Test", FQDN, "alice" },
	{ "alice@mail.test", "MAIL.TEST", "alice" },
	{ "alice@example.org", FQDN, "alice@example.org" },
	{ "alice@Example.ORG", FQDN, "alice@example.org" },
	{ "Alice@example.org", FQDN, "Alice@example.org" },
	{ "ALICE", FQDN, "ALICE" },
	{ "ALICE@mail.test", FQDN, "ALICE" },
	{ "alice@mail.test.", FQDN, "alice@mail.test." },
	{ "alice@mail.test@mail.test", FQDN, "alice@mail.test@mail.test" },
	{ "alice@", FQDN, "alice@" },
	{ "@mail.test", FQDN, "@mail.test" },
	{ "a\"b\\c@mail.test", FQDN, "a\"b\\c" },
	{ "alice@mail.test", NULL, "alice@mail.test" },
	{ "alice", NULL, "alice" },
	{ "", FQDN, "" },
};

START_TEST(account_name_rule)
{
	for (size_t i = 0; i < sizeof(account_cases) / sizeof(account_cases[0]); i++) {
		char *got = auth_account_name(account_cases[i].name, account_cases[i].realm);
		ck_assert_msg(strcmp(got, account_cases[i].account) == 0, "case %zu: %s -> %s", i,
		              account_cases[i].name, got);
		/* Canonical names stay as they are. */
		char *again = auth_account_name(got, account_cases[i].realm);
		ck_assert_msg(strcmp(again, got) == 0, "case %zu: %s -> %s", i, got, again);
		free(again);
		free(got);
	}
}
END_TEST

/* What Cyrus answers for each spelling, and the one name we make of it. */
static const struct {
	const char *typed, *pass;
	int result;
	const char *account;     /* auth_username() after AUTH_OK */
	const char *attempted;   /* auth_attempted_account() */
} spelling_cases[] = {
	{ "alice", "s3cret", AUTH_OK, "alice", "alice" },
	{ "alice@mail.test", "s3cret", AUTH_OK, "alice", "alice" },
	/* Cyrus compares a realm the client types as it is ... */
	{ "alice@MAIL.TEST", "s3cret", AUTH_FAIL, NULL, "alice" },
	{ "ALICE", "s3cret", AUTH_FAIL, NULL, "ALICE" },
	{ "alice@example.org", "orgpass", AUTH_OK, "alice@example.org", "alice@example.org" },
	{ "alice@EXAMPLE.org", "orgpass", AUTH_FAIL, NULL, "alice@example.org" },
	{ "alice@mail.test", "wrong", AUTH_FAIL, NULL, "alice" },
};

START_TEST(plain_spellings)
{
	for (size_t i = 0; i < sizeof(spelling_cases) / sizeof(spelling_cases[0]); i++) {
		struct auth_session *s;
		int r = plain_login(spelling_cases[i].typed, spelling_cases[i].pass, &s);
		ck_assert_msg(r == spelling_cases[i].result, "case %zu: result %d", i, r);
		if (spelling_cases[i].account)
			ck_assert_msg(strcmp(auth_username(s), spelling_cases[i].account) == 0,
			              "case %zu: account %s", i, auth_username(s));
		else
			ck_assert_ptr_null(auth_username(s));
		ck_assert_str_eq(auth_attempted_user(s), spelling_cases[i].typed);
		ck_assert_msg(strcmp(auth_attempted_account(s), spelling_cases[i].attempted) == 0,
		              "case %zu: attempted %s", i, auth_attempted_account(s));
		auth_session_free(s);
	}
	/* ... but the server's own name in any case. */
	struct auth_session *s = session_in("MAIL.Test");
	struct buf ch;
	buf_init(&ch);
	char *ir = plain_response("", "alice@mail.test", "s3cret");
	ck_assert_int_eq(auth_start(s, "PLAIN", ir, &ch), AUTH_OK);
	ck_assert_str_eq(auth_username(s), "alice");
	free(ir);
	buf_free(&ch);
	auth_session_free(s);
}
END_TEST

START_TEST(login_spelling)
{
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	char *user = b64("alice@mail.test", 15), *pass = b64("s3cret", 6);
	ck_assert_int_eq(auth_start(s, "LOGIN", user, &ch), AUTH_CONTINUE);
	ck_assert_int_eq(auth_step(s, pass, &ch), AUTH_OK);
	ck_assert_str_eq(auth_username(s), "alice");
	ck_assert_str_eq(auth_attempted_user(s), "alice@mail.test");
	free(user);
	free(pass);
	buf_free(&ch);
	auth_session_free(s);
}
END_TEST

/* The authorization id names the identity Cyrus reports: it may only be
 * empty or the authentication id itself, spelled the same. */
static const struct {
	const char *authzid, *authcid;
	int result;
} authzid_cases[] = {
	{ "", "alice", AUTH_OK },
	{ "alice", "alice", AUTH_OK },
	{ "alice@mail.test", "alice@mail.test", AUTH_OK },
	{ "bob", "alice", AUTH_FAIL },
	{ "bob@mail.test", "alice", AUTH_FAIL },
	{ "alice@mail.test", "alice", AUTH_FAIL },
	{ "alice", "alice@mail.test", AUTH_FAIL },
	{ "ALICE", "alice", AUTH_FAIL },
	{ "alice@example.org", "alice", AUTH_FAIL },
};

START_TEST(plain_authzid_cases)
{
	for (size_t i = 0; i < sizeof(authzid_cases) / sizeof(authzid_cases[0]); i++) {
		struct auth_session *s = session();
		struct buf ch;
		buf_init(&ch);
		char *ir = plain_response(authzid_cases[i].authzid, authzid_cases[i].authcid, "s3cret");
		int r = auth_start(s, "PLAIN", ir, &ch);
		ck_assert_msg(r == authzid_cases[i].result, "case %zu: result %d", i, r);
		if (r == AUTH_OK)
			ck_assert_str_eq(auth_username(s), "alice");
		free(ir);
		buf_free(&ch);
		auth_session_free(s);
	}
}
END_TEST

START_TEST(attempted_user_raw)
{
	/* Kept as typed: two names that differ only in a quote or a control
	 * byte are two names (the log quotes them). */
	static const char *const names[] = { "a\"b", "a?b", "a\\b", "a\x01" "b", "a b" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct auth_session *s;
		ck_assert_int_eq(plain_login(names[i], "x", &s), AUTH_FAIL);
		ck_assert_str_eq(auth_attempted_user(s), names[i]);
		auth_session_free(s);
	}
	/* Bounded: a megabyte of name is not a key. */
	char longname[1000];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	struct auth_session *s;
	ck_assert_int_eq(plain_login(longname, "x", &s), AUTH_FAIL);
	ck_assert_uint_eq(strlen(auth_attempted_user(s)), 256);
	ck_assert_uint_eq(strlen(auth_attempted_account(s)), 256);
	auth_session_free(s);
}
END_TEST

/* ---- encoding and mechanisms -------------------------------------------- */

START_TEST(bad_base64)
{
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	ck_assert_int_eq(auth_start(s, "PLAIN", "AGFsaWNl*AHMzY3JldA==", &ch), AUTH_FAIL);
	ck_assert_str_eq(auth_error(s), "bad base64");
	ck_assert_int_eq(auth_start(s, "LOGIN", NULL, &ch), AUTH_CONTINUE);
	ck_assert_int_eq(auth_step(s, "not base64!", &ch), AUTH_FAIL);
	ck_assert_str_eq(auth_error(s), "bad base64");
	/* The exchange is over: a further step is refused. */
	ck_assert_int_eq(auth_step(s, "YWxpY2U=", &ch), AUTH_FAIL);
	buf_free(&ch);
	auth_session_free(s);
}
END_TEST

START_TEST(unknown_mechanism)
{
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	ck_assert_int_eq(auth_start(s, "DIGEST-MD5", NULL, &ch), AUTH_FAIL);
	ck_assert_int_eq(auth_start(s, "X-NO-SUCH-MECH", NULL, &ch), AUTH_FAIL);
	ck_assert_int_eq(auth_start(s, "ANONYMOUS", "=", &ch), AUTH_FAIL);
	ck_assert_ptr_nonnull(auth_error(s));
	buf_free(&ch);
	auth_session_free(s);
}
END_TEST

START_TEST(mechanism_list)
{
	struct auth_session *s = session();
	const char *list = auth_mechanisms(s);
	ck_assert_ptr_eq(list, auth_mechanisms(s)); /* cached */
	ck_assert_msg(list[0] != ' ' && list[strlen(list) - 1] != ' ', "list \"%s\"", list);
	char *copy = str_dup(list), *save = NULL;
	int n = 0;
	for (char *m = strtok_r(copy, " ", &save); m; m = strtok_r(NULL, " ", &save), n++)
		ck_assert_msg(strcmp(m, "PLAIN") == 0 || strcmp(m, "LOGIN") == 0 ||
		              strcmp(m, "SCRAM-SHA-256") == 0, "unexpected %s in \"%s\"", m, list);
	free(copy);
	ck_assert_int_eq(n, 3);
	ck_assert(auth_mech_offered(s, "plain"));
	ck_assert(auth_mech_offered(s, "LOGIN"));
	ck_assert(auth_mech_offered(s, "SCRAM-SHA-256"));
	ck_assert(!auth_mech_offered(s, "SCRAM-SHA"));
	ck_assert(!auth_mech_offered(s, "DIGEST-MD5"));
	ck_assert(!auth_mech_offered(s, ""));
	auth_session_free(s);
}
END_TEST

/* ---- SCRAM through Cyrus's client --------------------------------------- */

struct client_creds {
	const char *user;
	sasl_secret_t *secret;
};

static int client_simple(void *ctx, int id, const char **result, unsigned *len)
{
	struct client_creds *c = ctx;
	if (id != SASL_CB_AUTHNAME && id != SASL_CB_USER)
		return SASL_BADPARAM;
	*result = id == SASL_CB_AUTHNAME ? c->user : "";
	if (len)
		*len = (unsigned)strlen(*result);
	return SASL_OK;
}

static int client_pass(sasl_conn_t *conn, void *ctx, int id, sasl_secret_t **out)
{
	(void)conn;
	(void)id;
	*out = ((struct client_creds *)ctx)->secret;
	return SASL_OK;
}

static sasl_conn_t *scram_client(struct client_creds *c, const char *user, const char *pass,
                                 sasl_callback_t cbs[4])
{
	size_t plen = strlen(pass);
	c->user = user;
	c->secret = xcalloc(1, sizeof(sasl_secret_t) + plen);
	c->secret->len = plen;
	memcpy(c->secret->data, pass, plen);
	cbs[0] = (sasl_callback_t){ SASL_CB_AUTHNAME, CB_PROC(client_simple), c };
	cbs[1] = (sasl_callback_t){ SASL_CB_USER, CB_PROC(client_simple), c };
	cbs[2] = (sasl_callback_t){ SASL_CB_PASS, CB_PROC(client_pass), c };
	cbs[3] = (sasl_callback_t){ SASL_CB_LIST_END, NULL, NULL };
	ck_assert_int_eq(sasl_client_init(NULL), SASL_OK);
	sasl_conn_t *cc = NULL;
	ck_assert_int_eq(sasl_client_new("smtp", FQDN, NULL, NULL, cbs, 0, &cc), SASL_OK);
	return cc;
}

/* Runs a SCRAM-SHA-256 exchange up to the server-final message; returns
 * what the server's last step answered. */
static int scram_exchange(struct auth_session *s, sasl_conn_t *cc, struct buf *ch)
{
	const char *out = NULL, *mech = NULL;
	unsigned outlen = 0;
	ck_assert_int_eq(sasl_client_start(cc, "SCRAM-SHA-256", NULL, &out, &outlen, &mech),
	                 SASL_CONTINUE);
	char *msg = b64(out, outlen);
	int r = auth_start(s, "SCRAM-SHA-256", msg, ch);
	free(msg);
	if (r != AUTH_CONTINUE)
		return r;
	char *in = decode_challenge(ch);
	ck_assert_int_eq(sasl_client_step(cc, in, (unsigned)strlen(in), NULL, &out, &outlen),
	                 SASL_CONTINUE);
	free(in);
	msg = b64(out, outlen);
	r = auth_step(s, msg, ch);
	free(msg);
	return r;
}

static void scram_done(sasl_conn_t *cc, struct client_creds *c)
{
	sasl_dispose(&cc);
	free(c->secret);
	sasl_client_done();
}

START_TEST(scram_full_exchange)
{
	struct client_creds c;
	sasl_callback_t cbs[4];
	sasl_conn_t *cc = scram_client(&c, "alice", "s3cret", cbs);
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	/* Server-final comes as a challenge (RFC 4954), not with success. */
	ck_assert_int_eq(scram_exchange(s, cc, &ch), AUTH_CONTINUE);
	ck_assert_ptr_null(auth_username(s));
	char *final = decode_challenge(&ch);
	ck_assert_msg(strncmp(final, "v=", 2) == 0, "server-final \"%s\"", final);
	const char *out = NULL;
	unsigned outlen = 0;
	/* The client checks the server signature: mutual authentication. */
	ck_assert_int_eq(sasl_client_step(cc, final, (unsigned)strlen(final), NULL, &out, &outlen),
	                 SASL_OK);
	ck_assert_uint_eq(outlen, 0);
	free(final);
	ck_assert_int_eq(auth_step(s, "", &ch), AUTH_OK);
	ck_assert_str_eq(auth_username(s), "alice");
	ck_assert_str_eq(auth_mech(s), "SCRAM-SHA-256");
	ck_assert_str_eq(auth_attempted_user(s), "alice");
	buf_free(&ch);
	auth_session_free(s);
	scram_done(cc, &c);
}
END_TEST

START_TEST(scram_wrong_password)
{
	struct client_creds c;
	sasl_callback_t cbs[4];
	sasl_conn_t *cc = scram_client(&c, "alice", "wrong", cbs);
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	ck_assert_int_eq(scram_exchange(s, cc, &ch), AUTH_FAIL);
	ck_assert_str_eq(auth_attempted_user(s), "alice");
	ck_assert_ptr_null(auth_username(s));
	buf_free(&ch);
	auth_session_free(s);
	scram_done(cc, &c);
}
END_TEST

START_TEST(scram_data_after_final)
{
	struct client_creds c;
	sasl_callback_t cbs[4];
	sasl_conn_t *cc = scram_client(&c, "alice", "s3cret", cbs);
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	ck_assert_int_eq(scram_exchange(s, cc, &ch), AUTH_CONTINUE);
	/* RFC 4954: the answer to server-final must be empty. */
	ck_assert_int_eq(auth_step(s, "eA==", &ch), AUTH_FAIL);
	ck_assert_ptr_null(auth_username(s));
	buf_free(&ch);
	auth_session_free(s);
	scram_done(cc, &c);
}
END_TEST

START_TEST(scram_unknown_user)
{
	struct client_creds c;
	sasl_callback_t cbs[4];
	sasl_conn_t *cc = scram_client(&c, "mallory", "s3cret", cbs);
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	ck_assert_int_eq(scram_exchange(s, cc, &ch), AUTH_FAIL);
	ck_assert_str_eq(auth_attempted_user(s), "mallory");
	buf_free(&ch);
	auth_session_free(s);
	scram_done(cc, &c);
}
END_TEST

START_TEST(scram_spelling)
{
	struct client_creds c;
	sasl_callback_t cbs[4];
	sasl_conn_t *cc = scram_client(&c, "alice@mail.test", "s3cret", cbs);
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	ck_assert_int_eq(scram_exchange(s, cc, &ch), AUTH_CONTINUE);
	ck_assert_int_eq(auth_step(s, "", &ch), AUTH_OK);
	ck_assert_str_eq(auth_username(s), "alice");
	ck_assert_str_eq(auth_attempted_user(s), "alice@mail.test");
	buf_free(&ch);
	auth_session_free(s);
	scram_done(cc, &c);
}
END_TEST

/* ---- EXTERNAL, configuration and back end ------------------------------- */

START_TEST(external_from_certificate)
{
	auth_shutdown();
	init_with("PLAIN EXTERNAL", dbpath, NULL);
	struct auth_session *plain = session();
	ck_assert(!auth_mech_offered(plain, "EXTERNAL"));
	auth_session_free(plain);

	struct auth_session *s = auth_session_new(FQDN, NULL, NULL, 256, "alice");
	ck_assert_ptr_nonnull(s);
	ck_assert(auth_mech_offered(s, "EXTERNAL"));
	struct buf ch;
	buf_init(&ch);
	ck_assert_int_eq(auth_start(s, "EXTERNAL", "=", &ch), AUTH_OK);
	ck_assert_str_eq(auth_username(s), "alice");
	ck_assert_str_eq(auth_mech(s), "EXTERNAL");
	buf_free(&ch);
	auth_session_free(s);
}
END_TEST

START_TEST(cyrus_config_file)
{
	/* No mech_list of ours: the file in config_dir decides. */
	auth_shutdown();
	init_with(NULL, dbpath, confdir);
	struct auth_session *s = session();
	ck_assert_str_eq(auth_mechanisms(s), "LOGIN");
	auth_session_free(s);
}
END_TEST

START_TEST(no_mechanism_is_an_error)
{
	auth_shutdown();
	struct auth_conf conf = { .service = "smtp", .app_name = "postern-test",
	                          .sasldb = dbpath, .mech_list = "X-NONE" };
	char err[256] = "";
	ck_assert_int_eq(auth_init(&conf, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "no SASL mechanism") != NULL, "err \"%s\"", err);
	/* auth_init may be tried again after a failure. */
	setup();
}
END_TEST

START_TEST(missing_sasldb)
{
	auth_shutdown();
	char missing[sizeof(tmpdir) + 32];
	snprintf(missing, sizeof(missing), "%s/no-such-db", tmpdir);
	init_with(MECHS, missing, NULL);
	struct auth_session *s;
	int r = plain_login("alice", "s3cret", &s);
	ck_assert_msg(r == AUTH_TEMPFAIL, "result %d error \"%s\"", r,
	              auth_error(s) ? auth_error(s) : "");
	auth_session_free(s);
}
END_TEST

START_TEST(corrupt_sasldb)
{
	auth_shutdown();
	char bad[sizeof(tmpdir) + 32];
	snprintf(bad, sizeof(bad), "%s/corrupt-db", tmpdir);
	write_file(bad, "not a database\n");
	init_with(MECHS, bad, NULL);
	struct auth_session *s;
	ck_assert_int_eq(plain_login("alice", "s3cret", &s), AUTH_TEMPFAIL);
	auth_session_free(s);
}
END_TEST

/* ---- threads ------------------------------------------------------------ */

#define THREADS 4
#define LOGINS 50

static void *login_worker(void *arg)
{
	int *failures = arg;
	for (int i = 0; i < LOGINS; i++) {
		struct auth_session *s = auth_session_new(FQDN, NULL, NULL, 256, NULL);
		struct buf ch;
		buf_init(&ch);
		char *ir = plain_response("", "alice", "s3cret");
		if (!s || auth_start(s, "PLAIN", ir, &ch) != AUTH_OK ||
		    strcmp(auth_username(s), "alice") != 0)
			(*failures)++;
		free(ir);
		buf_free(&ch);
		auth_session_free(s);
	}
	return NULL;
}

START_TEST(concurrent_logins)
{
	pthread_t t[THREADS];
	int failures[THREADS] = { 0 };
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, login_worker, &failures[i]), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(failures[i], 0);
}
END_TEST

/* ---- the credential cache ----------------------------------------------- */

/* Until the files are old enough for the cache to take entries from. */
static void wait_settled(void)
{
	for (int i = 0; i < CDB_COUNT; i++) {
		struct stat st;
		while (stat(cachedb[i], &st) == 0 && time(NULL) - st.st_ctim.tv_sec < AUTH_CACHE_QUIET)
			usleep(100 * 1000);
	}
}

/* A login through Cyrus, as a worker runs it. */
static int cyrus_plain(const char *authzid, const char *user, const char *pass)
{
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	char *ir = plain_response(authzid, user, pass);
	int r = auth_start(s, "PLAIN", ir, &ch);
	if (r == AUTH_OK)
		ck_assert(!auth_cached(s));
	free(ir);
	buf_free(&ch);
	auth_session_free(s);
	return r;
}

/* What the event loop tries first: the identity, or NULL (then the
 * session must be untouched, ready for Cyrus). */
static char *cached_user_in(const char *fqdn, const char *authzid, const char *user,
                            const char *pass)
{
	struct auth_session *s = session_in(fqdn);
	char *ir = plain_response(authzid, user, pass);
	char *out = NULL;
	if (auth_start_cached(s, "PLAIN", ir)) {
		ck_assert(auth_cached(s));
		ck_assert_str_eq(auth_mech(s), "PLAIN");
		out = str_dup(auth_username(s));
	} else {
		ck_assert(!auth_cached(s));
		ck_assert_ptr_null(auth_username(s));
	}
	free(ir);
	auth_session_free(s);
	return out;
}

static char *cached_user(const char *user, const char *pass)
{
	return cached_user_in(FQDN, "", user, pass);
}

static void assert_cached(const char *user, const char *pass, const char *expect)
{
	char *got = cached_user(user, pass);
	if (expect) {
		ck_assert_ptr_nonnull(got);
		ck_assert_str_eq(got, expect);
	} else {
		ck_assert_msg(got == NULL, "answered from the cache: %s", got);
	}
	free(got);
}

START_TEST(cache_repeats_a_login)
{
	init_cache(MECHS, cachedb[CDB_SHARED], NULL, true);
	ck_assert(auth_cache_enabled());
	assert_cached("alice", "s3cret", NULL);
	ck_assert_int_eq(cyrus_plain("", "alice", "s3cret"), AUTH_OK);
	assert_cached("alice", "s3cret", "alice");
	assert_cached("alice", "s3cret", "alice");
	/* Any other bytes are another key. */
	assert_cached("alice", "s3creT", NULL);
	assert_cached("bob", "s3cret", NULL);
	char *other = cached_user_in(FQDN, "alice", "alice", "s3cret");
	ck_assert_ptr_null(other);
	other = cached_user_in("other.test", "", "alice", "s3cret");
	ck_assert_ptr_null(other);
	/* Only PLAIN, and only what the session offers. */
	struct auth_session *s = session();
	char *ir = plain_response("", "alice", "s3cret");
	ck_assert(!auth_start_cached(s, "LOGIN", ir));
	ck_assert(!auth_start_cached(s, "PLAIN", NULL));
	ck_assert(!auth_start_cached(s, "PLAIN", "!!not base64"));
	ck_assert(!auth_start_cached(s, "PLAIN", "="));
	ck_assert(!auth_start_cached(s, "PLAIN", ""));
	ck_assert_ptr_null(auth_username(s));
	free(ir);
	auth_session_free(s);
}
END_TEST

START_TEST(cache_keeps_no_failure)
{
	init_cache(MECHS, cachedb[CDB_SHARED], NULL, true);
	ck_assert_int_eq(cyrus_plain("", "bob", "wrong"), AUTH_FAIL);
	assert_cached("bob", "wrong", NULL);
	ck_assert_int_eq(cyrus_plain("", "bob", "wrong"), AUTH_FAIL);
	/* Right password, refused authorization: not a success either. */
	ck_assert_int_eq(cyrus_plain("bob", "alice", "s3cret"), AUTH_FAIL);
	char *got = cached_user_in(FQDN, "bob", "alice", "s3cret");
	ck_assert_ptr_null(got);
}
END_TEST

START_TEST(cache_after_a_challenge)
{
	init_cache(MECHS, cachedb[CDB_SHARED], NULL, true);
	ck_assert_int_eq(cyrus_plain("", "alice", "s3cret"), AUTH_OK);
	struct auth_session *s = session();
	struct buf ch;
	buf_init(&ch);
	ck_assert_int_eq(auth_start(s, "PLAIN", NULL, &ch), AUTH_CONTINUE);
	char *wrong = plain_response("", "alice", "nope");
	ck_assert(!auth_step_cached(s, wrong));
	char *resp = plain_response("", "alice", "s3cret");
	ck_assert(auth_step_cached(s, resp));
	ck_assert_str_eq(auth_username(s), "alice");
	ck_assert(auth_cached(s));
	/* Authenticated: no second exchange, from the cache or not. */
	ck_assert(!auth_start_cached(s, "PLAIN", resp));
	ck_assert_int_eq(auth_start(s, "PLAIN", resp, &ch), AUTH_FAIL);
	auth_session_free(s);
	/* A wrong password after the challenge still reaches Cyrus. */
	s = session();
	ck_assert_int_eq(auth_start(s, "PLAIN", NULL, &ch), AUTH_CONTINUE);
	ck_assert(!auth_step_cached(s, wrong));
	ck_assert_int_eq(auth_step(s, wrong, &ch), AUTH_FAIL);
	auth_session_free(s);
	free(wrong);
	free(resp);
	buf_free(&ch);
}
END_TEST

START_TEST(cache_password_change)
{
	const char *db = cachedb[CDB_CHANGE];
	init_cache(MECHS, db, NULL, true);
	ck_assert_int_eq(cyrus_plain("", "alice", "s3cret"), AUTH_OK);
	ck_assert_int_eq(cyrus_plain("", "bob", "hunter2"), AUTH_OK);
	assert_cached("alice", "s3cret", "alice");
	ck_assert_int_eq(saslpasswd2_on(db, FQDN, "alice", "n3w-pass"), 0);
	/* At once: the old password is neither cached nor accepted. */
	assert_cached("alice", "s3cret", NULL);
	ck_assert_int_eq(cyrus_plain("", "alice", "s3cret"), AUTH_FAIL);
	ck_assert_int_eq(cyrus_plain("", "alice", "n3w-pass"), AUTH_OK);
	/* Every entry went with the change, and the file is too fresh to
	 * take new ones. */
	assert_cached("bob", "hunter2", NULL);
	assert_cached("alice", "n3w-pass", NULL);
}
END_TEST

START_TEST(cache_user_deleted)
{
	const char *db = cachedb[CDB_DELETE];
	init_cache(MECHS, db, NULL, true);
	ck_assert_int_eq(cyrus_plain("", "alice", "s3cret"), AUTH_OK);
	assert_cached("alice", "s3cret", "alice");
	ck_assert_int_eq(saslpasswd2_on(db, FQDN, "alice", NULL), 0);
	assert_cached("alice", "s3cret", NULL);
	ck_assert_int_eq(cyrus_plain("", "alice", "s3cret"), AUTH_FAIL);
}
END_TEST

START_TEST(cache_file_replaced)
{
	const char *db = cachedb[CDB_REPLACE];
	init_cache(MECHS, db, NULL, true);
	ck_assert_int_eq(cyrus_plain("", "alice", "s3cret"), AUTH_OK);
	assert_cached("alice", "s3cret", "alice");
	/* Another file in its place, even with the same contents, is another
	 * version: what it says is Cyrus's to read. */
	char copy[sizeof(cachedb[0]) + 8];
	snprintf(copy, sizeof(copy), "%s.new", db);
	FILE *in = fopen(db, "rb"), *out = fopen(copy, "wb");
	ck_assert(in && out);
	char blk[4096];
	size_t n;
	while ((n = fread(blk, 1, sizeof(blk), in)) > 0)
		ck_assert_uint_eq(fwrite(blk, 1, n, out), n);
	fclose(in);
	ck_assert_int_eq(fclose(out), 0);
	ck_assert_int_eq(rename(copy, db), 0);
	assert_cached("alice", "s3cret", NULL);
	ck_assert_int_eq(cyrus_plain("", "alice", "s3cret"), AUTH_OK);
	/* And its sasldb going away: no answer from memory either. */
	ck_assert_int_eq(unlink(db), 0);
	assert_cached("alice", "s3cret", NULL);
}
END_TEST

START_TEST(cache_waits_for_a_quiet_file)
{
	char fresh[sizeof(tmpdir) + 16];
	snprintf(fresh, sizeof(fresh), "%s/fresh", tmpdir);
	ck_assert_int_eq(saslpasswd2_on(fresh, FQDN, "alice", "s3cret"), 0);
	init_cache(MECHS, fresh, NULL, true);
	ck_assert_int_eq(cyrus_plain("", "alice", "s3cret"), AUTH_OK);
	assert_cached("alice", "s3cret", NULL);
}
END_TEST

START_TEST(cache_one_account_per_spelling)
{
	/* The cache answers only bytes Cyrus accepted (a spelling is its own
	 * entry), and every entry gives the one account name. */
	init_cache(MECHS, cachedb[CDB_SHARED], NULL, true);
	ck_assert_int_eq(cyrus_plain("", "alice", "s3cret"), AUTH_OK);
	assert_cached("alice", "s3cret", "alice");
	assert_cached("alice@mail.test", "s3cret", NULL);
	ck_assert_int_eq(cyrus_plain("", "alice@mail.test", "s3cret"), AUTH_OK);
	assert_cached("alice@mail.test", "s3cret", "alice");
	/* A spelling Cyrus refuses is never answered from memory, although
	 * it names the same account. */
	ck_assert_int_eq(cyrus_plain("", "alice@MAIL.TEST", "s3cret"), AUTH_FAIL);
	assert_cached("alice@MAIL.TEST", "s3cret", NULL);
	/* The session knows what was typed, also for an answer from memory. */
	struct auth_session *s = session();
	char *ir = plain_response("", "alice@mail.test", "s3cret");
	ck_assert(auth_start_cached(s, "PLAIN", ir));
	ck_assert_str_eq(auth_attempted_user(s), "alice@mail.test");
	ck_assert_str_eq(auth_attempted_account(s), "alice");
	free(ir);
	auth_session_free(s);
}
END_TEST

START_TEST(cache_off)
{
	init_cache(MECHS, cachedb[CDB_SHARED], NULL, false);
	ck_assert(!auth_cache_enabled());
	ck_assert_int_eq(cyrus_plain("", "alice", "s3cret"), AUTH_OK);
	assert_cached("alice", "s3cret", NULL);
	auth_shutdown();
	/* A Cyrus file may send passwords elsewhere: nothing to watch. */
	init_cache(MECHS, cachedb[CDB_SHARED], confdir, true);
	ck_assert(!auth_cache_enabled());
}
END_TEST

static void *cache_worker(void *arg)
{
	int *failures = arg;
	for (int i = 0; i < LOGINS; i++) {
		const char *user = i % 2 ? "alice" : "bob", *pass = i % 2 ? "s3cret" : "hunter2";
		char *got = cached_user(user, pass);
		if (!got && cyrus_plain("", user, pass) != AUTH_OK)
			(*failures)++;
		if (got && strcmp(got, user) != 0)
			(*failures)++;
		free(got);
	}
	return NULL;
}

START_TEST(cache_concurrent)
{
	init_cache(MECHS, cachedb[CDB_SHARED], NULL, true);
	pthread_t t[THREADS];
	int failures[THREADS] = { 0 };
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, cache_worker, &failures[i]), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(failures[i], 0);
	assert_cached("alice", "s3cret", "alice");
	assert_cached("bob", "hunter2", "bob");
}
END_TEST

/* The cache's own interface, without Cyrus: what a worker does around
 * Cyrus's lookup (stamp, look, put) and what the loop asks. */
static const char CRED[] = "\0alice\0s3cret";

static char *api_get(void)
{
	return auth_cache_get(FQDN, CRED, sizeof(CRED) - 1);
}

static void api_init(const char *db, unsigned max_age)
{
	char err[256] = "";
	ck_assert_msg(auth_cache_init(db, 16, max_age, err, sizeof(err)) == 0, "%s", err);
}

static void api_teardown(void)
{
	auth_cache_shutdown();
}

START_TEST(cache_put_needs_the_file_unchanged)
{
	const char *db = cachedb[CDB_STALE];
	api_init(db, AUTH_CACHE_MAX_AGE);
	struct auth_cache_stamp before;
	ck_assert(auth_cache_stamp(&before));
	/* The file changes while "Cyrus" reads it: nothing is kept. */
	ck_assert_int_eq(saslpasswd2_on(db, FQDN, "alice", "changed"), 0);
	auth_cache_put(&before, FQDN, CRED, sizeof(CRED) - 1, "alice");
	ck_assert_ptr_null(api_get());
}
END_TEST

START_TEST(cache_put_needs_a_quiet_file_before_the_lookup)
{
	/* A stamp of a file changed just now, then a slow lookup: the quiet
	 * time counts from the stamp, not from the answer. */
	char fresh[sizeof(tmpdir) + 16];
	snprintf(fresh, sizeof(fresh), "%s/fresh2", tmpdir);
	ck_assert_int_eq(saslpasswd2_on(fresh, FQDN, "alice", "s3cret"), 0);
	api_init(fresh, AUTH_CACHE_MAX_AGE);
	struct auth_cache_stamp before;
	ck_assert(auth_cache_stamp(&before));
	sleep(AUTH_CACHE_QUIET + 1);
	auth_cache_put(&before, FQDN, CRED, sizeof(CRED) - 1, "alice");
	ck_assert_ptr_null(api_get());
	/* A stamp taken now, of the same quiet file, may be kept. */
	ck_assert(auth_cache_stamp(&before));
	auth_cache_put(&before, FQDN, CRED, sizeof(CRED) - 1, "alice");
	char *got = api_get();
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(got, "alice");
	free(got);
}
END_TEST

START_TEST(cache_entries_expire)
{
	api_init(cachedb[CDB_SHARED], 2);
	struct auth_cache_stamp before;
	ck_assert(auth_cache_stamp(&before));
	auth_cache_put(&before, FQDN, CRED, sizeof(CRED) - 1, "alice");
	char *got = api_get();
	ck_assert_ptr_nonnull(got);
	free(got);
	sleep(3);
	ck_assert_ptr_null(api_get());
}
END_TEST

START_TEST(cache_clock_step_forgets)
{
	api_init(cachedb[CDB_SHARED], AUTH_CACHE_MAX_AGE);
	struct auth_cache_stamp before;
	ck_assert(auth_cache_stamp(&before));
	/* As if the wall clock had moved against the monotonic one during
	 * the lookup. */
	before.clock_offset -= 5;
	auth_cache_put(&before, FQDN, CRED, sizeof(CRED) - 1, "alice");
	ck_assert_ptr_null(api_get());
	before.clock_offset += 5;
	auth_cache_put(&before, FQDN, CRED, sizeof(CRED) - 1, "alice");
	char *got = api_get();
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(got, "alice");
	free(got);
	/* Another realm, or other bytes, are other keys. */
	ck_assert_ptr_null(auth_cache_get("other.test", CRED, sizeof(CRED) - 1));
	ck_assert_ptr_null(auth_cache_get(FQDN, CRED, sizeof(CRED) - 2));
}
END_TEST

/* ---- main --------------------------------------------------------------- */

static TCase *add_tcase(Suite *su, const char *name, void (*up)(void), void (*down)(void))
{
	TCase *tc = tcase_create(name);
	tcase_add_checked_fixture(tc, up, down);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(su, tc);
	return tc;
}

static Suite *auth_suite(void)
{
	Suite *su = suite_create("auth");
	TCase *tc = add_tcase(su, "sasl", setup, teardown);
	tcase_add_test(tc, plain_initial_ok);
	tcase_add_test(tc, plain_realm_user_ok);
	tcase_add_test(tc, plain_wrong_password);
	tcase_add_test(tc, plain_unknown_user);
	tcase_add_test(tc, plain_authzid_denied);
	tcase_add_test(tc, plain_authzid_cases);
	tcase_add_test(tc, account_name_rule);
	tcase_add_test(tc, plain_spellings);
	tcase_add_test(tc, login_spelling);
	tcase_add_test(tc, attempted_user_raw);
	tcase_add_test(tc, plain_no_initial_response);
	tcase_add_test(tc, plain_empty_initial_response);
	tcase_add_test(tc, login_two_steps);
	tcase_add_test(tc, login_wrong_password);
	tcase_add_test(tc, bad_base64);
	tcase_add_test(tc, unknown_mechanism);
	tcase_add_test(tc, mechanism_list);
	tcase_add_test(tc, scram_full_exchange);
	tcase_add_test(tc, scram_wrong_password);
	tcase_add_test(tc, scram_data_after_final);
	tcase_add_test(tc, scram_unknown_user);
	tcase_add_test(tc, scram_spelling);
	tcase_add_test(tc, external_from_certificate);
	tcase_add_test(tc, cyrus_config_file);
	tcase_add_test(tc, no_mechanism_is_an_error);
	tcase_add_test(tc, missing_sasldb);
	tcase_add_test(tc, corrupt_sasldb);
	tcase_add_test(tc, concurrent_logins);
	tc = add_tcase(su, "cache", NULL, teardown);
	tcase_add_test(tc, cache_repeats_a_login);
	tcase_add_test(tc, cache_keeps_no_failure);
	tcase_add_test(tc, cache_after_a_challenge);
	tcase_add_test(tc, cache_password_change);
	tcase_add_test(tc, cache_user_deleted);
	tcase_add_test(tc, cache_file_replaced);
	tcase_add_test(tc, cache_waits_for_a_quiet_file);
	tcase_add_test(tc, cache_one_account_per_spelling);
	tcase_add_test(tc, cache_off);
	tcase_add_test(tc, cache_concurrent);
	tc = add_tcase(su, "cache_api", NULL, api_teardown);
	tcase_add_test(tc, cache_put_needs_the_file_unchanged);
	tcase_add_test(tc, cache_put_needs_a_quiet_file_before_the_lookup);
	tcase_add_test(tc, cache_entries_expire);
	tcase_add_test(tc, cache_clock_step_forgets);
	return su;
}

int main(void)
{
	log_open("test_auth", false, LOG_LEVEL_WARN);
	make_db();
	wait_settled();
	SRunner *sr = srunner_create(auth_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	remove_db();
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
