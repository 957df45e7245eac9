/*
 * cli.h - the subcommands of `postern`, the operator's tool. Each takes
 * the arguments from its own name on (argv[0] is the subcommand) and
 * returns the process exit status: 0 done, 1 failed, 2 usage error (the
 * trace commands say more in their usage text).
 */
#ifndef POSTERN_CLI_H
#define POSTERN_CLI_H

#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"   /* the build defines it; this is for hand builds */
#endif
#define CLI_SPOOL_DIR LOCALSTATEDIR "/spool/postern"
#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define CLI_CONFIG_FILE SYSCONFDIR "/postern/postern.conf"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* postern queue [-d SPOOLDIR] [--json]: lists the queued messages. */
int cli_queue(int argc, char **argv);
/* postern trace: finds trace records, checks a message's trace header,
 * prunes old records. */
int cli_trace(int argc, char **argv);
/* postern stats: figures from the trace store over a time window. */
int cli_stats(int argc, char **argv);

/* ---- shared by the trace commands (cli/util.c) ---------------------------- */

/* Exit statuses of `postern trace` and `postern stats`. */
enum {
	CLI_EXIT_FOUND = 0,
	CLI_EXIT_NOT_FOUND = 1,
	CLI_EXIT_USAGE = 2,
	CLI_EXIT_NOT_AUTHENTIC = 3,
	CLI_EXIT_DB = 4,
};

/* Where the trace store is and how to check trace headers: from the
 * configuration file, then overridden by what the command line gave.
 * Strings are owned (cli_trace_conf_free). */
struct cli_trace_conf {
	char *db;
	char *key_file;   /* NULL when none is configured */
	char *gate;       /* the configured hostname */
};
/* config: -c (NULL: the default file, unless db is given). 0, or -1 with
 * err filled. */
int cli_trace_conf_get(const char *config, const char *db, const char *key_file,
                       const char *gate, struct cli_trace_conf *out, char *err, size_t errlen);
void cli_trace_conf_free(struct cli_trace_conf *c);

/* "2024-05-01", "2024-05-01T12:00[:SS][Z|+HH[:MM]]" (UTC when no zone is
 * given), "@<unix time>", or a time ago: "30m", "2h", "7d". 0 or -1. */
int cli_parse_time(const char *s, int64_t now, int64_t *out);
/* A whole number from 1 to max (digits only). 0 or -1. */
int cli_parse_count(const char *s, unsigned long max, unsigned long *out);
/* UTC, "2024-05-01T12:00:00Z"; out holds 32. */
void cli_iso_time(int64_t t, char out[32]);
/* Values come from the network: terminal controls become '?'. */
void cli_put_text(const char *s);
/* A JSON string ("null" for NULL); invalid UTF-8 becomes U+FFFD. */
void cli_put_json(const char *s);

#endif
