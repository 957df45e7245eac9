/*
 * store_int.h - what the trace store's files share and nobody else needs:
 * opening a connection with the right settings, the schema and its
 * migrations, the normalised forms of the columns we search on, and a
 * counter the unit test reads to see group commit at work.
 *
 * Ownership: trace__db_open() hands back a connection owned by the caller
 * (sqlite3_close). The normalisers write into the caller's buffers.
 */
#ifndef POSTERN_TRACE_STORE_INT_H
#define POSTERN_TRACE_STORE_INT_H

#include <sqlite3.h>
#include <stdint.h>
#include "trace/trace.h"

#define TRACE__SCHEMA_VERSION 2

enum trace__open_mode {
	TRACE__OPEN_WRITER,    /* create if missing, migrate, WAL, synchronous=FULL */
	TRACE__OPEN_READ,      /* existing database, read-only */
	TRACE__OPEN_MAINTAIN,  /* existing database, read-write, no migration */
};

/* Opens path; the schema must be (or, for the writer, become) the current
 * version. Returns 0, or -EIO with "path: reason" in err. */
int trace__db_open(const char *path, enum trace__open_mode mode, sqlite3 **out,
                   char *err, size_t errlen);

/* Runs one statement without results. Returns 0 or -EIO (err filled when
 * given). */
int trace__db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);

/* The sortable form of an address: 32 lowercase hex digits of the IPv6
 * address, IPv4 as ::ffff:a.b.c.d, so that a CIDR block is one range.
 * Accepts "[v6]". Returns 0 or -EINVAL. */
int trace__ip_key(const char *ip, char out[33]);
/* "a.b.c.d[/n]" or "v6[/n]" to the inclusive range of keys. 0 or -EINVAL. */
int trace__ip_range(const char *cidr, char lo[33], char hi[33]);
/* SHA-256 fingerprint with colons dropped and lowercased; -EINVAL unless
 * it is 64 hex digits. */
int trace__fp_norm(const char *fp, char out[65]);

/* The SQL that takes a database from version `from` to from + 1 (for the
 * tests, which build old databases with it). */
const char *trace__migration(int from);

/* Transactions the writer has run, committed or not (for the tests). */
uint64_t trace__store_commits(struct trace_store *ts);

#endif
