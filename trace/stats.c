/*
 * stats.c - figures over a time window of the trace store: what was
 * accepted and refused, by whom and from where, with what TLS, and how
 * delivery went. Read-only; each figure is one grouped query over the
 * time index, all inside one read transaction so that they agree.
 *
 * Ownership: trace_stats_run() fills lists the caller releases with
 * trace_stats_free().
 */
#include "trace/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every grouped query binds ?1 = since, ?2 = until, ?3 = row limit (-1:
 * all) and yields key, count, bytes. */
struct grouped {
	size_t offset;          /* of the struct trace_counts in struct trace_stats */
	bool top;               /* limited to the caller's "top" */
	const char *sql;
};

#define IN_WINDOW " time >= ?1 AND time < ?2 "
#define COUNTS(field) offsetof(struct trace_stats, field)
static const struct grouped grouped[] = {
	{ COUNTS(accepted_by_listener), false,
	  "SELECT coalesce(listener, ''), count(*), sum(size) FROM messages WHERE" IN_WINDOW
	  "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?3" },
	{ COUNTS(rejected_by_rule), false,
	  "SELECT coalesce(rule, ''), count(*), 0 FROM rejects WHERE" IN_WINDOW
	  "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?3" },
	{ COUNTS(rejected_by_listener), false,
	  "SELECT coalesce(listener, ''), count(*), 0 FROM rejects WHERE" IN_WINDOW
	  "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?3" },
	{ COUNTS(auth_failures_by_account), true,
	  "SELECT coalesce(account, ''), count(*), 0 FROM rejects WHERE" IN_WINDOW
	  "AND rule = 'auth_failed' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?3" },
	{ COUNTS(auth_failures_by_ip), true,
	  "SELECT coalesce(client_ip, ''), count(*), 0 FROM rejects WHERE" IN_WINDOW
	  "AND rule = 'auth_failed' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?3" },
	{ COUNTS(top_accounts), true,
	  "SELECT coalesce(account, ''), count(*), sum(size) FROM messages WHERE" IN_WINDOW
	  "GROUP BY 1 ORDER BY 2 DESC, 3 DESC, 1 LIMIT ?3" },
	{ COUNTS(top_accounts_by_bytes), true,
	  "SELECT coalesce(account, ''), count(*), sum(size) FROM messages WHERE" IN_WINDOW
	  "GROUP BY 1 ORDER BY 3 DESC, 2 DESC, 1 LIMIT ?3" },
	{ COUNTS(top_ips), true,
	  "SELECT coalesce(client_ip, ''), count(*), sum(size) FROM messages WHERE" IN_WINDOW
	  "GROUP BY 1 ORDER BY 2 DESC, 3 DESC, 1 LIMIT ?3" },
	{ COUNTS(top_ips_by_bytes), true,
	  "SELECT coalesce(client_ip, ''), count(*), sum(size) FROM messages WHERE" IN_WINDOW
	  "GROUP BY 1 ORDER BY 3 DESC, 2 DESC, 1 LIMIT ?3" },
	{ COUNTS(tls_versions), false,
	  "SELECT coalesce(tls_version, ''), count(*), sum(size) FROM messages WHERE" IN_WINDOW
	  "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?3" },
	{ COUNTS(tls_ciphers), false,
	  "SELECT coalesce(tls_cipher, ''), count(*), sum(size) FROM messages WHERE" IN_WINDOW
	  "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?3" },
};
#undef COUNTS

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql, int64_t since, int64_t until)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_int64(st, 1, since);
	sqlite3_bind_int64(st, 2, until);
	return st;
}

static int fill_counts(sqlite3 *db, const char *sql, int64_t since, int64_t until, int limit,
                       struct trace_counts *out)
{
	sqlite3_stmt *st = prepare(db, sql, since, until);
	if (!st)
		return -EIO;
	sqlite3_bind_int(st, 3, limit);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		out->v = xrealloc(out->v, (out->n + 1) * sizeof(*out->v));
		struct trace_count *c = &out->v[out->n++];
		c->key = str_dup((const char *)sqlite3_column_text(st, 0));
		c->count = (uint64_t)sqlite3_column_int64(st, 1);
		c->bytes = (uint64_t)sqlite3_column_int64(st, 2);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* Runs a query whose one row holds up to n integers. */
static int fill_ints(sqlite3 *db, const char *sql, int64_t since, int64_t until,
                     int64_t bind3, int64_t *out, int n)
{
	sqlite3_stmt *st = prepare(db, sql, since, until);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 3, bind3);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		for (int i = 0; i < n; i++)
			out[i] = sqlite3_column_int64(st, i);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

static int fill_delivery(sqlite3 *db, int64_t since, int64_t until, struct trace_stats *st)
{
	static const char by_status[] =
		"SELECT sum(r.status = 'queued'), sum(r.status = 'delivered'),"
		" sum(r.status = 'deferred'), sum(r.status = 'bounced'), count(*)"
		" FROM message_rcpts r JOIN messages m ON m.id = r.message"
		" WHERE m.time >= ?1 AND m.time < ?2";
	/* Nearest rank: the k-th smallest delay, k = ceil(p * n). */
	static const char delay_at[] =
		"SELECT r.time - m.time AS d FROM message_rcpts r JOIN messages m ON m.id = r.message"
		" WHERE m.time >= ?1 AND m.time < ?2 AND r.status = 'delivered'"
		" ORDER BY d LIMIT 1 OFFSET ?3";
	int64_t v[5] = { 0 };
	if (fill_ints(db, by_status, since, until, 0, v, 5) < 0)
		return -EIO;
	st->queued = (uint64_t)v[0];
	st->delivered = (uint64_t)v[1];
	st->deferred = (uint64_t)v[2];
	st->bounced = (uint64_t)v[3];
	st->recipients = (uint64_t)v[4];
	st->delay_median = st->delay_p99 = -1;
	if (st->delivered == 0)
		return 0;
	int64_t n = (int64_t)st->delivered;
	int64_t k50 = (n + 1) / 2, k99 = (99 * n + 99) / 100;
	if (fill_ints(db, delay_at, since, until, k50 - 1, &st->delay_median, 1) < 0 ||
	    fill_ints(db, delay_at, since, until, k99 - 1, &st->delay_p99, 1) < 0)
		return -EIO;
	return 0;
}

static int fill_all(sqlite3 *db, int64_t since, int64_t until, unsigned top,
                    struct trace_stats *st)
{
	int64_t v[2] = { 0 };
	if (fill_ints(db, "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE" IN_WINDOW,
	              since, until, 0, v, 2) < 0)
		return -EIO;
	st->messages = (uint64_t)v[0];
	st->bytes = (uint64_t)v[1];
	if (fill_ints(db, "SELECT count(*) FROM rejects WHERE" IN_WINDOW, since, until, 0, v, 1) < 0)
		return -EIO;
	st->rejects = (uint64_t)v[0];
	for (size_t i = 0; i < ARRAY_LEN(grouped); i++) {
		struct trace_counts *c = (struct trace_counts *)((char *)st + grouped[i].offset);
		int limit = grouped[i].top && top ? (int)top : -1;
		if (fill_counts(db, grouped[i].sql, since, until, limit, c) < 0)
			return -EIO;
	}
	return fill_delivery(db, since, until, st);
}

int trace_stats_run(const char *path, int64_t since, int64_t until, unsigned top,
                    struct trace_stats *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	st->delay_median = st->delay_p99 = -1;
	sqlite3 *db;
	if (trace__db_open(path, TRACE__OPEN_READ, &db, err, errlen) < 0)
		return -EIO;
	int rc = trace__db_exec(db, "BEGIN", err, errlen);
	if (rc == 0) {
		rc = fill_all(db, since, until ? until : INT64_MAX, top, st);
		if (rc < 0)
			snprintf(err, errlen, "statistics failed: %s", sqlite3_errmsg(db));
	}
	(void)sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}

void trace_stats_free(struct trace_stats *st)
{
	for (size_t i = 0; i < ARRAY_LEN(grouped); i++) {
		struct trace_counts *c = (struct trace_counts *)((char *)st + grouped[i].offset);
		for (size_t j = 0; j < c->n; j++)
			free(c->v[j].key);
		free(c->v);
		c->v = NULL;
		c->n = 0;
	}
}
