/*
 * schema.c - the trace database: its tables and indexes, the migrations
 * that bring an older file up to date (PRAGMA user_version counts them),
 * the connection settings each user needs, and the normalised column forms
 * (address keys, fingerprints) that writers and lookups must agree on.
 *
 * Ownership: trace__db_open() returns a connection the caller closes.
 */
#include "trace/store_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The records name accounts, client addresses and recipients: the owner
 * (the daemon user) and its group (the operators who run `postern trace`)
 * only. SQLite gives -wal and -shm the mode of the database file when it
 * creates them, whatever the umask, so the database file's mode is the
 * one to get right. */
#define DB_FILE_MODE 0640

/* Version 1. Every lookup key has an index; addresses, senders and
 * recipients compare without case (ASCII) because that is how people type
 * them into a lookup. Recipients are rows of their own so that a lookup by
 * recipient is an index search and each gets its own delivery result. */
static const char schema_v1[] =
	"CREATE TABLE messages ("
	" id INTEGER PRIMARY KEY,"
	" qid TEXT NOT NULL,"
	" trace_id TEXT NOT NULL,"
	" time INTEGER NOT NULL,"
	" sid TEXT,"
	" listener TEXT,"
	" client_ip TEXT,"
	" client_ip_key TEXT,"          /* see trace__ip_key() */
	" client_port INTEGER,"
	" reverse_name TEXT,"
	" helo TEXT,"
	" tls_version TEXT,"
	" tls_cipher TEXT,"
	" tls_sni TEXT,"
	" cert_fp TEXT,"                /* lowercase hex, no colons */
	" cert_subject TEXT,"
	" cert_issuer TEXT,"
	" sasl_mech TEXT,"
	" account TEXT COLLATE NOCASE,"
	" mail_from TEXT COLLATE NOCASE,"
	" size INTEGER NOT NULL,"
	" body_sha256 TEXT,"
	" message_id TEXT,"
	" smime_status TEXT,"
	" trust_class TEXT);"
	"CREATE UNIQUE INDEX messages_qid ON messages(qid);"
	"CREATE UNIQUE INDEX messages_trace_id ON messages(trace_id);"
	"CREATE INDEX messages_message_id ON messages(message_id);"
	"CREATE INDEX messages_account ON messages(account);"
	"CREATE INDEX messages_client_ip ON messages(client_ip_key);"
	"CREATE INDEX messages_cert_fp ON messages(cert_fp);"
	"CREATE INDEX messages_mail_from ON messages(mail_from);"
	"CREATE INDEX messages_time ON messages(time);"
	"CREATE TABLE message_rcpts ("
	" message INTEGER NOT NULL REFERENCES messages(id),"
	" rcpt TEXT NOT NULL COLLATE NOCASE,"
	" status TEXT NOT NULL DEFAULT 'queued',"   /* queued delivered deferred bounced */
	" relay TEXT,"
	" reply TEXT,"
	" time INTEGER);"                           /* of the latest result */
	"CREATE UNIQUE INDEX message_rcpts_message ON message_rcpts(message, rcpt);"
	"CREATE INDEX message_rcpts_rcpt ON message_rcpts(rcpt, message);"
	"CREATE TABLE rejects ("
	" id INTEGER PRIMARY KEY,"
	" time INTEGER NOT NULL,"
	" sid TEXT,"
	" listener TEXT,"
	" client_ip TEXT,"
	" client_ip_key TEXT,"
	" helo TEXT,"
	" account TEXT COLLATE NOCASE,"
	" command TEXT,"
	" mail_from TEXT COLLATE NOCASE,"
	" rcpt TEXT COLLATE NOCASE,"
	" rule TEXT,"
	" code INTEGER,"
	" enh TEXT,"
	" text TEXT);"
	/* Refusals are read by time (statistics, pruning) and, during an
	 * attack, by address; more indexes would slow the writes an attack
	 * brings. */
	"CREATE INDEX rejects_time ON rejects(time);"
	"CREATE INDEX rejects_client_ip ON rejects(client_ip_key);";

/* Version 2: fewer B-trees to update per message, for each one is a page
 * rewritten in the WAL at every commit. Recipients are keyed by (message,
 * rcpt) without a rowid table of their own (pos keeps the order they were
 * given in); the certificate and account indexes leave out the messages
 * without one (most submissions have no client certificate, no mail from
 * other MTAs has an account): a lookup by either still finds them all,
 * since `x = ?` implies `x IS NOT NULL`. */
static const char schema_v2[] =
	"CREATE TABLE message_rcpts_v2 ("
	" message INTEGER NOT NULL REFERENCES messages(id),"
	" rcpt TEXT NOT NULL COLLATE NOCASE,"
	" pos INTEGER NOT NULL DEFAULT 0,"
	" status TEXT NOT NULL DEFAULT 'queued',"
	" relay TEXT,"
	" reply TEXT,"
	" time INTEGER,"
	" PRIMARY KEY (message, rcpt)) WITHOUT ROWID;"
	"INSERT INTO message_rcpts_v2 (message, rcpt, pos, status, relay, reply, time)"
	" SELECT message, rcpt, rowid, status, relay, reply, time FROM message_rcpts;"
	"DROP TABLE message_rcpts;"
	"ALTER TABLE message_rcpts_v2 RENAME TO message_rcpts;"
	"CREATE INDEX message_rcpts_rcpt ON message_rcpts(rcpt, message);"
	"DROP INDEX messages_cert_fp;"
	"CREATE INDEX messages_cert_fp ON messages(cert_fp) WHERE cert_fp IS NOT NULL;"
	"DROP INDEX messages_account;"
	"CREATE INDEX messages_account ON messages(account) WHERE account IS NOT NULL;";

/* migrations[i] takes a database from version i to i + 1. */
static const char *const migrations[TRACE__SCHEMA_VERSION] = { schema_v1, schema_v2 };

const char *trace__migration(int from)
{
	return from >= 0 && from < TRACE__SCHEMA_VERSION ? migrations[from] : NULL;
}

int trace__db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	if (err)
		snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -EIO;
}

static int db_int(sqlite3 *db, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : -EIO;
}

static int check_version(sqlite3 *db, int64_t version, char *err, size_t errlen)
{
	if (version == TRACE__SCHEMA_VERSION)
		return 0;
	if (version > TRACE__SCHEMA_VERSION)
		snprintf(err, errlen, "schema version %lld is newer than this Postern knows (%d)",
		         (long long)version, TRACE__SCHEMA_VERSION);
	else if (version == 0)
		snprintf(err, errlen, "not a Postern trace database (no schema yet)");
	else
		snprintf(err, errlen, "schema version %lld is older than %d: start posternd once "
		         "to migrate it", (long long)version, TRACE__SCHEMA_VERSION);
	return -EIO;
}

/* Inside one write transaction, so that two starting daemons cannot both
 * migrate and a crash leaves the old version whole. */
static int migrate(sqlite3 *db, char *err, size_t errlen)
{
	if (trace__db_exec(db, "BEGIN IMMEDIATE", err, errlen) < 0)
		return -EIO;
	int64_t version, tables;
	if (db_int(db, "PRAGMA user_version", &version) < 0 ||
	    db_int(db, "SELECT count(*) FROM sqlite_master", &tables) < 0) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		goto fail;
	}
	if (version > TRACE__SCHEMA_VERSION) {
		check_version(db, version, err, errlen);
		goto fail;
	}
	/* Version 0 with tables is some other program's database: leave it. */
	if (version == 0 && tables > 0) {
		snprintf(err, errlen, "not a Postern trace database (it has other tables)");
		goto fail;
	}
	for (int64_t v = version; v < TRACE__SCHEMA_VERSION; v++) {
		if (trace__db_exec(db, migrations[v], err, errlen) < 0)
			goto fail;
	}
	if (version != TRACE__SCHEMA_VERSION) {
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", TRACE__SCHEMA_VERSION);
		if (trace__db_exec(db, sql, err, errlen) < 0)
			goto fail;
	}
	if (trace__db_exec(db, "COMMIT", err, errlen) < 0)
		goto fail;
	return 0;
fail:
	(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -EIO;
}

static int writer_setup(sqlite3 *db, char *err, size_t errlen)
{
	if (sqlite3_db_readonly(db, "main") == 1) {
		/* A daemon that cannot write its records would refuse every
		 * message; better to say so at start-up. */
		snprintf(err, errlen, "the database is read-only");
		return -EIO;
	}
	/* WAL: readers (postern trace) never block the writer. synchronous=FULL
	 * fsyncs the WAL at each commit, so a record is on disk before its
	 * owner hears "done", and one commit per batch keeps that affordable. */
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -EIO;
	}
	bool wal = sqlite3_step(st) == SQLITE_ROW &&
	           sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
	sqlite3_finalize(st);
	if (!wal) {
		snprintf(err, errlen, "cannot switch to WAL mode: %s", sqlite3_errmsg(db));
		return -EIO;
	}
	if (trace__db_exec(db, "PRAGMA synchronous=FULL;"
	                       "PRAGMA journal_size_limit=67108864", err, errlen) < 0)
		return -EIO;
	return migrate(db, err, errlen);
}

/* Creates the writer's database file with DB_FILE_MODE (fchmod: the umask
 * must not widen or narrow it), or takes the world's access away from one
 * an older version left 0644, and the -wal and -shm a crash left beside it.
 * Files we do not own are the operator's business and left alone. */
static int writer_file(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, DB_FILE_MODE);
	if (fd >= 0) {
		int rc = fchmod(fd, DB_FILE_MODE) < 0 ? -errno : 0;
		close(fd);
		if (rc < 0)
			snprintf(err, errlen, "cannot set the mode of a new database: %s", strerror(-rc));
		return rc;
	}
	if (errno != EEXIST) {
		snprintf(err, errlen, "cannot create: %s", strerror(errno));
		return -errno;
	}
	static const char *const suffixes[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < ARRAY_LEN(suffixes); i++) {
		char file[4096];
		struct stat st;
		if ((size_t)snprintf(file, sizeof(file), "%s%s", path, suffixes[i]) >= sizeof(file) ||
		    stat(file, &st) < 0 || st.st_uid != geteuid() || !(st.st_mode & S_IRWXO))
			continue;
		mode_t m = st.st_mode & 07777 & ~(mode_t)S_IRWXO;
		if (chmod(file, m) == 0)
			log_warn("event=trace_store_mode file=%s old=%04o new=%04o"
			         " note=\"was open to every local user\"", log_q(file),
			         (unsigned)(st.st_mode & 07777), (unsigned)m);
	}
	return 0;
}

int trace__db_open(const char *path, enum trace__open_mode mode, sqlite3 **out,
                   char *err, size_t errlen)
{
	int flags = mode == TRACE__OPEN_READ ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
	if (mode == TRACE__OPEN_WRITER)
		flags |= SQLITE_OPEN_CREATE;
	sqlite3 *db = NULL;
	char why[512] = "";
	if (mode == TRACE__OPEN_WRITER && writer_file(path, why, sizeof(why)) < 0)
		goto fail;
	int rc = sqlite3_open_v2(path, &db, flags, NULL);
	if (rc != SQLITE_OK) {
		snprintf(why, sizeof(why), "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(db, 1);
	/* Pruning and the daemon share the file: wait for each other's short
	 * transactions rather than fail at once. */
	sqlite3_busy_timeout(db, 5000);
	int64_t version = 0;
	if (mode == TRACE__OPEN_WRITER) {
		if (writer_setup(db, why, sizeof(why)) < 0)
			goto fail;
	} else if (db_int(db, "PRAGMA user_version", &version) < 0) {
		snprintf(why, sizeof(why), "%s", sqlite3_errmsg(db));
		goto fail;
	} else if (check_version(db, version, why, sizeof(why)) < 0) {
		goto fail;
	}
	*out = db;
	return 0;
fail:
	snprintf(err, errlen, "%s: %s", path, why);
	sqlite3_close(db);
	*out = NULL;
	return -EIO;
}

/* ---- normalised forms -------------------------------------------------- */

static int ip_parse(const char *s, size_t len, unsigned char addr[16], bool *v4)
{
	char tmp[INET6_ADDRSTRLEN + 2];
	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
	}
	if (len == 0 || len >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	unsigned char a4[4];
	if (inet_pton(AF_INET, tmp, a4) == 1) {
		static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };
		memcpy(addr, mapped, 12);
		memcpy(addr + 12, a4, 4);
		*v4 = true;
		return 0;
	}
	*v4 = false;
	return inet_pton(AF_INET6, tmp, addr) == 1 ? 0 : -EINVAL;
}

static void hex16(const unsigned char a[16], char out[33])
{
	codec_hex(a, 16, out);
}

int trace__ip_key(const char *ip, char out[33])
{
	unsigned char a[16];
	bool v4;
	if (!ip || ip_parse(ip, strlen(ip), a, &v4) < 0)
		return -EINVAL;
	hex16(a, out);
	return 0;
}

int trace__ip_range(const char *cidr, char lo[33], char hi[33])
{
	const char *slash = strchr(cidr, '/');
	size_t len = slash ? (size_t)(slash - cidr) : strlen(cidr);
	unsigned char a[16], b[16];
	bool v4;
	if (ip_parse(cidr, len, a, &v4) < 0)
		return -EINVAL;
	int bits = 128;
	if (slash) {
		char *end;
		errno = 0;
		long n = strtol(slash + 1, &end, 10);
		if (!isdigit((unsigned char)slash[1]) || *end || errno || n < 0 || n > (v4 ? 32 : 128))
			return -EINVAL;
		bits = (int)n + (v4 ? 96 : 0);
	}
	for (int i = 0; i < 16; i++) {
		int keep = bits - 8 * i;   /* prefix bits falling in this byte */
		unsigned char mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
		b[i] = (unsigned char)(a[i] | ~mask);
		a[i] &= mask;
	}
	hex16(a, lo);
	hex16(b, hi);
	return 0;
}

int trace__fp_norm(const char *fp, char out[65])
{
	size_t n = 0;
	for (const char *p = fp; *p; p++) {
		if (*p == ':')
			continue;
		if (!isxdigit((unsigned char)*p) || n == 64)
			return -EINVAL;
		out[n++] = (char)tolower((unsigned char)*p);
	}
	out[n] = '\0';
	return n == 64 ? 0 : -EINVAL;
}
