/*
 * store.c - the writing side of the trace store. One writer thread owns
 * the connection. Records come in batches (trace_store_submit): the
 * spool's commit thread submits the records of its group commit as it
 * starts the files' write-back and waits for them (trace_store_wait) after
 * the files' fsync, so both are durable side by side and one WAL fsync
 * serves the whole batch. Everything submitted meanwhile, and every
 * refusal and delivery result waiting, goes into the same transaction;
 * refusals and delivery results no record takes along within LAZY_NS are
 * written on their own. No write ever runs on an event loop.
 *
 * Ownership: trace_store_open() returns a store owned by the caller, freed
 * by trace_store_close(), which first writes everything queued. A
 * trace_entry belongs to its creator (trace_entry_new/trace_entry_free)
 * (trace_entry_new makes a deep copy of the record) and must live until
 * its batch is waited for; a batch is freed by trace_store_wait(). What
 * trace_store_reject/delivery are given is deep-copied at once.
 */
#include "trace/store_int.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum item_kind { ITEM_REJECT, ITEM_DELIVERY, ITEM_RETRACT };

/* A refusal, a delivery result or a retraction waiting for a transaction. */
struct item {
	enum item_kind kind;
	union {
		struct trace_reject rej;
		struct trace_delivery del;
		char qid[ID_LEN + 1];
	} u;
	bool retracted;      /* a retraction whose DELETEs ran in this transaction */
	bool found;          /* ... and found the record */
	struct item *next;
};

struct trace_entry {
	struct trace_record rec;
	int status;
};

/* Records submitted together, waited for together. */
struct trace_batch {
	struct trace_entry *const *v;
	size_t n;
	bool done;
	int status;                  /* of the transaction that carried it */
	struct trace_batch *next;
};

struct trace_store {
	sqlite3 *db;                 /* the writer thread's alone after open */
	sqlite3_stmt *ins_message, *ins_rcpt, *ins_reject, *upd_delivery;
	sqlite3_stmt *del_rcpts, *del_message;
	sqlite3_stmt *begin, *commit;   /* prepared once: a batch is often small */
	pthread_t thread;
	pthread_mutex_t mu;          /* guards what follows */
	pthread_cond_t cv;           /* for the writer */
	pthread_cond_t done_cv;      /* for those waiting on a batch */
	struct trace_batch *batches, **batches_tail;
	struct item *pending, **pending_tail;   /* refusals, delivery results */
	struct timespec pending_since;          /* CLOCK_MONOTONIC, of the oldest */
	uint64_t commits;
	bool stopping;
	bool writer_gone;            /* nothing submitted now would be written */
};

/* ---- deep copies --------------------------------------------------------- */

#define STR(type, field) offsetof(struct type, field)
static const size_t record_strs[] = {
	STR(trace_record, sid), STR(trace_record, listener), STR(trace_record, client_ip),
	STR(trace_record, reverse_name), STR(trace_record, helo), STR(trace_record, tls_version),
	STR(trace_record, tls_cipher), STR(trace_record, tls_sni), STR(trace_record, cert_fp),
	STR(trace_record, cert_subject), STR(trace_record, cert_issuer),
	STR(trace_record, sasl_mech), STR(trace_record, account), STR(trace_record, mail_from),
	STR(trace_record, body_sha256), STR(trace_record, message_id),
	STR(trace_record, smime_status), STR(trace_record, trust_class),
};
static const size_t reject_strs[] = {
	STR(trace_reject, sid), STR(trace_reject, listener), STR(trace_reject, client_ip),
	STR(trace_reject, helo), STR(trace_reject, account), STR(trace_reject, command),
	STR(trace_reject, mail_from), STR(trace_reject, rcpt), STR(trace_reject, rule),
	STR(trace_reject, enh), STR(trace_reject, text),
};
static const size_t delivery_strs[] = {
	STR(trace_delivery, qid), STR(trace_delivery, rcpt), STR(trace_delivery, status),
	STR(trace_delivery, relay), STR(trace_delivery, reply),
};
#undef STR

static const char **str_at(void *obj, size_t off)
{
	return (const char **)((char *)obj + off);
}

static void dup_strs(void *obj, const size_t *offs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char **p = str_at(obj, offs[i]);
		if (*p)
			*p = str_dup(*p);
	}
}

static void free_strs(void *obj, const size_t *offs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((void *)*str_at(obj, offs[i]));
}

static void item_free(struct item *it)
{
	if (it->kind == ITEM_REJECT)
		free_strs(&it->u.rej, reject_strs, ARRAY_LEN(reject_strs));
	else if (it->kind == ITEM_DELIVERY)
		free_strs(&it->u.del, delivery_strs, ARRAY_LEN(delivery_strs));
	free(it);
}

static void items_free(struct item *list)
{
	struct item *next;
	for (struct item *it = list; it; it = next) {
		next = it->next;
		item_free(it);
	}
}

struct trace_entry *trace_entry_new(const struct trace_record *rec)
{
	struct trace_entry *e = xcalloc(1, sizeof(*e));
	e->rec = *rec;
	dup_strs(&e->rec, record_strs, ARRAY_LEN(record_strs));
	char **rcpts = xcalloc(rec->nrcpts ? rec->nrcpts : 1, sizeof(*rcpts));
	for (size_t i = 0; i < rec->nrcpts; i++)
		rcpts[i] = str_dup(rec->rcpts[i]);
	e->rec.rcpts = (const char *const *)rcpts;
	e->status = -EINPROGRESS;
	return e;
}

int trace_entry_status(const struct trace_entry *e)
{
	return e->status;
}

const char *trace_entry_qid(const struct trace_entry *e)
{
	return e->rec.qid;
}

void trace_entry_free(struct trace_entry *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->rec.nrcpts; i++)
		free((void *)e->rec.rcpts[i]);
	free((void *)e->rec.rcpts);
	free_strs(&e->rec, record_strs, ARRAY_LEN(record_strs));
	free(e);
}

/* Refusals and delivery results wait up to this long for records to
 * share their transaction: under load they ride along at no cost of their
 * own, and they never need to be on disk before anyone hears of them. */
#define LAZY_NS (100 * 1000000L)

static void enqueue(struct trace_store *ts, struct item *it)
{
	it->next = NULL;
	pthread_mutex_lock(&ts->mu);
	if (!ts->pending) {
		clock_gettime(CLOCK_MONOTONIC, &ts->pending_since);
		pthread_cond_signal(&ts->cv);   /* to set the writer's deadline */
	}
	*ts->pending_tail = it;
	ts->pending_tail = &it->next;
	pthread_mutex_unlock(&ts->mu);
}

void trace_store_reject(struct trace_store *ts, const struct trace_reject *r)
{
	struct item *it = xcalloc(1, sizeof(*it));
	it->kind = ITEM_REJECT;
	it->u.rej = *r;
	dup_strs(&it->u.rej, reject_strs, ARRAY_LEN(reject_strs));
	enqueue(ts, it);
}

void trace_store_delivery(struct trace_store *ts, const struct trace_delivery *d)
{
	struct item *it = xcalloc(1, sizeof(*it));
	it->kind = ITEM_DELIVERY;
	it->u.del = *d;
	dup_strs(&it->u.del, delivery_strs, ARRAY_LEN(delivery_strs));
	enqueue(ts, it);
}

void trace_store_retract(struct trace_store *ts, const char *qid)
{
	struct item *it = xcalloc(1, sizeof(*it));
	it->kind = ITEM_RETRACT;
	str_lcpy(it->u.qid, qid, sizeof(it->u.qid));
	enqueue(ts, it);
}

/* ---- writing ---------------------------------------------------------------- */

static void bind_str(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

/* Runs a bound statement once and clears it for the next use. */
static int step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* Writes the message row and its recipients. A failed message insert
 * (say a duplicate queue id: a one-row INSERT that aborts changes
 * nothing) fails this record alone: -EIO. A recipient that cannot be
 * written after its message row (only resource errors get there: the
 * insert ignores duplicates) returns -ECANCELED, and the whole batch is
 * rolled back rather than leave half a record. No savepoint per record:
 * one made SQLite spill a sub-journal to a temporary file, two thirds of
 * the writer's system calls. */
static int write_record(struct trace_store *ts, const struct trace_record *r)
{
	sqlite3_stmt *st = ts->ins_message;
	char ip_key[33], fp[65];
	bind_str(st, 1, r->qid);
	bind_str(st, 2, r->trace_id);
	sqlite3_bind_int64(st, 3, r->time);
	bind_str(st, 4, r->sid);
	bind_str(st, 5, r->listener);
	bind_str(st, 6, r->client_ip);
	bind_str(st, 7, trace__ip_key(r->client_ip, ip_key) == 0 ? ip_key : NULL);
	sqlite3_bind_int(st, 8, (int)r->client_port);
	bind_str(st, 9, r->reverse_name);
	bind_str(st, 10, r->helo);
	bind_str(st, 11, r->tls_version);
	bind_str(st, 12, r->tls_cipher);
	bind_str(st, 13, r->tls_sni);
	/* One spelling, so that a lookup by fingerprint is an index search. */
	bind_str(st, 14, r->cert_fp && trace__fp_norm(r->cert_fp, fp) == 0 ? fp : r->cert_fp);
	bind_str(st, 15, r->cert_subject);
	bind_str(st, 16, r->cert_issuer);
	bind_str(st, 17, r->sasl_mech);
	bind_str(st, 18, r->account);
	bind_str(st, 19, r->mail_from);
	sqlite3_bind_int64(st, 20, (sqlite3_int64)r->size);
	bind_str(st, 21, r->body_sha256);
	bind_str(st, 22, r->message_id);
	bind_str(st, 23, r->smime_status);
	bind_str(st, 24, r->trust_class);
	if (step_done(st) < 0)
		return -EIO;
	sqlite3_int64 id = sqlite3_last_insert_rowid(ts->db);
	for (size_t i = 0; i < r->nrcpts; i++) {
		sqlite3_bind_int64(ts->ins_rcpt, 1, id);
		bind_str(ts->ins_rcpt, 2, r->rcpts[i]);
		sqlite3_bind_int64(ts->ins_rcpt, 3, (sqlite3_int64)i);
		if (step_done(ts->ins_rcpt) < 0)
			return -ECANCELED;
	}
	return 0;
}

static int write_reject(struct trace_store *ts, const struct trace_reject *r)
{
	sqlite3_stmt *st = ts->ins_reject;
	char ip_key[33];
	sqlite3_bind_int64(st, 1, r->time);
	bind_str(st, 2, r->sid);
	bind_str(st, 3, r->listener);
	bind_str(st, 4, r->client_ip);
	bind_str(st, 5, trace__ip_key(r->client_ip, ip_key) == 0 ? ip_key : NULL);
	bind_str(st, 6, r->helo);
	bind_str(st, 7, r->account);
	bind_str(st, 8, r->command);
	bind_str(st, 9, r->mail_from);
	bind_str(st, 10, r->rcpt);
	bind_str(st, 11, r->rule);
	sqlite3_bind_int(st, 12, r->code);
	bind_str(st, 13, r->enh);
	bind_str(st, 14, r->text);
	return step_done(st);
}

static int write_delivery(struct trace_store *ts, const struct trace_delivery *d)
{
	sqlite3_stmt *st = ts->upd_delivery;
	bind_str(st, 1, d->status);
	bind_str(st, 2, d->relay);
	bind_str(st, 3, d->reply);
	sqlite3_bind_int64(st, 4, d->time ? d->time : (int64_t)time(NULL));
	bind_str(st, 5, d->qid);
	bind_str(st, 6, d->rcpt);
	if (step_done(st) < 0)
		return -EIO;
	if (sqlite3_changes(ts->db) == 0)
		log_warn("event=trace_delivery_unmatched qid=%s rcpt=%s status=%s", d->qid,
		         log_q(d->rcpt), d->status);
	return 0;
}

static void log_db_error(struct trace_store *ts, const char *what, const char *qid)
{
	log_err("event=trace_store_error op=%s%s%s error=\"%s\"", what, qid ? " qid=" : "",
	        qid ? qid : "", sqlite3_errmsg(ts->db));
}

/* Logged once the transaction has committed (write_all): before, a
 * reader could still see the record, and a rollback would keep it. */
static int write_retract(struct trace_store *ts, struct item *it)
{
	it->retracted = it->found = false;
	bind_str(ts->del_rcpts, 1, it->u.qid);
	bind_str(ts->del_message, 1, it->u.qid);
	if (step_done(ts->del_rcpts) < 0 || step_done(ts->del_message) < 0)
		return -EIO;
	it->found = sqlite3_changes(ts->db) != 0;
	it->retracted = true;
	return 0;
}

static void write_item(struct trace_store *ts, struct item *it)
{
	switch (it->kind) {
	case ITEM_REJECT:
		if (write_reject(ts, &it->u.rej) < 0)
			log_db_error(ts, "reject", NULL);
		break;
	case ITEM_DELIVERY:
		if (write_delivery(ts, &it->u.del) < 0)
			log_db_error(ts, "delivery", it->u.del.qid);
		break;
	case ITEM_RETRACT:
		if (write_retract(ts, it) < 0)
			log_db_error(ts, "retract", it->u.qid);
		break;
	}
}

static bool batch_rolled_back(struct trace_store *ts)
{
	/* Disk full, I/O errors and the like may roll the whole transaction
	 * back by themselves; what follows must not run outside it. */
	if (!sqlite3_get_autocommit(ts->db))
		return false;
	log_err("event=trace_store_error op=batch error=\"transaction rolled back\"");
	return true;
}

/* The batches' records and the waiting items in one transaction. A record
 * that cannot be written fails alone; one that would leave half a record
 * behind, or a failed commit, fails them all: nothing of it is on disk.
 * Refusals and delivery results are statistics and may be lost; records
 * cannot, so their owners hear. Returns whether it committed. */
static bool write_all(struct trace_store *ts, struct trace_batch *batches, struct item *items)
{
	bool ok = step_done(ts->begin) == 0;
	if (!ok)
		log_db_error(ts, "begin", NULL);
	for (struct trace_batch *b = batches; ok && b; b = b->next) {
		for (size_t i = 0; ok && i < b->n; i++) {
			struct trace_entry *e = b->v[i];
			int rc = write_record(ts, &e->rec);
			e->status = rc < 0 ? -EIO : 0;
			if (rc < 0)
				log_db_error(ts, "record", e->rec.qid);
			ok = rc != -ECANCELED && !batch_rolled_back(ts);
		}
	}
	for (struct item *it = items; ok && it; it = it->next) {
		write_item(ts, it);
		ok = !batch_rolled_back(ts);
	}
	if (ok && step_done(ts->commit) < 0) {
		log_db_error(ts, "commit", NULL);
		ok = false;
	}
	if (!ok && !sqlite3_get_autocommit(ts->db))
		(void)trace__db_exec(ts->db, "ROLLBACK", NULL, 0);
	if (ok) {
		for (struct item *it = items; it; it = it->next)
			if (it->kind == ITEM_RETRACT && it->retracted)
				log_info("event=trace_retracted qid=%s found=%s", it->u.qid,
				         it->found ? "yes" : "no");
		return true;
	}
	for (struct trace_batch *b = batches; b; b = b->next)
		for (size_t i = 0; i < b->n; i++)
			b->v[i]->status = -EIO;
	size_t lost = 0;
	for (struct item *it = items; it; it = it->next)
		lost += it->kind != ITEM_RETRACT;   /* these are tried again */
	if (lost)
		log_err("event=trace_store_lost items=%zu", lost);
	return false;
}

/* Under ts->mu: after a failed transaction, retractions go back to the
 * head of the queue (a record that stands for no accepted message must
 * not stay); the rest is freed. */
static void keep_retractions(struct trace_store *ts, struct item *items)
{
	struct item *keep = NULL, **tail = &keep, *next;
	for (struct item *it = items; it; it = next) {
		next = it->next;
		if (it->kind == ITEM_RETRACT) {
			*tail = it;
			tail = &it->next;
		} else {
			item_free(it);
		}
	}
	if (!keep)
		return;
	*tail = ts->pending;
	if (!ts->pending) {
		ts->pending_tail = tail;
		/* due again in about a second, not at once: a broken store
		 * fails fast */
		clock_gettime(CLOCK_MONOTONIC, &ts->pending_since);
		ts->pending_since.tv_sec += 1;
	}
	ts->pending = keep;
}

struct trace_batch *trace_store_submit(struct trace_store *ts, struct trace_entry *const *v,
                                       size_t n)
{
	struct trace_batch *b = xcalloc(1, sizeof(*b));
	b->v = v;
	b->n = n;
	pthread_mutex_lock(&ts->mu);
	if (ts->writer_gone) {
		for (size_t i = 0; i < n; i++)
			v[i]->status = -ESHUTDOWN;
		b->status = -ESHUTDOWN;
		b->done = true;
		pthread_mutex_unlock(&ts->mu);
		return b;
	}
	*ts->batches_tail = b;
	ts->batches_tail = &b->next;
	pthread_cond_signal(&ts->cv);
	pthread_mutex_unlock(&ts->mu);
	return b;
}

int trace_store_wait(struct trace_store *ts, struct trace_batch *b)
{
	pthread_mutex_lock(&ts->mu);
	while (!b->done)
		pthread_cond_wait(&ts->done_cv, &ts->mu);
	pthread_mutex_unlock(&ts->mu);
	int status = b->status;
	free(b);
	return status;
}

int trace_store_write(struct trace_store *ts, struct trace_entry *const *v, size_t n)
{
	return trace_store_wait(ts, trace_store_submit(ts, v, n));
}

int trace_store_retract_now(struct trace_store *ts, const char *const *qids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		trace_store_retract(ts, qids[i]);
	/* An empty batch: a transaction to wait for, carrying them. */
	return trace_store_write(ts, NULL, 0);
}

/* Under ts->mu: whether the oldest waiting item has waited LAZY_NS;
 * otherwise *due says until when. */
static bool lazy_due(struct trace_store *ts, struct timespec *due)
{
	struct timespec now;
	*due = ts->pending_since;
	due->tv_nsec += LAZY_NS;
	if (due->tv_nsec >= 1000000000L) {
		due->tv_sec++;
		due->tv_nsec -= 1000000000L;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > due->tv_sec || (now.tv_sec == due->tv_sec && now.tv_nsec >= due->tv_nsec);
}

/* Under ts->mu: waits until there are records to write, refusals or
 * delivery results that waited long enough, or a stop. */
static void writer_wait(struct trace_store *ts)
{
	struct timespec due;
	while (!ts->stopping && !ts->batches) {
		if (!ts->pending)
			pthread_cond_wait(&ts->cv, &ts->mu);
		else if (lazy_due(ts, &due))
			return;
		else
			pthread_cond_timedwait(&ts->cv, &ts->mu, &due);
	}
}

static void *writer_main(void *arg)
{
	struct trace_store *ts = arg;
	pthread_setname_np(pthread_self(), "trace-writer");
	pthread_mutex_lock(&ts->mu);
	for (;;) {
		writer_wait(ts);
		if (!ts->batches && !ts->pending)
			break;   /* stopping, and nothing left */
		struct trace_batch *batches = ts->batches;
		struct item *items = ts->pending;
		ts->batches = NULL;
		ts->batches_tail = &ts->batches;
		ts->pending = NULL;
		ts->pending_tail = &ts->pending;
		pthread_mutex_unlock(&ts->mu);

		bool ok = write_all(ts, batches, items);

		pthread_mutex_lock(&ts->mu);
		if (ok || ts->stopping)
			items_free(items);
		else
			keep_retractions(ts, items);
		ts->commits++;
		for (struct trace_batch *b = batches; b; b = b->next) {
			b->status = ok ? 0 : -EIO;
			b->done = true;
		}
		if (batches)
			pthread_cond_broadcast(&ts->done_cv);
	}
	ts->writer_gone = true;
	pthread_mutex_unlock(&ts->mu);
	return NULL;
}

/* ---- open and close ------------------------------------------------------- */

static int prepare_all(struct trace_store *ts)
{
	static const char ins_message[] =
		"INSERT INTO messages (qid, trace_id, time, sid, listener, client_ip,"
		" client_ip_key, client_port, reverse_name, helo, tls_version, tls_cipher,"
		" tls_sni, cert_fp, cert_subject, cert_issuer, sasl_mech, account, mail_from,"
		" size, body_sha256, message_id, smime_status, trust_class)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
		" ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)";
	/* A recipient given twice is one recipient. */
	static const char ins_rcpt[] =
		"INSERT OR IGNORE INTO message_rcpts (message, rcpt, pos) VALUES (?1, ?2, ?3)";
	static const char ins_reject[] =
		"INSERT INTO rejects (time, sid, listener, client_ip, client_ip_key, helo,"
		" account, command, mail_from, rcpt, rule, code, enh, text)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
	static const char upd_delivery[] =
		"UPDATE message_rcpts SET status = ?1, relay = ?2, reply = ?3, time = ?4"
		" WHERE message = (SELECT id FROM messages WHERE qid = ?5) AND rcpt = ?6";
	static const char del_rcpts[] =
		"DELETE FROM message_rcpts WHERE message = (SELECT id FROM messages WHERE qid = ?1)";
	static const char del_message[] = "DELETE FROM messages WHERE qid = ?1";
	const struct {
		const char *sql;
		sqlite3_stmt **st;
	} all[] = {
		{ ins_message, &ts->ins_message },
		{ ins_rcpt, &ts->ins_rcpt },
		{ ins_reject, &ts->ins_reject },
		{ upd_delivery, &ts->upd_delivery },
		{ del_rcpts, &ts->del_rcpts },
		{ del_message, &ts->del_message },
		{ "BEGIN IMMEDIATE", &ts->begin },
		{ "COMMIT", &ts->commit },
	};
	for (size_t i = 0; i < ARRAY_LEN(all); i++) {
		if (sqlite3_prepare_v3(ts->db, all[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
		                       all[i].st, NULL) != SQLITE_OK)
			return -EIO;
	}
	return 0;
}

static void finalize_all(struct trace_store *ts)
{
	sqlite3_finalize(ts->ins_message);
	sqlite3_finalize(ts->ins_rcpt);
	sqlite3_finalize(ts->ins_reject);
	sqlite3_finalize(ts->upd_delivery);
	sqlite3_finalize(ts->del_rcpts);
	sqlite3_finalize(ts->del_message);
	sqlite3_finalize(ts->begin);
	sqlite3_finalize(ts->commit);
}

struct trace_store *trace_store_open(const char *path, char *err, size_t errlen)
{
	struct trace_store *ts = xcalloc(1, sizeof(*ts));
	if (trace__db_open(path, TRACE__OPEN_WRITER, &ts->db, err, errlen) < 0) {
		free(ts);
		return NULL;
	}
	if (prepare_all(ts) < 0) {
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(ts->db));
		goto fail;
	}
	pthread_mutex_init(&ts->mu, NULL);
	pthread_cond_init(&ts->done_cv, NULL);
	/* The writer's deadlines are on the monotonic clock. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0) {
		snprintf(err, errlen, "%s: no monotonic clock for the writer thread", path);
		pthread_condattr_destroy(&ca);
		pthread_mutex_destroy(&ts->mu);
		pthread_cond_destroy(&ts->done_cv);
		goto fail;
	}
	pthread_cond_init(&ts->cv, &ca);
	pthread_condattr_destroy(&ca);
	ts->pending_tail = &ts->pending;
	ts->batches_tail = &ts->batches;
	if (pthread_create(&ts->thread, NULL, writer_main, ts) != 0) {
		snprintf(err, errlen, "%s: cannot start the writer thread", path);
		pthread_mutex_destroy(&ts->mu);
		pthread_cond_destroy(&ts->done_cv);
		pthread_cond_destroy(&ts->cv);
		goto fail;
	}
	return ts;
fail:
	finalize_all(ts);
	sqlite3_close(ts->db);
	free(ts);
	return NULL;
}

void trace_store_close(struct trace_store *ts)
{
	if (!ts)
		return;
	pthread_mutex_lock(&ts->mu);
	ts->stopping = true;
	pthread_cond_signal(&ts->cv);
	pthread_mutex_unlock(&ts->mu);
	pthread_join(ts->thread, NULL);
	finalize_all(ts);
	if (sqlite3_close(ts->db) != SQLITE_OK)
		log_err("event=trace_store_error op=close error=\"%s\"", sqlite3_errmsg(ts->db));
	pthread_mutex_destroy(&ts->mu);
	pthread_cond_destroy(&ts->done_cv);
	pthread_cond_destroy(&ts->cv);
	free(ts);
}

uint64_t trace__store_commits(struct trace_store *ts)
{
	pthread_mutex_lock(&ts->mu);
	uint64_t n = ts->commits;
	pthread_mutex_unlock(&ts->mu);
	return n;
}
