/*
 * spool.c - the writing side of the spool: a create thread makes tmp/<qid>
 * (so that no event loop waits on inode allocation), messages stream into
 * it, and they are committed into queue/<qid> by one commit thread that batches
 * the fsyncs of every transaction waiting at that moment (group commit):
 * start write-back of all files, start writing their riders (the trace
 * records, one transaction for the batch, on the trace store's thread),
 * fdatasync each file (the first journal commit usually carries the
 * others), wait for the riders, rename all, fsync queue/ once. Only then
 * does each owner's loop hear "done", and only then may it answer 250.
 *
 * Ownership: relay_spool_open() returns a spool owned by the caller, freed
 * by relay_spool_close() (which finishes pending commits first). A
 * relay_spool_file belongs to its creator until relay_spool_commit() or
 * relay_spool_abort() takes it.
 */
#include "relay/relay.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct relay_spool_file {
	struct relay_spool *sp;
	int fd;               /* -1 until relay_spool_create_file() */
	char qid[ID_LEN + 1];
	struct buf first;     /* envelope and head, until the file exists */
	uint64_t size;        /* message bytes, envelope excluded */
	/* create or commit request */
	void *rider;          /* commit: for the rider writer */
	bool creating;        /* a create request: the owner keeps f */
	uv_loop_t *loop;
	uv_async_t *wake;
	relay_commit_cb done;
	void *arg;
	int status;
	struct relay_spool_file *next;
};

/* Requests for one of the spool's two threads: each takes everything
 * waiting at once (for the commit thread, that is the group commit). */
struct spool_queue {
	struct relay_spool *sp;
	const char *name;
	void (*work)(struct relay_spool *sp, struct relay_spool_file *batch);
	struct relay_spool_file *head, **tail;
	pthread_cond_t cv;
	pthread_t thread;
};

struct relay_spool {
	char *dir;
	char *tmp_dir;
	char *queue_dir;
	pthread_mutex_t mu;                /* guards both queues and `finished` */
	struct spool_queue create, commit;
	struct relay_spool_file *finished; /* waiting for their loop */
	bool stopping;
	struct relay_riders riders;        /* set before the first commit */
	char **leftover;                   /* names found in tmp/ at open */
	size_t nleftover;
};

static void spool_path(char *out, size_t len, const char *dir, const char *qid)
{
	snprintf(out, len, "%s/%s", dir, qid);
}

/* Files in tmp/ at start were never acknowledged: the client got no 250
 * and will send again, so they can go, once their owner has taken back
 * whatever it wrote for them (relay_spool_drop_unacknowledged). */
static void spool_list_tmp(struct relay_spool *sp)
{
	DIR *d = opendir(sp->tmp_dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		sp->leftover = xrealloc(sp->leftover, (sp->nleftover + 1) * sizeof(*sp->leftover));
		sp->leftover[sp->nleftover++] = str_dup(e->d_name);
	}
	closedir(d);
}

static void spool_free_leftover(struct relay_spool *sp)
{
	for (size_t i = 0; i < sp->nleftover; i++)
		free(sp->leftover[i]);
	free(sp->leftover);
	sp->leftover = NULL;
	sp->nleftover = 0;
}

size_t relay_spool_unacknowledged(const struct relay_spool *sp, const char *const **names)
{
	*names = (const char *const *)sp->leftover;
	return sp->nleftover;
}

void relay_spool_drop_unacknowledged(struct relay_spool *sp)
{
	for (size_t i = 0; i < sp->nleftover; i++) {
		char path[4096];
		spool_path(path, sizeof(path), sp->tmp_dir, sp->leftover[i]);
		if (unlink(path) == 0)
			log_info("event=spool_clean file=%s reason=unacknowledged", path);
	}
	spool_free_leftover(sp);
}

/* The riders of a batch, between start() and finish(). */
struct rider_run {
	void **v;
	int *status;
	size_t n;
	void *started;
};

static void riders_start(struct relay_spool *sp, struct relay_spool_file *batch,
                         struct rider_run *run)
{
	memset(run, 0, sizeof(*run));
	for (struct relay_spool_file *f = batch; f; f = f->next)
		run->n += f->rider != NULL;
	if (run->n && !sp->riders.start) {
		/* Nobody to write what must be durable with these files: they
		 * cannot be queued. */
		for (struct relay_spool_file *f = batch; f; f = f->next)
			if (f->rider)
				f->status = -ENOSYS;
		return;
	}
	if (!run->n)
		return;
	run->v = xcalloc(run->n, sizeof(*run->v));
	run->status = xcalloc(run->n, sizeof(*run->status));
	size_t i = 0;
	for (struct relay_spool_file *f = batch; f; f = f->next)
		if (f->rider)
			run->v[i++] = f->rider;
	run->started = sp->riders.start(sp->riders.ctx, run->v, run->n);
}

/* Waits for the riders; a file whose rider failed takes its status. */
static void riders_finish(struct relay_spool *sp, struct relay_spool_file *batch,
                          struct rider_run *run)
{
	if (!run->v)
		return;
	sp->riders.finish(sp->riders.ctx, run->started, run->v, run->status, run->n);
	size_t i = 0;
	for (struct relay_spool_file *f = batch; f; f = f->next) {
		if (!f->rider)
			continue;
		int status = run->status[i++];
		if (status != 0 && f->status == 0)
			f->status = status;
	}
}

/* Riders written for files that then failed (fsync, rename, fsync of
 * queue/) are taken back before their owners hear; then the run ends. */
static void riders_end(struct relay_spool *sp, struct relay_spool_file *batch,
                       struct rider_run *run)
{
	if (!run->v)
		return;
	size_t i = 0, n = 0;
	for (struct relay_spool_file *f = batch; f; f = f->next) {
		if (!f->rider)
			continue;
		if (run->status[i++] == 0 && f->status != 0)
			run->v[n++] = f->rider;   /* reuses the array: n <= i */
	}
	if (n)
		sp->riders.cancel(sp->riders.ctx, run->v, n);
	free(run->v);
	free(run->status);
}

/* Commits one batch; called without the lock. The riders are written
 * while the files are synced; a file whose rider failed never reaches
 * queue/, and a rider whose file failed is taken back. */
static void spool_commit_batch(struct relay_spool *sp, struct relay_spool_file *batch)
{
	struct rider_run run;
	for (struct relay_spool_file *f = batch; f; f = f->next)
		(void)sync_file_range(f->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	riders_start(sp, batch, &run);
	for (struct relay_spool_file *f = batch; f; f = f->next) {
		if (fdatasync(f->fd) < 0)
			f->status = -errno;
	}
	riders_finish(sp, batch, &run);
	bool renamed = false;
	for (struct relay_spool_file *f = batch; f; f = f->next) {
		char from[4096], to[4096];
		spool_path(from, sizeof(from), sp->tmp_dir, f->qid);
		spool_path(to, sizeof(to), sp->queue_dir, f->qid);
		if (f->status == 0 && rename(from, to) < 0)
			f->status = -errno;
		if (f->status == 0)
			renamed = true;
		else
			unlink(from);
	}
	int rc = renamed ? file_sync_dir(sp->queue_dir) : 0;
	for (struct relay_spool_file *f = batch; f; f = f->next) {
		if (f->status == 0 && rc < 0) {
			/* The rename may not survive a crash: do not claim it did.
			 * The client hears 4xx and sends again, so the file goes
			 * (and its rider is taken back). Should the unlink
			 * not survive a crash either, the file is back without a
			 * record and the start-up check holds it. */
			f->status = rc;
			char path[4096];
			spool_path(path, sizeof(path), sp->queue_dir, f->qid);
			unlink(path);
		}
		close(f->fd);
		f->fd = -1;
	}
	riders_end(sp, batch, &run);
}

/* Creating files has a thread of its own, not libuv's shared pool: a
 * password backend that hangs must not stop mail that is already
 * authenticated, and a slow disk must not stop logins. */
static void spool_create_batch(struct relay_spool *sp, struct relay_spool_file *batch)
{
	(void)sp;
	for (struct relay_spool_file *f = batch; f; f = f->next)
		f->status = relay_spool_create_file(f);
}

static void *spool_thread(void *arg)
{
	struct spool_queue *q = arg;
	struct relay_spool *sp = q->sp;
	pthread_setname_np(pthread_self(), q->name);
	pthread_mutex_lock(&sp->mu);
	for (;;) {
		while (!q->head && !sp->stopping)
			pthread_cond_wait(&q->cv, &sp->mu);
		if (!q->head)
			break;
		struct relay_spool_file *batch = q->head;
		q->head = NULL;
		q->tail = &q->head;
		pthread_mutex_unlock(&sp->mu);

		q->work(sp, batch);

		pthread_mutex_lock(&sp->mu);
		struct relay_spool_file *next;
		for (struct relay_spool_file *f = batch; f; f = next) {
			next = f->next;
			f->next = sp->finished;
			sp->finished = f;
			/* libuv coalesces sends: a loop with several answers wakes once. */
			uv_async_send(f->wake);
		}
	}
	pthread_mutex_unlock(&sp->mu);
	return NULL;
}

static int spool_queue_start(struct relay_spool *sp, struct spool_queue *q, const char *name,
                             void (*work)(struct relay_spool *, struct relay_spool_file *))
{
	q->sp = sp;
	q->name = name;
	q->work = work;
	q->head = NULL;
	q->tail = &q->head;
	pthread_cond_init(&q->cv, NULL);
	if (pthread_create(&q->thread, NULL, spool_thread, q) != 0) {
		pthread_cond_destroy(&q->cv);
		return -1;
	}
	return 0;
}

/* Stops every started thread once its queue is empty. */
static void spool_stop(struct relay_spool *sp, bool create_started, bool commit_started)
{
	pthread_mutex_lock(&sp->mu);
	sp->stopping = true;
	if (create_started)
		pthread_cond_signal(&sp->create.cv);
	if (commit_started)
		pthread_cond_signal(&sp->commit.cv);
	pthread_mutex_unlock(&sp->mu);
	if (create_started) {
		pthread_join(sp->create.thread, NULL);
		pthread_cond_destroy(&sp->create.cv);
	}
	if (commit_started) {
		pthread_join(sp->commit.thread, NULL);
		pthread_cond_destroy(&sp->commit.cv);
	}
}

struct relay_spool *relay_spool_open(const char *dir, char *err, size_t errlen)
{
	struct relay_spool *sp = xcalloc(1, sizeof(*sp));
	sp->dir = str_dup(dir);
	sp->tmp_dir = str_printf("%s/tmp", dir);
	sp->queue_dir = str_printf("%s/queue", dir);
	char *state_dir = str_printf("%s/state", dir);
	int rc = 0;
	const char *dirs[] = { sp->tmp_dir, sp->queue_dir, state_dir };
	for (size_t i = 0; i < ARRAY_LEN(dirs) && rc == 0; i++) {
		rc = file_mkdirs(dirs[i], 0700);
		if (rc < 0)
			snprintf(err, errlen, "spool: cannot create %s: %s", dirs[i], strerror(-rc));
	}
	free(state_dir);
	if (rc < 0)
		goto fail;
	spool_list_tmp(sp);
	pthread_mutex_init(&sp->mu, NULL);
	if (spool_queue_start(sp, &sp->commit, "spool-commit", spool_commit_batch) < 0) {
		snprintf(err, errlen, "spool: cannot start the commit thread");
		pthread_mutex_destroy(&sp->mu);
		goto fail;
	}
	if (spool_queue_start(sp, &sp->create, "spool-create", spool_create_batch) < 0) {
		snprintf(err, errlen, "spool: cannot start the create thread");
		spool_stop(sp, false, true);
		pthread_mutex_destroy(&sp->mu);
		goto fail;
	}
	return sp;
fail:
	spool_free_leftover(sp);
	free(sp->dir);
	free(sp->tmp_dir);
	free(sp->queue_dir);
	free(sp);
	return NULL;
}

void relay_spool_close(struct relay_spool *sp)
{
	if (!sp)
		return;
	spool_stop(sp, true, true);
	/* Requests nobody drained: their loops are gone. Committed files are
	 * safe in queue/; files created for a message nobody will send go. */
	struct relay_spool_file *next;
	for (struct relay_spool_file *f = sp->finished; f; f = next) {
		next = f->next;
		if (f->creating)
			relay_spool_abort(f);
		else
			free(f);
	}
	pthread_mutex_destroy(&sp->mu);
	spool_free_leftover(sp);
	free(sp->dir);
	free(sp->tmp_dir);
	free(sp->queue_dir);
	free(sp);
}

int relay_spool_hold(struct relay_spool *sp, const char *qid)
{
	char from[4096], to[4096 + ID_LEN + 2], hold[4096];
	snprintf(hold, sizeof(hold), "%s/hold", sp->dir);
	int rc = file_mkdirs(hold, 0700);
	if (rc < 0)
		return rc;
	spool_path(from, sizeof(from), sp->queue_dir, qid);
	spool_path(to, sizeof(to), hold, qid);
	if (rename(from, to) < 0)
		return -errno;
	rc = file_sync_dir(hold);
	return rc < 0 ? rc : file_sync_dir(sp->queue_dir);
}

const char *relay_spool_dir(const struct relay_spool *sp)
{
	return sp->dir;
}

static void spool_envelope(struct buf *b, const struct relay_envelope *env,
                           const char *const *extra_kv, size_t nextra)
{
	buf_printf(b, "POSTERN-QUEUE 1\nqid %s\ntime %lld\nfrom %s\n", env->qid,
	           (long long)env->time, env->from ? env->from : "");
	for (size_t i = 0; i < env->nrcpts; i++)
		buf_printf(b, "rcpt %s\n", env->rcpts[i]);
	if (env->ret)
		buf_printf(b, "ret %s\n", env->ret);
	if (env->envid)
		buf_printf(b, "envid %s\n", env->envid);
	if (env->smtputf8)
		buf_puts(b, "smtputf8 yes\n");
	if (env->eightbit)
		buf_puts(b, "body 8bitmime\n");
	for (size_t i = 0; i + 1 < nextra * 2; i += 2) {
		if (!extra_kv[i + 1])
			continue;
		buf_printf(b, "%s ", extra_kv[i]);
		/* A value must stay on its line whatever a client sent. */
		for (const char *p = extra_kv[i + 1]; *p; p++)
			buf_append(b, (*p == '\n' || *p == '\r') ? "?" : p, 1);
		buf_puts(b, "\n");
	}
	buf_puts(b, "\n");
}

struct relay_spool_file *relay_spool_prepare(struct relay_spool *sp,
                                             const struct relay_envelope *env,
                                             const char *const *extra_kv, size_t nextra,
                                             const void *head, size_t headlen)
{
	struct relay_spool_file *f = xcalloc(1, sizeof(*f));
	f->sp = sp;
	f->fd = -1;
	memcpy(f->qid, env->qid, sizeof(f->qid));
	buf_init(&f->first);
	spool_envelope(&f->first, env, extra_kv, nextra);
	buf_append(&f->first, head, headlen);
	f->size = headlen;
	return f;
}

/* On a thread pool: open(O_CREAT) allocates an inode, which on a busy
 * ext4 means reading inode tables (a fifth of the loops' time when it ran
 * there, and a stall for every session on the loop when the disk is
 * slow). */
int relay_spool_create_file(struct relay_spool_file *f)
{
	char path[4096];
	spool_path(path, sizeof(path), f->sp->tmp_dir, f->qid);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int rc = file_write_all(fd, f->first.data, f->first.len);
	if (rc < 0) {
		close(fd);
		unlink(path);
		return rc;
	}
	buf_free(&f->first);
	f->fd = fd;
	return 0;
}

const char *relay_spool_file_qid(const struct relay_spool_file *f)
{
	return f->qid;
}

int relay_spool_write(struct relay_spool_file *f, const void *data, size_t len)
{
	int rc = file_write_all(f->fd, data, len);
	if (rc == 0)
		f->size += len;
	return rc;
}

uint64_t relay_spool_size(const struct relay_spool_file *f)
{
	return f->size;
}

void relay_spool_abort(struct relay_spool_file *f)
{
	if (!f)
		return;
	if (f->fd >= 0) {
		char path[4096];
		spool_path(path, sizeof(path), f->sp->tmp_dir, f->qid);
		close(f->fd);
		unlink(path);
	}
	buf_free(&f->first);
	free(f);
}

/* Hands f to the create or the commit thread; its answer comes back on
 * `loop` through relay_spool_drain(). */
static void spool_request(struct relay_spool_file *f, bool creating, void *rider,
                          uv_loop_t *loop, uv_async_t *wake, relay_commit_cb done, void *arg)
{
	struct relay_spool *sp = f->sp;
	f->creating = creating;
	f->rider = rider;
	f->loop = loop;
	f->wake = wake;
	f->done = done;
	f->arg = arg;
	f->status = 0;
	f->next = NULL;
	struct spool_queue *q = creating ? &sp->create : &sp->commit;
	pthread_mutex_lock(&sp->mu);
	*q->tail = f;
	q->tail = &f->next;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&sp->mu);
}

void relay_spool_commit(struct relay_spool_file *f, void *rider, uv_loop_t *loop,
                        uv_async_t *wake, relay_commit_cb done, void *arg)
{
	spool_request(f, false, rider, loop, wake, done, arg);
}

void relay_spool_set_riders(struct relay_spool *sp, const struct relay_riders *riders)
{
	sp->riders = *riders;
}

void relay_spool_create_async(struct relay_spool_file *f, uv_loop_t *loop, uv_async_t *wake,
                              relay_commit_cb done, void *arg)
{
	spool_request(f, true, NULL, loop, wake, done, arg);
}

void relay_spool_drain(struct relay_spool *sp, uv_loop_t *loop)
{
	struct relay_spool_file *mine = NULL, **link;
	pthread_mutex_lock(&sp->mu);
	link = &sp->finished;
	while (*link) {
		struct relay_spool_file *f = *link;
		if (f->loop == loop) {
			*link = f->next;
			f->next = mine;
			mine = f;
		} else {
			link = &f->next;
		}
	}
	pthread_mutex_unlock(&sp->mu);
	struct relay_spool_file *next;
	for (struct relay_spool_file *f = mine; f; f = next) {
		next = f->next;
		/* A created file goes back to its owner; a committed one is
		 * done with. */
		bool created = f->creating;
		f->creating = false;
		f->next = NULL;
		f->done(f->status, f->arg);
		if (!created)
			free(f);
	}
}

struct relay *relay_start(const struct relay_conf *conf, struct relay_spool *sp,
                          char *err, size_t errlen)
{
	return relay_start_dir(conf, sp->dir, err, errlen);
}
