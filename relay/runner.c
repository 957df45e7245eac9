/*
 * runner.c - the queue runner: a pool of worker threads doing blocking
 * deliveries. One mutex guards the schedule: a FIFO of messages ready now,
 * a min-heap of deferred messages by next try, and a hash of every
 * scheduled queue id so that no message is delivered twice at once.
 *
 * A worker takes a queue id, reads the envelope and state/<qid>, hands the
 * recipients still to do to the Maildir or SMTP/LMTP agent, then either
 * writes state/<qid> and reschedules with exponential backoff, or, when
 * every recipient is done, bounces the failures (dsn.c) and removes the
 * message. A message left by a crash or restart is found by the scan in
 * relay_start_dir().
 *
 * Ownership: relay_start_dir() returns a relay freed by relay_stop(); the
 * schedule's items are owned by the relay and freed with it.
 */
#include "relay/relay_int.h"
#include "certs/certs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum item_where { IT_READY, IT_WAIT, IT_RUN };

struct item {
	char qid[ID_LEN + 1];
	enum item_where where;
	bool again;              /* enqueued while running: try again at once */
	time_t due;              /* IT_WAIT: next try */
	size_t heap_i;
	struct item *hnext;      /* hash chain */
	struct item *rnext;      /* ready FIFO */
};

struct worker {
	struct relay *r;
	struct relay__smtp *smtp;  /* NULL for Maildir */
	pthread_t th;
};

struct relay {
	struct relay__ctx ctx;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
	struct item **hash;
	size_t nbuckets, nitems;
	struct item *rhead, *rtail;
	struct item **heap;
	size_t nheap, heapcap;
	struct worker *workers;
	unsigned nworkers;
};

/* ---- attempt helpers (used by the delivery agents) ----------------------- */

void relay__attempt_set(struct relay__attempt *a, size_t i, enum relay__result res,
                        const char *reply)
{
	a->result[i] = res;
	free(a->reply[i]);
	a->reply[i] = NULL;
	if (reply) {
		size_t n = strlen(reply) + 1;
		a->reply[i] = xmalloc(n);
		relay__one_line(a->reply[i], n, reply);
	}
}

void relay__attempt_set_pending(struct relay__attempt *a, enum relay__result res,
                                const char *reply)
{
	for (size_t i = 0; i < a->env->nrcpts; i++)
		if (a->result[i] == RELAY__PENDING)
			relay__attempt_set(a, i, res, reply);
}

void relay__attempt_free(struct relay__attempt *a)
{
	for (size_t i = 0; i < a->env->nrcpts; i++)
		free(a->reply[i]);
	free(a->reply);
	free(a->result);
}

/* ---- schedule (caller holds r->mu) --------------------------------------- */

static size_t hash_qid(const char *qid)
{
	size_t h = 2166136261u;
	for (; *qid; qid++)
		h = (h ^ (unsigned char)*qid) * 16777619u;
	return h;
}

static struct item **hash_slot(struct relay *r, const char *qid)
{
	struct item **p = &r->hash[hash_qid(qid) & (r->nbuckets - 1)];
	while (*p && strcmp((*p)->qid, qid) != 0)
		p = &(*p)->hnext;
	return p;
}

static void hash_grow(struct relay *r)
{
	size_t nb = r->nbuckets * 2;
	struct item **h = xcalloc(nb, sizeof(*h));
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct item *it = r->hash[i], *next;
		for (; it; it = next) {
			next = it->hnext;
			struct item **slot = &h[hash_qid(it->qid) & (nb - 1)];
			it->hnext = *slot;
			*slot = it;
		}
	}
	free(r->hash);
	r->hash = h;
	r->nbuckets = nb;
}

static bool heap_less(const struct relay *r, size_t a, size_t b)
{
	return r->heap[a]->due < r->heap[b]->due;
}

static void heap_swap(struct relay *r, size_t a, size_t b)
{
	struct item *t = r->heap[a];
	r->heap[a] = r->heap[b];
	r->heap[b] = t;
	r->heap[a]->heap_i = a;
	r->heap[b]->heap_i = b;
}

static void heap_up(struct relay *r, size_t i)
{
	while (i > 0 && heap_less(r, i, (i - 1) / 2)) {
		heap_swap(r, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct relay *r, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < r->nheap && heap_less(r, l, m))
			m = l;
		if (l + 1 < r->nheap && heap_less(r, l + 1, m))
			m = l + 1;
		if (m == i)
			return;
		heap_swap(r, i, m);
		i = m;
	}
}

static void heap_push(struct relay *r, struct item *it)
{
	if (r->nheap == r->heapcap) {
		r->heapcap = r->heapcap ? r->heapcap * 2 : 64;
		r->heap = xrealloc(r->heap, r->heapcap * sizeof(*r->heap));
	}
	it->where = IT_WAIT;
	it->heap_i = r->nheap;
	r->heap[r->nheap++] = it;
	heap_up(r, it->heap_i);
}

static void heap_remove(struct relay *r, struct item *it)
{
	size_t i = it->heap_i, last = --r->nheap;
	if (i != last) {
		heap_swap(r, i, last);
		heap_down(r, i);
		heap_up(r, i);
	}
}

static void ready_push(struct relay *r, struct item *it)
{
	it->where = IT_READY;
	it->rnext = NULL;
	if (r->rtail)
		r->rtail->rnext = it;
	else
		r->rhead = it;
	r->rtail = it;
}

static struct item *ready_pop(struct relay *r)
{
	struct item *it = r->rhead;
	if (it) {
		r->rhead = it->rnext;
		if (!r->rhead)
			r->rtail = NULL;
	}
	return it;
}

/* Adds a new item for qid, or returns NULL when it is already scheduled. */
static struct item *item_add(struct relay *r, const char *qid)
{
	struct item **slot = hash_slot(r, qid);
	if (*slot)
		return NULL;
	struct item *it = xcalloc(1, sizeof(*it));
	str_lcpy(it->qid, qid, sizeof(it->qid));
	*slot = it;
	if (++r->nitems > r->nbuckets)
		hash_grow(r);
	return it;
}

static void item_remove(struct relay *r, struct item *it)
{
	struct item **slot = hash_slot(r, it->qid);
	*slot = it->hnext;
	r->nitems--;
	free(it);
}

static void schedule(struct relay *r, struct item *it, time_t due)
{
	if (due > time(NULL)) {
		it->due = due;
		heap_push(r, it);
	} else {
		ready_push(r, it);
	}
	pthread_cond_signal(&r->cv);
}

void relay_enqueue(struct relay *r, const char *qid)
{
	if (!relay__qid_valid(qid)) {
		log_warn("event=enqueue_error qid=? reason=\"bad queue id\"");
		return;
	}
	pthread_mutex_lock(&r->mu);
	struct item *it = item_add(r, qid);
	if (it) {
		schedule(r, it, 0);
	} else {
		it = *hash_slot(r, qid);
		if (it->where == IT_WAIT) {
			heap_remove(r, it);
			schedule(r, it, 0);
		} else if (it->where == IT_RUN) {
			it->again = true;
		}
	}
	pthread_mutex_unlock(&r->mu);
}

/* ---- one delivery attempt ------------------------------------------------ */

static double now_real(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void iso_time(time_t t, char out[32])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void log_rcpt(enum log_level level, const char *event, const struct relay__ctx *ctx,
                     const struct relay_envelope *env, size_t i, double delay,
                     const char *reply, const char *extra)
{
	log_msg(level, "event=%s qid=%s rcpt=%s relay=%s delay=%.2f reply=%s%s", event, env->qid,
	        log_q(env->rcpts[i]), ctx->relay_name, delay, log_q(reply ? reply : ""), extra);
	if (ctx->conf.on_result)
		ctx->conf.on_result(ctx->conf.on_result_arg, env->qid, env->rcpts[i], event,
		                    ctx->relay_name, reply);
}

/* retry_min doubled per earlier attempt, capped at retry_max; never past
 * the expiry, so that a message that keeps failing bounces on time. */
static time_t next_try(const struct relay__ctx *ctx, unsigned attempts, time_t now,
                       time_t expiry)
{
	uint64_t d = ctx->conf.retry_min;
	for (unsigned i = 1; i < attempts && d < ctx->conf.retry_max; i++)
		d *= 2;
	if (d > ctx->conf.retry_max)
		d = ctx->conf.retry_max;
	time_t t = now + (time_t)d;
	return t > expiry ? expiry : t;
}

/* The removal is not fsync'd: a crash right after it can only bring back
 * a message already delivered (delivered twice, never lost), and one
 * directory fsync per delivered message costs a tenth of the CPU. */
static void remove_file(const char *spool, const char *sub, const char *qid)
{
	char dir[PATH_MAX], path[PATH_MAX];
	relay__path(dir, sizeof(dir), "%s/%s", spool, sub);
	relay__path(path, sizeof(path), "%s/%s", dir, qid);
	if (unlink(path) < 0 && errno != ENOENT)
		log_err("event=unlink_error path=%s error=\"%s\"", path, strerror(errno));
}

/* Every recipient is done: bounce the failures, then remove the message.
 * Returns false (with *due) when the DSN could not be written. */
static bool finish(struct relay *r, const struct relay_envelope *env, int fd,
                   struct relay__state *st, time_t *due)
{
	const struct relay__ctx *ctx = &r->ctx;
	bool failed = false;
	for (size_t i = 0; i < st->nrcpts; i++)
		failed |= st->rcpts[i].state == RELAY__FAILED;
	if (failed && env->from[0]) {
		char nq[ID_LEN + 1];
		int rc = relay__dsn_create(ctx, env, fd, st, nq);
		if (rc < 0) {
			log_err("event=dsn_error qid=%s error=\"%s\"", env->qid, strerror(-rc));
			st->next_try = *due = time(NULL) + ctx->conf.retry_min;
			if ((rc = relay__state_write(ctx->spool_dir, env->qid, st)) < 0)
				log_err("event=state_error qid=%s error=\"%s\"", env->qid, strerror(-rc));
			return false;
		}
		log_info("event=dsn qid=%s orig_qid=%s to=%s", nq, env->qid, log_q(env->from));
		relay_enqueue(r, nq);
	} else if (failed) {
		log_warn("event=dsn_dropped qid=%s reason=\"null sender: never bounce a bounce\"",
		         env->qid);
	}
	remove_file(ctx->spool_dir, "queue", env->qid);
	remove_file(ctx->spool_dir, "state", env->qid);
	log_info("event=removed qid=%s", env->qid);
	return true;
}

/* Records the attempt's results in st and logs them. Returns true when
 * some recipient is left for a later try (*due set). */
static bool settle(const struct relay__ctx *ctx, const struct relay_envelope *env,
                   struct relay__attempt *a, struct relay__state *st, time_t *due)
{
	double now = now_real();
	time_t tnow = (time_t)now, expiry = env->time + (time_t)ctx->conf.max_queue_time;
	bool expired = tnow >= expiry, left = false;
	double delay = now - (double)env->time;
	for (size_t i = 0; i < env->nrcpts; i++)
		if (!expired && (a->result[i] == RELAY__TEMP || a->result[i] == RELAY__PENDING))
			left = true;
	char extra[64] = "";
	if (left) {
		char iso[32];
		*due = next_try(ctx, st->attempts, tnow, expiry);
		iso_time(*due, iso);
		snprintf(extra, sizeof(extra), " next_try=%s", iso);
	}
	for (size_t i = 0; i < env->nrcpts; i++) {
		struct relay__rcpt *rc = &st->rcpts[i];
		const char *reply = a->reply[i] ? a->reply[i] : "";
		switch (a->result[i]) {
		case RELAY__SKIP:
			break;
		case RELAY__SENT:
			rc->state = RELAY__DELIVERED;
			log_rcpt(LOG_LEVEL_INFO, "delivered", ctx, env, i, delay, reply, "");
			break;
		case RELAY__PERM: {
			char status[32];
			rc->state = RELAY__FAILED;
			relay__status_code(reply, true, rc->status);
			free(rc->diag);
			rc->diag = str_dup(reply);
			snprintf(status, sizeof(status), " status=%s", rc->status);
			log_rcpt(LOG_LEVEL_INFO, "bounced", ctx, env, i, delay, reply, status);
			break;
		}
		case RELAY__TEMP:
		case RELAY__PENDING:
			if (expired) {
				rc->state = RELAY__FAILED;
				str_lcpy(rc->status, "4.4.7", sizeof(rc->status));
				free(rc->diag);
				rc->diag = str_dup(reply);
				log_rcpt(LOG_LEVEL_INFO, "bounced", ctx, env, i, delay, reply,
				         " status=4.4.7 reason=\"delivery time expired\"");
			} else {
				free(st->last_error);
				st->last_error = str_dup(reply);
				log_rcpt(LOG_LEVEL_INFO, "deferred", ctx, env, i, delay, reply, extra);
			}
			break;
		}
	}
	return left;
}

/* Returns true when the message is finished with (delivered, bounced, or
 * unreadable), false with *due for a retry. */
static bool deliver_message(struct relay *r, struct worker *w, const char *qid, time_t *due)
{
	const struct relay__ctx *ctx = &r->ctx;
	char path[PATH_MAX];
	relay__path(path, sizeof(path), "%s/queue/%s", ctx->spool_dir, qid);
	/* One open for the envelope and the body. */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		log_debug("event=gone qid=%s", qid);
		return true;
	}
	struct stat sb;
	struct relay_envelope env;
	int rc = fd < 0 || fstat(fd, &sb) < 0 ? -errno : relay_envelope_read_fd(fd, &env);
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		/* a corrupt file stays for the operator; an I/O error may pass */
		log_err("event=queue_error qid=%s error=\"%s\"", qid, strerror(-rc));
		*due = time(NULL) + ctx->conf.retry_max;
		return rc == -EINVAL;
	}
	struct relay__state st;
	if ((rc = relay__state_read(ctx->spool_dir, qid, env.nrcpts, &st)) < 0)
		log_warn("event=state_error qid=%s error=\"%s\"", qid, strerror(-rc));

	struct relay__attempt a = {
		.env = &env,
		.fd = fd,
		.body_size = (uint64_t)(sb.st_size - env.body_offset),
		.result = xcalloc(env.nrcpts, sizeof(*a.result)),
		.reply = xcalloc(env.nrcpts, sizeof(*a.reply)),
	};
	bool todo = false;
	for (size_t i = 0; i < env.nrcpts; i++) {
		a.result[i] = st.rcpts[i].state == RELAY__TODO ? RELAY__PENDING : RELAY__SKIP;
		todo |= a.result[i] == RELAY__PENDING;
	}
	if (todo) {
		st.attempts++;
		if (ctx->ds.proto == RELAY__MAILDIR)
			relay__maildir_deliver(ctx, &a);
		else
			relay__smtp_deliver(w->smtp, &a);
	}
	bool done;
	if (settle(ctx, &env, &a, &st, due)) {
		st.next_try = *due;
		if ((rc = relay__state_write(ctx->spool_dir, qid, &st)) < 0)
			log_err("event=state_error qid=%s error=\"%s\"", qid, strerror(-rc));
		done = false;
	} else {
		done = finish(r, &env, fd, &st, due);
	}
	relay__attempt_free(&a);
	relay__state_free(&st);
	relay_envelope_free(&env);
	close(fd);
	return done;
}

/* ---- workers ------------------------------------------------------------- */

static void promote_due(struct relay *r, time_t now)
{
	while (r->nheap > 0 && r->heap[0]->due <= now) {
		struct item *it = r->heap[0];
		heap_remove(r, it);
		ready_push(r, it);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct relay *r = w->r;
	pthread_setname_np(pthread_self(), "relay");
	/* a downstream that closes on us must not kill the daemon: OpenSSL
	 * writes with write(2), so EPIPE has to come back as an error */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	pthread_mutex_lock(&r->mu);
	while (!r->stopping) {
		promote_due(r, time(NULL));
		struct item *it = ready_pop(r);
		if (it) {
			if (r->rhead)
				pthread_cond_signal(&r->cv);   /* more work: wake a peer */
			it->where = IT_RUN;
			char qid[ID_LEN + 1];
			memcpy(qid, it->qid, sizeof(qid));
			pthread_mutex_unlock(&r->mu);
			time_t due = 0;
			bool done = deliver_message(r, w, qid, &due);
			pthread_mutex_lock(&r->mu);
			if (done) {
				item_remove(r, it);
			} else {
				bool now = it->again;
				it->again = false;
				schedule(r, it, now ? 0 : due);
			}
			continue;
		}
		double idle = w->smtp ? relay__smtp_idle_left(w->smtp) : -1;
		if (idle == 0) {
			pthread_mutex_unlock(&r->mu);
			relay__smtp_close(w->smtp);
			pthread_mutex_lock(&r->mu);
			continue;
		}
		struct timespec now, deadline = { 0, 0 };
		clock_gettime(CLOCK_REALTIME, &now);
		bool timed = false;
		if (r->nheap > 0) {
			deadline.tv_sec = r->heap[0]->due;
			timed = true;
		}
		if (idle > 0) {
			double t = (double)now.tv_sec + (double)now.tv_nsec / 1e9 + idle;
			if (!timed || t < (double)deadline.tv_sec) {
				deadline.tv_sec = (time_t)t;
				deadline.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
			}
			timed = true;
		}
		if (timed)
			pthread_cond_timedwait(&r->cv, &r->mu, &deadline);
		else
			pthread_cond_wait(&r->cv, &r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	relay__smtp_close(w->smtp);
	return NULL;
}

/* ---- start and stop ------------------------------------------------------ */

/* Schedules queue/<qid> files at the next try their state names; drops
 * state files of messages that are gone (a crash between the unlinks). */
static int scan_spool(struct relay *r, size_t *count)
{
	const char *spool = r->ctx.spool_dir;
	char dir[PATH_MAX];
	relay__path(dir, sizeof(dir), "%s/queue", spool);
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	struct dirent *de;
	*count = 0;
	while ((de = readdir(d))) {
		if (!relay__qid_valid(de->d_name))
			continue;
		struct relay__state st;
		relay__state_read(spool, de->d_name, 0, &st);
		struct item *it = item_add(r, de->d_name);
		if (it) {
			schedule(r, it, st.next_try);
			++*count;
		}
		relay__state_free(&st);
	}
	closedir(d);

	relay__path(dir, sizeof(dir), "%s/state", spool);
	if (!(d = opendir(dir)))
		return -errno;
	while ((de = readdir(d))) {
		char path[PATH_MAX];
		bool tmp = de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
		if (!tmp && (!relay__qid_valid(de->d_name) || *hash_slot(r, de->d_name)))
			continue;
		relay__path(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	return 0;
}

static void ctx_free(struct relay__ctx *ctx)
{
	if (ctx->ssl)
		SSL_CTX_free(ctx->ssl);
	relay__downstream_free(&ctx->ds);
	free(ctx->spool_dir);
	free(ctx->hostname);
	free(ctx->downstream);
	free(ctx->maildir);
	free(ctx->tls_ca);
}

static int ctx_init(struct relay__ctx *ctx, const struct relay_conf *conf,
                    const char *spool_dir, char *err, size_t errlen)
{
	ctx->conf = *conf;
	if (strlen(spool_dir) > RELAY__DIR_MAX ||
	    (conf->maildir && strlen(conf->maildir) > RELAY__DIR_MAX) ||
	    (conf->hostname && strlen(conf->hostname) > 255)) {
		snprintf(err, errlen, "spool, maildir or host name too long");
		return -ENAMETOOLONG;
	}
	ctx->spool_dir = str_dup(spool_dir);
	ctx->downstream = str_dup(conf->downstream && *conf->downstream ? conf->downstream : NULL);
	ctx->maildir = str_dup(conf->maildir);
	ctx->tls_ca = str_dup(conf->tls_ca);
	if (conf->hostname && *conf->hostname) {
		ctx->hostname = str_dup(conf->hostname);
	} else {
		char host[256] = "localhost";
		gethostname(host, sizeof(host) - 1);
		host[sizeof(host) - 1] = '\0';
		ctx->hostname = str_dup(host);
	}
	struct relay_conf *c = &ctx->conf;
	c->downstream = ctx->downstream;
	c->maildir = ctx->maildir;
	c->tls_ca = ctx->tls_ca;
	c->hostname = ctx->hostname;
	c->workers = c->workers ? c->workers : 4;
	c->retry_min = c->retry_min ? c->retry_min : 300;
	c->retry_max = c->retry_max ? c->retry_max : 4000;
	if (c->retry_max < c->retry_min)
		c->retry_max = c->retry_min;
	c->max_queue_time = c->max_queue_time ? c->max_queue_time : 5 * 86400;
	c->timeout = c->timeout ? c->timeout : 300;
	ctx->relay_name = ctx->downstream ? ctx->downstream : "maildir";

	if (relay__downstream_parse(ctx->downstream, &ctx->ds, err, errlen) < 0)
		return -EINVAL;
	if (ctx->ds.proto == RELAY__MAILDIR) {
		if (!ctx->maildir || !*ctx->maildir) {
			snprintf(err, errlen, "no downstream and no maildir to deliver to");
			return -EINVAL;
		}
		int rc = relay__maildir_prepare(ctx->maildir);
		if (rc < 0) {
			snprintf(err, errlen, "maildir %s: %s", ctx->maildir, strerror(-rc));
			return rc;
		}
	} else if (c->tls != RELAY_TLS_NONE) {
		ctx->ssl = certs_client_ctx(c->tls_verify, ctx->tls_ca, err, errlen);
		if (!ctx->ssl)
			return -EINVAL;
	}
	static const char *const sub[] = { "tmp", "queue", "state" };
	for (size_t i = 0; i < ARRAY_LEN(sub); i++) {
		char path[PATH_MAX];
		relay__path(path, sizeof(path), "%s/%s", spool_dir, sub[i]);
		int rc = file_mkdirs(path, 0700);
		if (rc < 0) {
			snprintf(err, errlen, "spool %s: %s", path, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static void relay_free(struct relay *r)
{
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct item *it = r->hash[i], *next;
		for (; it; it = next) {
			next = it->hnext;
			free(it);
		}
	}
	free(r->hash);
	free(r->heap);
	for (unsigned i = 0; i < r->nworkers; i++)
		relay__smtp_free(r->workers[i].smtp);
	free(r->workers);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	ctx_free(&r->ctx);
	free(r);
}

static void stop_workers(struct relay *r, unsigned started)
{
	pthread_mutex_lock(&r->mu);
	r->stopping = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	for (unsigned i = 0; i < started; i++)
		pthread_join(r->workers[i].th, NULL);
}

struct relay *relay_start_dir(const struct relay_conf *conf, const char *spool_dir,
                              char *err, size_t errlen)
{
	struct relay *r = xcalloc(1, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->nbuckets = 256;
	r->hash = xcalloc(r->nbuckets, sizeof(*r->hash));
	if (ctx_init(&r->ctx, conf, spool_dir, err, errlen) < 0) {
		relay_free(r);
		return NULL;
	}
	size_t count;
	int rc = scan_spool(r, &count);
	if (rc < 0) {
		snprintf(err, errlen, "spool %s: %s", spool_dir, strerror(-rc));
		relay_free(r);
		return NULL;
	}
	r->nworkers = r->ctx.conf.workers;
	r->workers = xcalloc(r->nworkers, sizeof(*r->workers));
	for (unsigned i = 0; i < r->nworkers; i++) {
		struct worker *w = &r->workers[i];
		w->r = r;
		if (r->ctx.ds.proto != RELAY__MAILDIR)
			w->smtp = relay__smtp_new(&r->ctx);
		if ((rc = pthread_create(&w->th, NULL, worker_main, w)) != 0) {
			snprintf(err, errlen, "cannot start relay workers: %s", strerror(rc));
			stop_workers(r, i);
			relay_free(r);
			return NULL;
		}
	}
	log_info("event=relay_start relay=%s workers=%u queued=%zu", r->ctx.relay_name,
	         r->nworkers, count);
	return r;
}

void relay_stop(struct relay *r)
{
	if (!r)
		return;
	stop_workers(r, r->nworkers);
	log_info("event=relay_stop relay=%s", r->ctx.relay_name);
	relay_free(r);
}
