/*
 * query.c - lookups in the trace store and its pruning, for the operator's
 * tool. A lookup opens the database read-only (WAL: it never blocks the
 * daemon), turns the filters into one SELECT whose every key has an index,
 * and hands each message with its recipients to a callback.
 *
 * Ownership: what the callback sees belongs to the lookup and lives until
 * the callback returns. Nothing is returned that the caller must free.
 */
#include "trace/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_COLUMNS                                                                \
	"m.id, m.qid, m.trace_id, m.time, m.sid, m.listener, m.client_ip,"         \
	" m.client_port, m.reverse_name, m.helo, m.tls_version, m.tls_cipher,"     \
	" m.tls_sni, m.cert_fp, m.cert_subject, m.cert_issuer, m.sasl_mech,"       \
	" m.account, m.mail_from, m.size, m.body_sha256, m.message_id,"            \
	" m.smime_status, m.trust_class"

/* The values a WHERE clause binds, in order. */
struct where {
	struct buf sql;
	const char *text[12];
	int ntext;
	char ip_lo[33], ip_hi[33], fp[65];
	char *mid_bare, *mid_angle;
	bool other_than_time;
};

static void where_text(struct where *w, const char *clause, const char *value)
{
	buf_printf(&w->sql, " AND %s", clause);
	w->text[w->ntext++] = value;
	w->other_than_time = true;
}

static int where_build(struct where *w, const struct trace_query *q, char *err, size_t errlen)
{
	if (q->qid)
		where_text(w, "m.qid = ?", q->qid);
	if (q->trace_id)
		where_text(w, "m.trace_id = ?", q->trace_id);
	if (q->message_id) {
		/* People paste Message-IDs with or without the brackets. */
		const char *s = q->message_id;
		size_t n = strlen(s);
		if (n >= 2 && s[0] == '<' && s[n - 1] == '>')
			w->mid_bare = str_ndup(s + 1, n - 2);
		else
			w->mid_bare = str_dup(s);
		w->mid_angle = str_printf("<%s>", w->mid_bare);
		where_text(w, "m.message_id IN (?", w->mid_bare);
		buf_puts(&w->sql, ", ?)");
		w->text[w->ntext++] = w->mid_angle;
	}
	if (q->account)
		where_text(w, "m.account = ?", q->account);
	if (q->client_ip) {
		if (trace__ip_range(q->client_ip, w->ip_lo, w->ip_hi) < 0) {
			snprintf(err, errlen, "not an IP address or CIDR block: %s", q->client_ip);
			return -EINVAL;
		}
		where_text(w, "m.client_ip_key BETWEEN ?", w->ip_lo);
		buf_puts(&w->sql, " AND ?");
		w->text[w->ntext++] = w->ip_hi;
	}
	if (q->cert_fp) {
		if (trace__fp_norm(q->cert_fp, w->fp) < 0) {
			snprintf(err, errlen, "not a SHA-256 fingerprint: %s", q->cert_fp);
			return -EINVAL;
		}
		where_text(w, "m.cert_fp = ?", w->fp);
	}
	if (q->mail_from)
		where_text(w, "m.mail_from = ?", q->mail_from);
	if (q->rcpt)
		where_text(w, "m.id IN (SELECT message FROM message_rcpts WHERE rcpt = ?)", q->rcpt);
	if (q->since)
		buf_printf(&w->sql, " AND m.time >= %lld", (long long)q->since);
	if (q->until)
		buf_printf(&w->sql, " AND m.time < %lld", (long long)q->until);
	return 0;
}

static void where_free(struct where *w)
{
	buf_free(&w->sql);
	free(w->mid_bare);
	free(w->mid_angle);
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

/* Copies of one message's recipient rows (stepping the statement would
 * invalidate the previous row's text). */
struct rcpt_rows {
	struct trace_rcpt_status *v;
	const char **names;
	size_t n;
};

static char *dup_or_null(const char *s)
{
	return s ? str_dup(s) : NULL;
}

static int rcpts_load(sqlite3_stmt *st, sqlite3_int64 id, struct rcpt_rows *r)
{
	size_t cap = 0;
	int rc;
	sqlite3_bind_int64(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (r->n == cap) {
			cap = cap ? cap * 2 : 8;
			r->v = xrealloc(r->v, cap * sizeof(*r->v));
			r->names = xrealloc(r->names, cap * sizeof(*r->names));
		}
		struct trace_rcpt_status *s = &r->v[r->n++];
		s->rcpt = dup_or_null(col_text(st, 0));
		s->status = dup_or_null(col_text(st, 1));
		s->relay = dup_or_null(col_text(st, 2));
		s->reply = dup_or_null(col_text(st, 3));
		s->time = sqlite3_column_int64(st, 4);
		r->names[r->n - 1] = s->rcpt;
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static void rcpts_free(struct rcpt_rows *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free((void *)r->v[i].rcpt);
		free((void *)r->v[i].status);
		free((void *)r->v[i].relay);
		free((void *)r->v[i].reply);
	}
	free(r->v);
	free(r->names);
}

static void row_to_record(sqlite3_stmt *st, struct trace_record *r)
{
	memset(r, 0, sizeof(*r));
	str_lcpy(r->qid, col_text(st, 1) ? col_text(st, 1) : "", sizeof(r->qid));
	str_lcpy(r->trace_id, col_text(st, 2) ? col_text(st, 2) : "", sizeof(r->trace_id));
	r->time = sqlite3_column_int64(st, 3);
	r->sid = col_text(st, 4);
	r->listener = col_text(st, 5);
	r->client_ip = col_text(st, 6);
	r->client_port = (unsigned)sqlite3_column_int(st, 7);
	r->reverse_name = col_text(st, 8);
	r->helo = col_text(st, 9);
	r->tls_version = col_text(st, 10);
	r->tls_cipher = col_text(st, 11);
	r->tls_sni = col_text(st, 12);
	r->cert_fp = col_text(st, 13);
	r->cert_subject = col_text(st, 14);
	r->cert_issuer = col_text(st, 15);
	r->sasl_mech = col_text(st, 16);
	r->account = col_text(st, 17);
	r->mail_from = col_text(st, 18);
	r->size = (uint64_t)sqlite3_column_int64(st, 19);
	r->body_sha256 = col_text(st, 20);
	r->message_id = col_text(st, 21);
	r->smime_status = col_text(st, 22);
	r->trust_class = col_text(st, 23);
}

static int run(sqlite3 *db, const struct where *w, trace_match_cb cb, void *arg,
               char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL, *rst = NULL;
	int rc;
	if (sqlite3_prepare_v2(db, w->sql.data, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT rcpt, status, relay, reply, time FROM message_rcpts"
	                           " WHERE message = ?1 ORDER BY pos", -1, &rst, NULL) != SQLITE_OK)
		goto fail;
	for (int i = 0; i < w->ntext; i++)
		sqlite3_bind_text(st, i + 1, w->text[i], -1, SQLITE_STATIC);
	int count = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct trace_match m;
		struct rcpt_rows rows = { 0 };
		row_to_record(st, &m.rec);
		if (rcpts_load(rst, sqlite3_column_int64(st, 0), &rows) < 0) {
			rcpts_free(&rows);
			goto fail;
		}
		m.rec.rcpts = rows.names;
		m.rec.nrcpts = rows.n;
		m.rcpts = rows.v;
		m.nrcpts = rows.n;
		cb(&m, arg);
		rcpts_free(&rows);
		count++;
	}
	if (rc != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(st);
	sqlite3_finalize(rst);
	return count;
fail:
	snprintf(err, errlen, "lookup failed: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_finalize(rst);
	return -EIO;
}

int trace_query_run(const char *path, const struct trace_query *q, trace_match_cb cb,
                    void *arg, char *err, size_t errlen)
{
	struct where w = { 0 };
	buf_init(&w.sql);
	buf_puts(&w.sql, "SELECT " MSG_COLUMNS " FROM messages m WHERE 1");
	/* A bad filter is the user's mistake, not the database's: say so
	 * before touching the file. */
	int rc = where_build(&w, q, err, errlen);
	if (rc < 0) {
		where_free(&w);
		return rc;
	}
	/* With a key to search by, its index must drive the search: '+' keeps
	 * the planner from walking the time index to spare itself a sort. */
	buf_puts(&w.sql, w.other_than_time ? " ORDER BY +m.time DESC, m.id DESC"
	                                   : " ORDER BY m.time DESC, m.id DESC");
	if (q->limit)
		buf_printf(&w.sql, " LIMIT %u", q->limit);
	sqlite3 *db;
	if (trace__db_open(path, TRACE__OPEN_READ, &db, err, errlen) < 0) {
		where_free(&w);
		return -EIO;
	}
	/* One read transaction: the matches and their recipients agree. */
	rc = trace__db_exec(db, "BEGIN", err, errlen);
	if (rc == 0)
		rc = run(db, &w, cb, arg, err, errlen);
	(void)sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	where_free(&w);
	return rc;
}

int trace_known_qids(const char *path, const char *const *qids, size_t n, bool *known,
                     char *err, size_t errlen)
{
	sqlite3 *db;
	if (trace__db_open(path, TRACE__OPEN_READ, &db, err, errlen) < 0)
		return -EIO;
	sqlite3_stmt *st = NULL;
	/* One read transaction: one snapshot, one read lock. */
	int rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "SELECT 1 FROM messages WHERE qid = ?1", -1, &st, NULL);
	for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
		sqlite3_bind_text(st, 1, qids[i], -1, SQLITE_STATIC);
		int step = sqlite3_step(st);
		if (step == SQLITE_ROW || step == SQLITE_DONE)
			known[i] = step == SQLITE_ROW;
		else
			rc = step;
		sqlite3_reset(st);
	}
	if (rc != SQLITE_OK)
		snprintf(err, errlen, "%s: lookup failed: %s", path, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	(void)sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -EIO;
}

/* ---- pruning ------------------------------------------------------------- */

#define PRUNE_CHUNK 5000

/* Deletes one chunk in its own transaction; *deleted says how many rows of
 * the main table went. */
static int prune_chunk(sqlite3 *db, const char *const *sql, size_t nsql, int64_t before,
                       uint64_t *deleted, char *err, size_t errlen)
{
	if (trace__db_exec(db, "BEGIN IMMEDIATE", err, errlen) < 0)
		return -EIO;
	int changes = 0;
	for (size_t i = 0; i < nsql; i++) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(db, sql[i], -1, &st, NULL) != SQLITE_OK)
			goto fail;
		sqlite3_bind_int64(st, 1, before);
		sqlite3_bind_int(st, 2, PRUNE_CHUNK);
		int rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			goto fail;
		changes = sqlite3_changes(db);
	}
	if (trace__db_exec(db, "COMMIT", err, errlen) < 0)
		goto rollback;
	*deleted = (uint64_t)changes;
	return 0;
fail:
	snprintf(err, errlen, "%s", sqlite3_errmsg(db));
rollback:
	(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -EIO;
}

int trace_prune(const char *path, int64_t before, uint64_t *messages, uint64_t *rejects,
                char *err, size_t errlen)
{
	/* Both statements pick the same oldest chunk within one transaction:
	 * recipients first, then their messages (the last one counts). */
	static const char *const msg_sql[] = {
		"DELETE FROM message_rcpts WHERE message IN (SELECT id FROM messages"
		" WHERE time < ?1 ORDER BY time, id LIMIT ?2)",
		"DELETE FROM messages WHERE id IN (SELECT id FROM messages"
		" WHERE time < ?1 ORDER BY time, id LIMIT ?2)",
	};
	static const char *const rej_sql[] = {
		"DELETE FROM rejects WHERE id IN (SELECT id FROM rejects"
		" WHERE time < ?1 ORDER BY time, id LIMIT ?2)",
	};
	*messages = *rejects = 0;
	sqlite3 *db;
	if (trace__db_open(path, TRACE__OPEN_MAINTAIN, &db, err, errlen) < 0)
		return -EIO;
	uint64_t n = 0;
	int rc;
	do {
		rc = prune_chunk(db, msg_sql, ARRAY_LEN(msg_sql), before, &n, err, errlen);
		*messages += rc == 0 ? n : 0;
	} while (rc == 0 && n == PRUNE_CHUNK);
	while (rc == 0) {
		rc = prune_chunk(db, rej_sql, ARRAY_LEN(rej_sql), before, &n, err, errlen);
		*rejects += rc == 0 ? n : 0;
		if (n < PRUNE_CHUNK)
			break;
	}
	sqlite3_close(db);
	return rc;
}
