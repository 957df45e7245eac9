/*
 * test_relay.c - unit tests of the queue runner: envelope and state files,
 * Maildir delivery, SMTP/LMTP delivery to a tiny sink running in a thread
 * (retries, bounces, DSNs, connection reuse) and the queue listing.
 * Every test builds its spool by hand in a mkdtemp directory.
 */
#include "relay/relay.h"
#include "relay/relay_int.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <semaphore.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_FOR(cond, ms)                                                    \
	do {                                                                  \
		for (int w_ = 0; !(cond) && w_ < (ms) / 10; w_++)             \
			usleep(10000);                                        \
	} while (0)

/* ---- spool helpers ------------------------------------------------------ */

static char base[64];   /* removed by main(), even after a failed test */
static char spool[PATH_MAX];

static void spool_make(void)
{
	snprintf(spool, sizeof(spool), "%s/spool.XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(spool));
	char p[PATH_MAX + 16];
	static const char *const sub[] = { "tmp", "queue", "state" };
	for (size_t i = 0; i < ARRAY_LEN(sub); i++) {
		snprintf(p, sizeof(p), "%s/%s", spool, sub[i]);
		ck_assert_int_eq(mkdir(p, 0700), 0);
	}
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void remove_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void spool_remove(void)
{
	remove_tree(spool);
}

static void write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(file_write_all(fd, data, len), 0);
	close(fd);
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	struct buf b;
	buf_init(&b);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	return b.data ? b.data : str_dup("");
}

/* Writes queue/<qid> and returns the qid in out. */
static void queue_msg(char out[ID_LEN + 1], time_t t, const char *from, const char *rcpts,
                      const char *extra, const char *body)
{
	id_queue(out);
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "POSTERN-QUEUE 1\nqid %s\ntime %lld\nfrom %s\n", out, (long long)t, from);
	char *copy = str_dup(rcpts), *save, *r;
	for (r = strtok_r(copy, ",", &save); r; r = strtok_r(NULL, ",", &save))
		buf_printf(&b, "rcpt %s\n", r);
	free(copy);
	buf_printf(&b, "client 192.0.2.1\n%s\n%s", extra ? extra : "", body);
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/queue/%s", spool, out);
	write_file(path, b.data, b.len);
	buf_free(&b);
}

static bool exists(const char *sub, const char *name)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s/%s", spool, sub, name);
	return access(path, F_OK) == 0;
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static int count_sub(const char *sub)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", spool, sub);
	return count_files(path);
}

/* The one queue file other than `not`, or false. */
static bool other_qid(const char *not, char out[ID_LEN + 1])
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/queue", spool);
	DIR *d = opendir(path);
	bool found = false;
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.' && strcmp(de->d_name, not) != 0) {
			str_lcpy(out, de->d_name, ID_LEN + 1);
			found = true;
		}
	if (d)
		closedir(d);
	return found;
}

static struct relay_conf base_conf(void)
{
	struct relay_conf c = {
		.hostname = "relay.test",
		.workers = 1,
		.retry_min = 1,
		.retry_max = 2,
		.max_queue_time = 3600,
		.timeout = 5,
	};
	return c;
}

/* ---- a minimal SMTP/LMTP sink in a thread -------------------------------- */

struct sink_msg {
	char from[256];
	char rcpts[512];
	char *data;
};

struct sink {
	int lfd;
	int port;
	pthread_t th;
	atomic_bool stop;
	bool lmtp;
	bool no_pipelining;
	int tempfail_mail;        /* answer 451 to this many MAILs; -1: all */
	const char *fail_rcpt;    /* 550 at RCPT */
	const char *lmtp_fail;    /* LMTP: 452 after DATA for this recipient */
	bool hang_up;             /* close the connection after each message */
	pthread_mutex_t mu;
	int nconn, nmail, nmsgs;
	struct sink_msg msgs[8];
};

static int sink_getline(struct sink *k, int fd, struct buf *in, char *line, size_t size)
{
	for (;;) {
		char *nl = in->data ? memchr(in->data, '\n', in->len) : NULL;
		if (nl) {
			size_t n = (size_t)(nl - in->data);
			size_t take = n > 0 && in->data[n - 1] == '\r' ? n - 1 : n;
			if (take >= size)
				take = size - 1;
			memcpy(line, in->data, take);
			line[take] = '\0';
			buf_consume(in, n + 1);
			return 0;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (atomic_load(&k->stop))
			return -1;
		if (poll(&p, 1, 50) <= 0)
			continue;
		char chunk[4096];
		ssize_t got = read(fd, chunk, sizeof(chunk));
		if (got <= 0)
			return -1;
		buf_append(in, chunk, (size_t)got);
	}
}

static void say(int fd, const char *s)
{
	(void)!write(fd, s, strlen(s));
}

static void sink_conn(struct sink *k, int fd)
{
	struct buf in, data;
	char line[8192], from[256] = "", rcpts[512] = "";
	char *ok[16];
	int nok = 0;
	bool in_data = false, have_mail = false;
	buf_init(&in);
	buf_init(&data);
	say(fd, "220 sink.test ESMTP\r\n");
	while (sink_getline(k, fd, &in, line, sizeof(line)) == 0) {
		if (in_data) {
			if (strcmp(line, ".") != 0) {
				buf_puts(&data, line[0] == '.' ? line + 1 : line);
				buf_puts(&data, "\r\n");
				continue;
			}
			in_data = false;
			pthread_mutex_lock(&k->mu);
			struct sink_msg *m = &k->msgs[k->nmsgs < 8 ? k->nmsgs++ : 7];
			str_lcpy(m->from, from, sizeof(m->from));
			str_lcpy(m->rcpts, rcpts, sizeof(m->rcpts));
			free(m->data);
			m->data = data.data ? data.data : str_dup("");
			buf_init(&data);
			pthread_mutex_unlock(&k->mu);
			for (int i = 0; i < (k->lmtp ? nok : 1); i++) {
				if (k->lmtp && k->lmtp_fail && strcmp(ok[i], k->lmtp_fail) == 0)
					say(fd, "452 4.2.2 mailbox full\r\n");
				else
					say(fd, "250 2.0.0 queued as 42\r\n");
			}
			for (int i = 0; i < nok; i++)
				free(ok[i]);
			nok = 0;
			from[0] = rcpts[0] = '\0';
			have_mail = false;
			if (k->hang_up)
				break;   /* as a server whose idle timeout struck */
		} else if (str_case_prefix(line, "EHLO") || str_case_prefix(line, "LHLO")) {
			say(fd, k->no_pipelining ? "250-sink.test\r\n250 8BITMIME\r\n"
			        : "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n");
		} else if (str_case_prefix(line, "MAIL FROM:<")) {
			pthread_mutex_lock(&k->mu);
			k->nmail++;
			bool fail = k->tempfail_mail != 0;
			if (k->tempfail_mail > 0)
				k->tempfail_mail--;
			pthread_mutex_unlock(&k->mu);
			if (fail) {
				say(fd, "451 4.3.0 try again later\r\n");
				continue;
			}
			char *end = strchr(line + 11, '>');
			str_lcpy(from, line + 11, end ? (size_t)(end - line - 11) + 1 : sizeof(from));
			have_mail = true;
			say(fd, "250 2.1.0 ok\r\n");
		} else if (str_case_prefix(line, "RCPT TO:<")) {
			char addr[256];
			if (!have_mail) {
				say(fd, "503 5.5.1 MAIL first\r\n");
				continue;
			}
			char *end = strchr(line + 9, '>');
			str_lcpy(addr, line + 9, end ? (size_t)(end - line - 9) + 1 : sizeof(addr));
			if (k->fail_rcpt && strcmp(addr, k->fail_rcpt) == 0) {
				say(fd, "550 5.1.1 <bad>: no such user\r\n");
				continue;
			}
			if (rcpts[0])
				strncat(rcpts, ",", sizeof(rcpts) - strlen(rcpts) - 1);
			strncat(rcpts, addr, sizeof(rcpts) - strlen(rcpts) - 1);
			if (nok < 16)
				ok[nok++] = str_dup(addr);
			say(fd, "250 2.1.5 ok\r\n");
		} else if (strcasecmp(line, "DATA") == 0) {
			if (nok == 0) {
				say(fd, "503 5.5.1 no valid recipients\r\n");
				continue;
			}
			in_data = true;
			say(fd, "354 go ahead\r\n");
		} else if (strcasecmp(line, "RSET") == 0) {
			for (int i = 0; i < nok; i++)
				free(ok[i]);
			nok = 0;
			from[0] = rcpts[0] = '\0';
			have_mail = false;
			say(fd, "250 2.0.0 ok\r\n");
		} else if (strcasecmp(line, "QUIT") == 0) {
			say(fd, "221 2.0.0 bye\r\n");
			break;
		} else {
			say(fd, "500 5.5.2 what?\r\n");
		}
	}
	for (int i = 0; i < nok; i++)
		free(ok[i]);
	buf_free(&in);
	buf_free(&data);
	close(fd);
}

static void *sink_main(void *arg)
{
	struct sink *k = arg;
	while (!atomic_load(&k->stop)) {
		struct pollfd p = { .fd = k->lfd, .events = POLLIN };
		if (poll(&p, 1, 50) <= 0)
			continue;
		int fd = accept(k->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&k->mu);
		k->nconn++;
		pthread_mutex_unlock(&k->mu);
		sink_conn(k, fd);
	}
	return NULL;
}

static void sink_start(struct sink *k)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	k->lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(k->lfd, 0);
	ck_assert_int_eq(bind(k->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(k->lfd, 8), 0);
	ck_assert_int_eq(getsockname(k->lfd, (struct sockaddr *)&sin, &len), 0);
	k->port = ntohs(sin.sin_port);
	pthread_mutex_init(&k->mu, NULL);
	ck_assert_int_eq(pthread_create(&k->th, NULL, sink_main, k), 0);
}

static void sink_stop(struct sink *k)
{
	atomic_store(&k->stop, true);
	pthread_join(k->th, NULL);
	close(k->lfd);
	for (int i = 0; i < 8; i++)
		free(k->msgs[i].data);
	pthread_mutex_destroy(&k->mu);
}

static int sink_count(struct sink *k)
{
	pthread_mutex_lock(&k->mu);
	int n = k->nmsgs;
	pthread_mutex_unlock(&k->mu);
	return n;
}

static struct relay *start_smtp(struct sink *k, struct relay_conf *c, const char *scheme)
{
	static char ds[64];
	snprintf(ds, sizeof(ds), "%s://127.0.0.1:%d", scheme, k->port);
	c->downstream = ds;
	char err[256] = "";
	struct relay *r = relay_start_dir(c, spool, err, sizeof(err));
	ck_assert_msg(r != NULL, "relay_start_dir: %s", err);
	return r;
}

/* ---- envelope and state files --------------------------------------------- */

START_TEST(envelope_parse)
{
	spool_make();
	char qid[ID_LEN + 1], path[PATH_MAX + 64];
	queue_msg(qid, 1700000000, "alice@example.org", "bob@example.net,carol@example.net,dave@example.com",
	          "future-key some value\nret FULL\nenvid abc+2Bdef\nsmtputf8 yes\nbody 8bitmime\n",
	          "Subject: hi\r\n\r\nbody\r\n");
	snprintf(path, sizeof(path), "%s/queue/%s", spool, qid);
	struct relay_envelope env;
	ck_assert_int_eq(relay_envelope_read(path, &env), 0);
	ck_assert_str_eq(env.qid, qid);
	ck_assert_int_eq(env.time, 1700000000);
	ck_assert_str_eq(env.from, "alice@example.org");
	ck_assert_uint_eq(env.nrcpts, 3);
	ck_assert_str_eq(env.rcpts[0], "bob@example.net");
	ck_assert_str_eq(env.rcpts[2], "dave@example.com");
	ck_assert_str_eq(env.ret, "FULL");
	ck_assert_str_eq(env.envid, "abc+2Bdef");
	ck_assert(env.smtputf8);
	ck_assert(env.eightbit);
	char *all = read_all(path);
	ck_assert_str_eq(all + env.body_offset, "Subject: hi\r\n\r\nbody\r\n");
	free(all);
	relay_envelope_free(&env);
	spool_remove();
}
END_TEST

START_TEST(envelope_null_sender)
{
	spool_make();
	static const char *const files[] = {
		"POSTERN-QUEUE 1\nqid ABC\ntime 1\nfrom \nrcpt x@y\n\nbody",
		"POSTERN-QUEUE 1\nqid ABC\ntime 1\nfrom\nrcpt x@y\n\nbody",
	};
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/f", spool);
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		write_file(path, files[i], strlen(files[i]));
		struct relay_envelope env;
		ck_assert_int_eq(relay_envelope_read(path, &env), 0);
		ck_assert_str_eq(env.from, "");
		ck_assert(!env.smtputf8 && !env.eightbit && !env.ret && !env.envid);
		ck_assert_int_eq(env.body_offset, (off_t)(strlen(files[i]) - 4));
		relay_envelope_free(&env);
	}
	spool_remove();
}
END_TEST

START_TEST(envelope_garbage)
{
	spool_make();
	static const char *const files[] = {
		"",
		"POSTERN-QUEUE 2\nqid ABC\ntime 1\nfrom a@b\nrcpt x@y\n\n",
		"POSTERN-QUEUE 1\nqid ABC\ntime 1\nfrom a@b\nrcpt x@y\n",        /* truncated */
		"POSTERN-QUEUE 1\nqid ABC\ntime 1\nfrom a@b\nrcpt x@y",          /* no LF */
		"POSTERN-QUEUE 1\nqid ABC\ntime 1\nfrom a@b\n\nbody",            /* no rcpt */
		"POSTERN-QUEUE 1\nqid ABC\ntime 1\nrcpt x@y\n\nbody",            /* no from */
		"POSTERN-QUEUE 1\nqid ABC\nfrom a@b\nrcpt x@y\n\nbody",          /* no time */
		"POSTERN-QUEUE 1\nqid ../../etc\ntime 1\nfrom a@b\nrcpt x@y\n\n",
		"POSTERN-QUEUE 1\nqid ABC\ntime soon\nfrom a@b\nrcpt x@y\n\n",
		"POSTERN-QUEUE 1\nqid ABC\ntime 1\nfrom a@b\nrcpt \n\n",
		"\x7f" "ELF\x02\x01\x01\n\n\n",
	};
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/f", spool);
	struct relay_envelope env;
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		write_file(path, files[i], strlen(files[i]));
		ck_assert_msg(relay_envelope_read(path, &env) < 0, "file %zu parsed", i);
		ck_assert_ptr_null(env.rcpts);
		ck_assert_ptr_null(env.from);
		relay_envelope_free(&env);
	}
	/* a NUL inside a line */
	static const char nul[] = "POSTERN-QUEUE 1\nqid ABC\ntime 1\nfrom a\0b\nrcpt x@y\n\n";
	write_file(path, nul, sizeof(nul) - 1);
	ck_assert_int_lt(relay_envelope_read(path, &env), 0);
	/* random bytes and an endless line */
	char *junk = xmalloc(200000);
	unsigned seed = 7;
	for (size_t i = 0; i < 200000; i++)
		junk[i] = (char)(rand_r(&seed) & 0xff);
	write_file(path, junk, 200000);
	ck_assert_int_lt(relay_envelope_read(path, &env), 0);
	memcpy(junk, "POSTERN-QUEUE 1\nfrom ", 21);
	memset(junk + 21, 'a', 200000 - 21);
	write_file(path, junk, 200000);
	ck_assert_int_eq(relay_envelope_read(path, &env), -EINVAL);
	free(junk);
	snprintf(path, sizeof(path), "%s/missing", spool);
	ck_assert_int_eq(relay_envelope_read(path, &env), -ENOENT);
	spool_remove();
}
END_TEST

/* A queue file is made in two steps: formatted in memory (nothing on
 * disk yet), then created with everything formatted so far. */
START_TEST(spool_prepare_then_create)
{
	spool_make();
	char err[256];
	struct relay_spool *sp = relay_spool_open(spool, err, sizeof(err));
	ck_assert_msg(sp != NULL, "%s", err);
	char *rcpts[] = { "bob@example.net" };
	struct relay_envelope env = { .qid = "Q0SPOOLTEST00001", .time = 1700000000,
		                      .from = "alice@example.org", .rcpts = rcpts, .nrcpts = 1 };
	const char *kv[] = { "auth", "alice", "helo", NULL };
	static const char head[] = "Received: from x\r\n";

	/* prepared and dropped: no file ever existed */
	struct relay_spool_file *f = relay_spool_prepare(sp, &env, kv, 2, head, strlen(head));
	ck_assert_int_eq(count_sub("tmp"), 0);
	relay_spool_abort(f);
	ck_assert_int_eq(count_sub("tmp"), 0);

	f = relay_spool_prepare(sp, &env, kv, 2, head, strlen(head));
	ck_assert_int_eq(relay_spool_create_file(f), 0);
	ck_assert_uint_eq(relay_spool_size(f), strlen(head));
	ck_assert_int_eq(relay_spool_write(f, "Subject: t\r\n", 13), 0);
	ck_assert_uint_eq(relay_spool_size(f), strlen(head) + 13);
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/tmp/%s", spool, env.qid);
	char *got = read_all(path);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(got, "POSTERN-QUEUE 1\nqid Q0SPOOLTEST00001\ntime 1700000000\n"
	                      "from alice@example.org\nrcpt bob@example.net\nauth alice\n\n"
	                      "Received: from x\r\nSubject: t\r\n");
	free(got);

	/* the same queue id again: refused, the first file untouched */
	struct relay_spool_file *g = relay_spool_prepare(sp, &env, NULL, 0, "", 0);
	ck_assert_int_eq(relay_spool_create_file(g), -EEXIST);
	relay_spool_abort(g);
	ck_assert(exists("tmp", env.qid));

	relay_spool_abort(f);
	ck_assert_int_eq(count_sub("tmp"), 0);
	relay_spool_close(sp);
	spool_remove();
}
END_TEST

/* The create and commit threads answer on the owner's loop: a file is
 * created off the loop, written, then committed into queue/. */
struct spool_loop {
	struct relay_spool *sp;
	uv_loop_t loop;
	uv_async_t wake;
	int created, committed;   /* 1 + status once answered */
	int answers;              /* callbacks run */
};

static void spool_loop_wake(uv_async_t *a)
{
	struct spool_loop *sl = a->data;
	relay_spool_drain(sl->sp, &sl->loop);
}

static void spool_loop_created(int status, void *arg)
{
	struct spool_loop *sl = arg;
	sl->created = 1 + status;
	sl->answers++;
}

static void spool_loop_committed(int status, void *arg)
{
	struct spool_loop *sl = arg;
	sl->committed = 1 + status;
	sl->answers++;
}

/* A spool in a fresh directory, and a loop to hear its threads. */
static void spool_loop_begin(struct spool_loop *sl)
{
	spool_make();
	char err[256];
	memset(sl, 0, sizeof(*sl));
	sl->sp = relay_spool_open(spool, err, sizeof(err));
	ck_assert_msg(sl->sp != NULL, "%s", err);
	ck_assert_int_eq(uv_loop_init(&sl->loop), 0);
	ck_assert_int_eq(uv_async_init(&sl->loop, &sl->wake, spool_loop_wake), 0);
	sl->wake.data = sl;
}

/* Runs the loop until *count reaches n (a bounded number of turns). */
static void spool_loop_wait(struct spool_loop *sl, const int *count, int n)
{
	for (int i = 0; i < 500 && *count < n; i++)
		uv_run(&sl->loop, UV_RUN_ONCE);
}

/* Nothing may be left open on the loop. */
static void spool_loop_end(struct spool_loop *sl)
{
	uv_close((uv_handle_t *)&sl->wake, NULL);
	uv_run(&sl->loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&sl->loop), 0);
	relay_spool_close(sl->sp);
	spool_remove();
}

/* A file of the test's, created at once (on the test's thread). */
static struct relay_spool_file *spool_loop_file(struct spool_loop *sl, const char *qid)
{
	char *rcpts[] = { "bob@example.net" };
	struct relay_envelope env = { .time = 1700000000, .from = "alice@example.org",
		                      .rcpts = rcpts, .nrcpts = 1 };
	snprintf(env.qid, sizeof(env.qid), "%s", qid);
	struct relay_spool_file *f = relay_spool_prepare(sl->sp, &env, NULL, 0, "", 0);
	ck_assert_int_eq(relay_spool_create_file(f), 0);
	ck_assert_int_eq(relay_spool_write(f, "Subject: t\r\n\r\nhi\r\n", 19), 0);
	return f;
}

START_TEST(spool_threads_answer_on_the_loop)
{
	struct spool_loop sl;
	spool_loop_begin(&sl);
	char *rcpts[] = { "bob@example.net" };
	struct relay_envelope env = { .qid = "Q0SPOOLTHREADS01", .time = 1700000000,
		                      .from = "alice@example.org", .rcpts = rcpts, .nrcpts = 1 };
	struct relay_spool_file *f = relay_spool_prepare(sl.sp, &env, NULL, 0, "", 0);
	relay_spool_create_async(f, &sl.loop, &sl.wake, spool_loop_created, &sl);
	spool_loop_wait(&sl, &sl.answers, 1);
	ck_assert_int_eq(sl.created, 1);
	ck_assert(exists("tmp", env.qid));
	ck_assert_int_eq(relay_spool_write(f, "Subject: t\r\n\r\nhi\r\n", 19), 0);
	relay_spool_commit(f, NULL, &sl.loop, &sl.wake, spool_loop_committed, &sl);
	spool_loop_wait(&sl, &sl.answers, 2);
	ck_assert_int_eq(sl.committed, 1);
	ck_assert(exists("queue", env.qid));
	ck_assert_int_eq(count_sub("tmp"), 0);
	spool_loop_end(&sl);
}
END_TEST

/* A rider: what the rider writer saw of its file, and what it answers. */
struct rider {
	const char *qid;
	int answer;
	bool plug;           /* start() holds the commit thread until `go` */
	int starts, finishes, cancels;
	bool in_tmp_at_start, in_queue_at_start, in_queue_at_finish;
};

struct rider_log {
	int batches;
	size_t last_n;        /* riders in the latest batch */
	bool handle_passed;   /* finish() got what start() returned */
	sem_t go;
};

static void *riders_start(void *ctx, void *const *riders, size_t n)
{
	struct rider_log *log = ctx;
	log->batches++;
	log->last_n = n;
	for (size_t i = 0; i < n; i++) {
		struct rider *r = riders[i];
		if (r->plug)
			sem_wait(&log->go);
		r->starts++;
		r->in_tmp_at_start = exists("tmp", r->qid);
		r->in_queue_at_start = exists("queue", r->qid);
	}
	return log;
}

static void riders_finish(void *ctx, void *started, void *const *riders, int *status, size_t n)
{
	struct rider_log *log = ctx;
	log->handle_passed = started == log;
	for (size_t i = 0; i < n; i++) {
		struct rider *r = riders[i];
		r->finishes++;
		r->in_queue_at_finish = exists("queue", r->qid);
		status[i] = r->answer;
	}
}

static void riders_cancel(void *ctx, void *const *riders, size_t n)
{
	(void)ctx;
	for (size_t i = 0; i < n; i++)
		((struct rider *)riders[i])->cancels++;
}

struct rider_file {
	struct spool_loop *sl;
	int committed;   /* 1 + status once answered */
};

static void rider_file_committed(int status, void *arg)
{
	struct rider_file *rf = arg;
	rf->committed = 1 + status;
	rf->sl->committed++;
}

/* A spool on a loop whose riders the log above writes. */
static void rider_loop_begin(struct spool_loop *sl, struct rider_log *log)
{
	spool_loop_begin(sl);
	memset(log, 0, sizeof(*log));
	sem_init(&log->go, 0, 0);
	const struct relay_riders ops = { riders_start, riders_finish, riders_cancel, log };
	relay_spool_set_riders(sl->sp, &ops);
}

static void rider_loop_end(struct spool_loop *sl, struct rider_log *log)
{
	spool_loop_end(sl);
	sem_destroy(&log->go);
}

/* The trace records ride with their queue files: started once the files
 * are written, finished before they are renamed into queue/, and a file
 * whose record failed is never queued. */
START_TEST(spool_riders_decide_what_is_queued)
{
	struct spool_loop sl;
	struct rider_log log;
	rider_loop_begin(&sl, &log);
	/* The plug's batch holds the commit thread until the others are all
	 * waiting, so that they make one batch, riders and none mixed. */
	enum { NFILES = 5 };
	const char *qids[NFILES] = { "Q0RIDERSPLUG0000", "Q0RIDERSOK000001", "Q0RIDERSNONE0002",
		                     "Q0RIDERSFAIL0003", "Q0RIDERSOK000004" };
	struct rider riders[NFILES] = {
		{ .qid = qids[0], .plug = true }, { .qid = qids[1] }, { .qid = NULL },
		{ .qid = qids[3], .answer = -EIO }, { .qid = qids[4] },
	};
	struct rider_file rf[NFILES];
	for (int i = 0; i < NFILES; i++) {
		rf[i] = (struct rider_file){ &sl, 0 };
		relay_spool_commit(spool_loop_file(&sl, qids[i]), riders[i].qid ? &riders[i] : NULL,
		                   &sl.loop, &sl.wake, rider_file_committed, &rf[i]);
		if (i == 0)
			usleep(50000);   /* the plug's batch is taken alone */
	}
	sem_post(&log.go);
	spool_loop_wait(&sl, &sl.committed, NFILES);
	ck_assert_int_eq(sl.committed, NFILES);
	ck_assert_int_eq(log.batches, 2);
	ck_assert_uint_eq(log.last_n, 3);
	ck_assert(log.handle_passed);
	for (int i = 0; i < NFILES; i++) {
		if (!riders[i].qid)
			continue;
		ck_assert_int_eq(riders[i].starts, 1);
		ck_assert_int_eq(riders[i].finishes, 1);
		ck_assert(riders[i].in_tmp_at_start);
		ck_assert(!riders[i].in_queue_at_start);
		ck_assert(!riders[i].in_queue_at_finish);
		ck_assert_int_eq(riders[i].cancels, 0);   /* every file that could, made it */
	}
	for (int i = 0; i < NFILES; i++) {
		bool queued = riders[i].answer == 0;
		ck_assert_int_eq(rf[i].committed, 1 + riders[i].answer);
		ck_assert_msg(exists("queue", qids[i]) == queued, "%s", qids[i]);
	}
	ck_assert_int_eq(count_sub("tmp"), 0);
	rider_loop_end(&sl, &log);
}
END_TEST

/* A file that fails after its rider was written (here its rename: a
 * directory stands in its place in queue/) takes the rider back, before
 * its owner hears; the other file of the batch is not touched. */
START_TEST(spool_rider_of_failed_file_is_cancelled)
{
	struct spool_loop sl;
	struct rider_log log;
	rider_loop_begin(&sl, &log);
	const char *qids[2] = { "Q0RIDERSKEPT0001", "Q0RIDERSLOST0002" };
	char blocker[PATH_MAX + 64];
	snprintf(blocker, sizeof(blocker), "%s/queue/%s", spool, qids[1]);
	ck_assert_int_eq(mkdir(blocker, 0700), 0);
	struct rider riders[2] = { { .qid = qids[0] }, { .qid = qids[1] } };
	struct rider_file rf[2] = { { &sl, 0 }, { &sl, 0 } };
	for (int i = 0; i < 2; i++)
		relay_spool_commit(spool_loop_file(&sl, qids[i]), &riders[i], &sl.loop, &sl.wake,
		                   rider_file_committed, &rf[i]);
	spool_loop_wait(&sl, &sl.committed, 2);
	ck_assert_int_eq(sl.committed, 2);
	ck_assert_int_eq(rf[0].committed, 1);
	ck_assert_int_eq(riders[0].cancels, 0);
	ck_assert_int_lt(rf[1].committed, 1);   /* the rename failed */
	ck_assert_int_eq(riders[1].finishes, 1);
	ck_assert_int_eq(riders[1].cancels, 1);
	ck_assert_int_eq(count_sub("tmp"), 0);
	rider_loop_end(&sl, &log);
}
END_TEST

/* Files that carry a rider cannot be queued when nobody writes riders. */
START_TEST(spool_rider_without_writer_is_refused)
{
	struct spool_loop sl;
	spool_loop_begin(&sl);
	struct relay_spool_file *f = spool_loop_file(&sl, "Q0RIDERNOWRITER1");
	struct rider r = { .qid = "Q0RIDERNOWRITER1" };
	relay_spool_commit(f, &r, &sl.loop, &sl.wake, spool_loop_committed, &sl);
	spool_loop_wait(&sl, &sl.answers, 1);
	ck_assert_int_eq(sl.committed, 1 - ENOSYS);
	ck_assert(!exists("queue", r.qid));
	ck_assert_int_eq(count_sub("tmp"), 0);
	spool_loop_end(&sl);
}
END_TEST

START_TEST(state_roundtrip)
{
	spool_make();
	struct relay__state st, back;
	relay__state_init(&st, 3);
	st.attempts = 4;
	st.next_try = 1700000123;
	st.last_error = str_dup("451 4.3.0 try\r\nlater");
	st.rcpts[0].state = RELAY__DELIVERED;
	st.rcpts[2].state = RELAY__FAILED;
	strcpy(st.rcpts[2].status, "5.1.1");
	st.rcpts[2].diag = str_dup("550 5.1.1 no such user");
	ck_assert_int_eq(relay__state_write(spool, "QID1", &st), 0);
	ck_assert_int_eq(relay__state_read(spool, "QID1", 3, &back), 0);
	ck_assert_uint_eq(back.attempts, 4);
	ck_assert_int_eq(back.next_try, 1700000123);
	ck_assert_str_eq(back.last_error, "451 4.3.0 try  later");
	ck_assert_int_eq(back.rcpts[0].state, RELAY__DELIVERED);
	ck_assert_int_eq(back.rcpts[1].state, RELAY__TODO);
	ck_assert_int_eq(back.rcpts[2].state, RELAY__FAILED);
	ck_assert_str_eq(back.rcpts[2].status, "5.1.1");
	ck_assert_str_eq(back.rcpts[2].diag, "550 5.1.1 no such user");
	relay__state_free(&back);
	/* a state for fewer recipients than the envelope is refused */
	ck_assert_int_eq(relay__state_read(spool, "QID1", 2, &back), -EINVAL);
	ck_assert_uint_eq(back.attempts, 0);
	relay__state_free(&back);
	ck_assert_int_eq(relay__state_read(spool, "NONE", 2, &back), 0);
	relay__state_free(&back);
	relay__state_free(&st);

	char code[12];
	relay__status_code("550 5.1.1 no such user", true, code);
	ck_assert_str_eq(code, "5.1.1");
	relay__status_code("550 no such user", true, code);
	ck_assert_str_eq(code, "5.0.0");
	relay__status_code("552 4.2.2 wrong class", true, code);
	ck_assert_str_eq(code, "5.0.0");
	spool_remove();
}
END_TEST

START_TEST(downstream_parse)
{
	struct relay__downstream ds;
	char err[256];
	ck_assert_int_eq(relay__downstream_parse("smtp://mx.example:25", &ds, err, sizeof(err)), 0);
	ck_assert_int_eq(ds.proto, RELAY__SMTP);
	ck_assert_str_eq(ds.host, "mx.example");
	ck_assert_str_eq(ds.port, "25");
	relay__downstream_free(&ds);
	ck_assert_int_eq(relay__downstream_parse("lmtp://[::1]:24", &ds, err, sizeof(err)), 0);
	ck_assert_int_eq(ds.proto, RELAY__LMTP);
	ck_assert_str_eq(ds.host, "::1");
	relay__downstream_free(&ds);
	ck_assert_int_eq(relay__downstream_parse("lmtp:unix:/run/lmtp", &ds, err, sizeof(err)), 0);
	ck_assert_str_eq(ds.path, "/run/lmtp");
	relay__downstream_free(&ds);
	ck_assert_int_eq(relay__downstream_parse(NULL, &ds, err, sizeof(err)), 0);
	ck_assert_int_eq(ds.proto, RELAY__MAILDIR);
	static const char *const bad[] = { "smtp://host", "smtp://:25", "smtp://h:0",
	                                   "smtp://h:99999", "http://h:25", "lmtp:unix:rel",
	                                   "smtp://[::1:25", "smtp://h:25x" };
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		ck_assert_msg(relay__downstream_parse(bad[i], &ds, err, sizeof(err)) == -EINVAL,
		              "%s accepted", bad[i]);
}
END_TEST

/* ---- Maildir ------------------------------------------------------------- */

START_TEST(maildir_delivery)
{
	spool_make();
	char md[PATH_MAX + 16], newdir[PATH_MAX + 32], q1[ID_LEN + 1], q2[ID_LEN + 1];
	snprintf(md, sizeof(md), "%s/Maildir", spool);
	snprintf(newdir, sizeof(newdir), "%s/new", md);
	/* left by a "crash": must be delivered at start */
	queue_msg(q1, time(NULL), "alice@example.org", "bob@example.net,carol@example.net", NULL,
	          "Subject: test\r\nX: y\r\n\r\nline1\r\n.dot\r\nbare\rcr\r\n");
	struct relay_conf c = base_conf();
	c.maildir = md;
	char err[256] = "";
	struct relay *r = relay_start_dir(&c, spool, err, sizeof(err));
	ck_assert_msg(r != NULL, "%s", err);
	WAIT_FOR(!exists("queue", q1), 5000);
	ck_assert(!exists("queue", q1));
	ck_assert_int_eq(count_files(newdir), 1);

	DIR *d = opendir(newdir);
	struct dirent *de;
	char path[PATH_MAX * 2];
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			snprintf(path, sizeof(path), "%s/%s", newdir, de->d_name);
	closedir(d);
	char *got = read_all(path);
	ck_assert_str_eq(got, "Return-Path: <alice@example.org>\nDelivered-To: bob@example.net\n"
	                      "Subject: test\nX: y\n\nline1\n.dot\nbare\rcr\n");
	free(got);

	/* a message committed while running */
	queue_msg(q2, time(NULL), "", "x@example.net", NULL, "Subject: two\r\n\r\nhi\r\n");
	relay_enqueue(r, q2);
	WAIT_FOR(count_files(newdir) == 2 && !exists("queue", q2), 5000);
	ck_assert_int_eq(count_files(newdir), 2);
	ck_assert_int_eq(count_sub("queue"), 0);
	ck_assert_int_eq(count_sub("state"), 0);
	ck_assert_int_eq(count_sub("tmp"), 0);
	relay_stop(r);
	spool_remove();
}
END_TEST

/* ---- SMTP / LMTP ----------------------------------------------------------- */

START_TEST(smtp_retry)
{
	spool_make();
	struct sink k = { .tempfail_mail = 1 };
	sink_start(&k);
	struct relay_conf c = base_conf();
	struct relay *r = start_smtp(&k, &c, "smtp");
	char qid[ID_LEN + 1];
	const char *body = "Subject: t\r\n\r\n.leading dot\r\n..two\r\nlast line without CRLF";
	queue_msg(qid, time(NULL), "alice@example.org", "bob@example.net", NULL, body);
	relay_enqueue(r, qid);
	WAIT_FOR(sink_count(&k) == 1 && !exists("queue", qid), 6000);
	ck_assert_int_eq(sink_count(&k), 1);
	ck_assert_int_eq(k.nmail, 2);
	ck_assert_str_eq(k.msgs[0].from, "alice@example.org");
	ck_assert_str_eq(k.msgs[0].rcpts, "bob@example.net");
	char *want = str_printf("%s\r\n", body);
	ck_assert_str_eq(k.msgs[0].data, want);
	free(want);
	WAIT_FOR(!exists("state", qid), 2000);
	ck_assert(!exists("queue", qid));
	ck_assert(!exists("state", qid));
	relay_stop(r);
	sink_stop(&k);
	spool_remove();
}
END_TEST

/* A cached session the downstream has closed meanwhile costs a new
 * session, not a deferral: each message goes out at its first attempt.
 * _i: 0 with PIPELINING (the RSET travels with the next MAIL), 1 without. */
START_TEST(smtp_stale_session)
{
	spool_make();
	struct sink k = { .hang_up = true, .no_pipelining = _i == 1 };
	sink_start(&k);
	struct relay_conf c = base_conf();
	c.retry_min = 60;   /* a deferral would miss the wait below */
	c.retry_max = 120;
	struct relay *r = start_smtp(&k, &c, "smtp");
	for (int i = 0; i < 3; i++) {
		char qid[ID_LEN + 1];
		queue_msg(qid, time(NULL), "alice@example.org", "bob@example.net", NULL,
		          "Subject: t\r\n\r\nhi\r\n");
		relay_enqueue(r, qid);
		WAIT_FOR(sink_count(&k) == i + 1 && !exists("queue", qid), 3000);
		ck_assert_int_eq(sink_count(&k), i + 1);
		ck_assert(!exists("queue", qid));
	}
	ck_assert_int_eq(k.nconn, 3);
	ck_assert_int_eq(k.nmail, 3);
	relay_stop(r);
	sink_stop(&k);
	spool_remove();
}
END_TEST

/* _i: 0 with PIPELINING, 1 without */
START_TEST(smtp_bounce)
{
	spool_make();
	struct sink k = { .fail_rcpt = "bad@example.net", .no_pipelining = _i == 1 };
	sink_start(&k);
	struct relay_conf c = base_conf();
	struct relay *r = start_smtp(&k, &c, "smtp");
	char qid[ID_LEN + 1];
	queue_msg(qid, time(NULL), "sender@example.org", "good@example.net,bad@example.net", NULL,
	          "Subject: orig\r\nMessage-ID: <1@x>\r\n\r\nsecret body\r\n");
	relay_enqueue(r, qid);
	WAIT_FOR(sink_count(&k) == 2 && count_sub("queue") == 0, 6000);
	ck_assert_int_eq(sink_count(&k), 2);
	ck_assert_int_eq(count_sub("queue"), 0);
	ck_assert_str_eq(k.msgs[0].rcpts, "good@example.net");
	struct sink_msg *dsn = &k.msgs[1];
	ck_assert_str_eq(dsn->from, "");
	ck_assert_str_eq(dsn->rcpts, "sender@example.org");
	ck_assert_ptr_nonnull(strstr(dsn->data, "multipart/report; report-type=delivery-status"));
	ck_assert_ptr_nonnull(strstr(dsn->data, "Reporting-MTA: dns; relay.test\r\n"));
	ck_assert_ptr_nonnull(strstr(dsn->data, "Final-Recipient: rfc822; bad@example.net\r\n"));
	ck_assert_ptr_nonnull(strstr(dsn->data, "Action: failed\r\nStatus: 5.1.1\r\n"));
	ck_assert_ptr_nonnull(strstr(dsn->data, "Diagnostic-Code: smtp; 550 5.1.1"));
	ck_assert_ptr_nonnull(strstr(dsn->data, "text/rfc822-headers"));
	ck_assert_ptr_nonnull(strstr(dsn->data, "Subject: orig"));
	ck_assert_ptr_null(strstr(dsn->data, "secret body"));
	ck_assert_ptr_null(strstr(dsn->data, "good@example.net"));
	/* both messages went over one cached session */
	ck_assert_int_eq(k.nconn, 1);
	relay_stop(r);
	sink_stop(&k);
	spool_remove();
}
END_TEST

START_TEST(bounce_of_bounce)
{
	spool_make();
	struct sink k = { .fail_rcpt = "bad@example.net" };
	sink_start(&k);
	struct relay_conf c = base_conf();
	struct relay *r = start_smtp(&k, &c, "smtp");
	char qid[ID_LEN + 1];
	queue_msg(qid, time(NULL), "", "bad@example.net", NULL, "Subject: a bounce\r\n\r\nx\r\n");
	relay_enqueue(r, qid);
	WAIT_FOR(count_sub("queue") == 0, 5000);
	usleep(200000);
	ck_assert_int_eq(count_sub("queue"), 0);
	ck_assert_int_eq(sink_count(&k), 0);
	relay_stop(r);
	sink_stop(&k);
	spool_remove();
}
END_TEST

START_TEST(dsn_file)
{
	spool_make();
	char qid[ID_LEN + 1], path[PATH_MAX + 64], nq[ID_LEN + 1];
	for (int full = 0; full < 2; full++) {
		queue_msg(qid, 1700000000, "sender@example.org", "ok@example.net,bad@example.net",
		          full ? "ret FULL\nenvid E1\n" : NULL,
		          "Subject: orig\r\n\r\nthe body\r\n");
		snprintf(path, sizeof(path), "%s/queue/%s", spool, qid);
		struct relay_envelope env;
		ck_assert_int_eq(relay_envelope_read(path, &env), 0);
		struct relay__state st;
		relay__state_init(&st, 2);
		st.rcpts[0].state = RELAY__DELIVERED;
		st.rcpts[1].state = RELAY__FAILED;
		strcpy(st.rcpts[1].status, "5.1.1");
		st.rcpts[1].diag = str_dup("550 5.1.1 no such user");
		struct relay__ctx ctx = { .spool_dir = spool, .hostname = "relay.test" };
		int fd = open(path, O_RDONLY);
		ck_assert_int_eq(relay__dsn_create(&ctx, &env, fd, &st, nq), 0);
		close(fd);
		relay__state_free(&st);
		relay_envelope_free(&env);

		snprintf(path, sizeof(path), "%s/queue/%s", spool, nq);
		ck_assert_int_eq(relay_envelope_read(path, &env), 0);
		ck_assert_str_eq(env.from, "");
		ck_assert_uint_eq(env.nrcpts, 1);
		ck_assert_str_eq(env.rcpts[0], "sender@example.org");
		char *all = read_all(path);
		const char *msg = all + env.body_offset;
		ck_assert_ptr_nonnull(strstr(msg, "Content-Type: multipart/report; report-type=delivery-status;"));
		ck_assert_ptr_nonnull(strstr(msg, "Content-Type: message/delivery-status\r\n"));
		ck_assert_ptr_nonnull(strstr(msg, "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
		ck_assert_ptr_nonnull(strstr(msg, "Final-Recipient: rfc822; bad@example.net\r\n"
		                                  "Action: failed\r\nStatus: 5.1.1\r\n"));
		ck_assert_ptr_null(strstr(msg, "rfc822; ok@example.net"));
		ck_assert_ptr_nonnull(strstr(msg, "Subject: orig\r\n"));
		ck_assert(!strstr(msg, "\n\n") && !strstr(msg, "\r\r"));
		if (full) {
			ck_assert_ptr_nonnull(strstr(msg, "Content-Type: message/rfc822\r\n"));
			ck_assert_ptr_nonnull(strstr(msg, "Original-Envelope-Id: E1\r\n"));
			ck_assert_ptr_nonnull(strstr(msg, "\r\nthe body\r\n\r\n--=_postern_"));
		} else {
			ck_assert_ptr_nonnull(strstr(msg, "Content-Type: text/rfc822-headers\r\n"));
			ck_assert_ptr_null(strstr(msg, "the body"));
		}
		char end[64];
		snprintf(end, sizeof(end), "--=_postern_%s--\r\n", nq);
		ck_assert_str_eq(msg + strlen(msg) - strlen(end), end);
		free(all);
		relay_envelope_free(&env);
	}
	ck_assert_int_eq(count_sub("tmp"), 0);
	spool_remove();
}
END_TEST

struct listed {
	int n;
	unsigned attempts;
	time_t next_try;
	char last_error[256];
	bool done[4];
	char qid[ID_LEN + 1];
};

static void on_list(const struct relay_queue_entry *e, void *arg)
{
	struct listed *l = arg;
	l->n++;
	l->attempts = e->attempts;
	l->next_try = e->next_try;
	str_lcpy(l->last_error, e->last_error ? e->last_error : "", sizeof(l->last_error));
	for (size_t i = 0; i < e->env->nrcpts && i < 4; i++)
		l->done[i] = e->done[i];
	str_lcpy(l->qid, e->env->qid, sizeof(l->qid));
}

START_TEST(queue_list_deferred)
{
	spool_make();
	/* a port nobody listens on */
	struct sink k = { 0 };
	sink_start(&k);
	atomic_store(&k.stop, true);
	pthread_join(k.th, NULL);
	close(k.lfd);
	pthread_mutex_destroy(&k.mu);

	struct relay_conf c = base_conf();
	c.retry_min = 60;
	c.retry_max = 600;
	struct relay *r = start_smtp(&k, &c, "smtp");
	char qid[ID_LEN + 1];
	queue_msg(qid, time(NULL), "alice@example.org", "bob@example.net", NULL, "S: x\r\n\r\nx\r\n");
	relay_enqueue(r, qid);
	WAIT_FOR(exists("state", qid), 5000);
	relay_stop(r);
	struct listed l = { 0 };
	ck_assert_int_eq(relay_queue_list(spool, on_list, &l), 1);
	ck_assert_int_eq(l.n, 1);
	ck_assert_str_eq(l.qid, qid);
	ck_assert_uint_eq(l.attempts, 1);
	ck_assert_int_ge(l.next_try, time(NULL) + 50);
	ck_assert_msg(strstr(l.last_error, "connect to 127.0.0.1:"), "%s", l.last_error);
	ck_assert(!l.done[0]);
	ck_assert_int_eq(relay_queue_list("/nonexistent", on_list, &l), -ENOENT);
	spool_remove();
}
END_TEST

START_TEST(lmtp_partial)
{
	spool_make();
	struct sink k = { .lmtp = true, .lmtp_fail = "two@example.net" };
	sink_start(&k);
	struct relay_conf c = base_conf();
	c.retry_min = 60;
	c.retry_max = 600;
	struct relay *r = start_smtp(&k, &c, "lmtp");
	char qid[ID_LEN + 1];
	queue_msg(qid, time(NULL), "alice@example.org", "one@example.net,two@example.net,three@example.net",
	          NULL, "Subject: l\r\n\r\nhello\r\n");
	relay_enqueue(r, qid);
	WAIT_FOR(exists("state", qid), 5000);
	relay_stop(r);
	ck_assert_int_eq(sink_count(&k), 1);
	struct listed l = { 0 };
	ck_assert_int_eq(relay_queue_list(spool, on_list, &l), 1);
	ck_assert(l.done[0] && !l.done[1] && l.done[2]);
	ck_assert_uint_eq(l.attempts, 1);
	ck_assert_str_eq(l.last_error, "452 4.2.2 mailbox full");

	/* the next run tries only the recipient that is left */
	c.retry_min = 1;
	struct relay__state st;
	ck_assert_int_eq(relay__state_read(spool, qid, 3, &st), 0);
	st.next_try = 0;
	ck_assert_int_eq(relay__state_write(spool, qid, &st), 0);
	relay__state_free(&st);
	k.lmtp_fail = NULL;
	r = start_smtp(&k, &c, "lmtp");
	WAIT_FOR(!exists("queue", qid), 5000);
	relay_stop(r);
	ck_assert_int_eq(sink_count(&k), 2);
	ck_assert_str_eq(k.msgs[1].rcpts, "two@example.net");
	ck_assert_int_eq(count_sub("state"), 0);
	sink_stop(&k);
	spool_remove();
}
END_TEST

START_TEST(expired_bounce)
{
	spool_make();
	struct sink k = { .tempfail_mail = -1 };
	sink_start(&k);
	struct relay_conf c = base_conf();
	c.max_queue_time = 50;
	c.retry_min = 60;
	c.retry_max = 600;
	struct relay *r = start_smtp(&k, &c, "smtp");
	char qid[ID_LEN + 1], nq[ID_LEN + 1] = "";
	queue_msg(qid, time(NULL) - 100, "alice@example.org", "bob@example.net", NULL,
	          "Subject: old\r\n\r\nx\r\n");
	relay_enqueue(r, qid);
	/* the bounce itself is deferred by the same sink */
	WAIT_FOR(!exists("queue", qid) && other_qid(qid, nq) && exists("state", nq), 5000);
	relay_stop(r);
	ck_assert(!exists("queue", qid));
	ck_assert(other_qid(qid, nq));
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/queue/%s", spool, nq);
	char *all = read_all(path);
	ck_assert_ptr_nonnull(all);
	ck_assert_ptr_nonnull(strstr(all, "\nfrom \nrcpt alice@example.org\n"));
	ck_assert_ptr_nonnull(strstr(all, "Status: 4.4.7\r\n"));
	ck_assert_ptr_nonnull(strstr(all, "Diagnostic-Code: smtp; 451 4.3.0 try again later\r\n"));
	ck_assert_ptr_nonnull(strstr(all, "delivery time expired"));
	free(all);
	sink_stop(&k);
	spool_remove();
}
END_TEST

static Suite *relay_suite(void)
{
	Suite *s = suite_create("relay");
	TCase *files = tcase_create("files");
	tcase_add_test(files, envelope_parse);
	tcase_add_test(files, envelope_null_sender);
	tcase_add_test(files, envelope_garbage);
	tcase_add_test(files, state_roundtrip);
	tcase_add_test(files, spool_prepare_then_create);
	tcase_add_test(files, spool_threads_answer_on_the_loop);
	tcase_add_test(files, spool_riders_decide_what_is_queued);
	tcase_add_test(files, spool_rider_without_writer_is_refused);
	tcase_add_test(files, spool_rider_of_failed_file_is_cancelled);
	tcase_add_test(files, downstream_parse);
	tcase_add_test(files, dsn_file);
	suite_add_tcase(s, files);
	TCase *run = tcase_create("runner");
	tcase_set_timeout(run, 30);
	tcase_add_test(run, maildir_delivery);
	tcase_add_test(run, smtp_retry);
	tcase_add_loop_test(run, smtp_stale_session, 0, 2);
	tcase_add_loop_test(run, smtp_bounce, 0, 2);
	tcase_add_test(run, bounce_of_bounce);
	tcase_add_test(run, queue_list_deferred);
	tcase_add_test(run, lmtp_partial);
	tcase_add_test(run, expired_bounce);
	suite_add_tcase(s, run);
	return s;
}

int main(void)
{
	log_open("test_relay", false, getenv("TEST_VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN);
	strcpy(base, "/tmp/test_relay.XXXXXX");
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	SRunner *sr = srunner_create(relay_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	remove_tree(base);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
