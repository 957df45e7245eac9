/*
 * stats.c - `postern stats`: what the gate did over a time window, from
 * the trace store: messages accepted per listener, refusals per rule and
 * listener, authentication failures per account and address, the busiest
 * accounts and addresses, TLS versions and ciphers, and how delivery went
 * (results and delays). Text for people, --json for scripts.
 *
 * Ownership: the figures belong to this command (trace_stats_free).
 */
#include "cli/cli.h"
#include "common/common.h"
#include "trace/trace.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct list {
	const char *title;     /* for people */
	const char *json;      /* for scripts */
	bool bytes;            /* the byte counts mean something */
	size_t offset;         /* of the struct trace_counts in struct trace_stats */
};

#define AT(field) offsetof(struct trace_stats, field)
static const struct list lists[] = {
	{ "accepted by listener", "accepted_by_listener", true, AT(accepted_by_listener) },
	{ "refused by rule", "rejected_by_rule", false, AT(rejected_by_rule) },
	{ "refused by listener", "rejected_by_listener", false, AT(rejected_by_listener) },
	{ "authentication failures by account", "auth_failures_by_account", false,
	  AT(auth_failures_by_account) },
	{ "authentication failures by address", "auth_failures_by_ip", false,
	  AT(auth_failures_by_ip) },
	{ "top accounts by messages", "top_accounts", true, AT(top_accounts) },
	{ "top accounts by bytes", "top_accounts_by_bytes", true, AT(top_accounts_by_bytes) },
	{ "top client addresses by messages", "top_ips", true, AT(top_ips) },
	{ "top client addresses by bytes", "top_ips_by_bytes", true, AT(top_ips_by_bytes) },
	{ "TLS versions", "tls_versions", false, AT(tls_versions) },
	{ "TLS ciphers", "tls_ciphers", false, AT(tls_ciphers) },
};
#undef AT

static const struct trace_counts *list_at(const struct trace_stats *st, const struct list *l)
{
	return (const struct trace_counts *)((const char *)st + l->offset);
}

static void print_delay(const char *label, int64_t s)
{
	printf("%s %lld s", label, (long long)s);
	if (s >= 3600)
		printf(" (%lldh%02lldm)", (long long)(s / 3600), (long long)(s % 3600 / 60));
	else if (s >= 60)
		printf(" (%lldm%02llds)", (long long)(s / 60), (long long)(s % 60));
}

static void print_text(const struct trace_stats *st, int64_t since, int64_t until)
{
	char a[32] = "the beginning", b[32] = "now";
	if (since)
		cli_iso_time(since, a);
	if (until)
		cli_iso_time(until, b);
	printf("from %s to %s\n\n", a, b);
	printf("accepted   %llu message%s, %llu bytes, %llu recipient%s\n",
	       (unsigned long long)st->messages, st->messages == 1 ? "" : "s",
	       (unsigned long long)st->bytes, (unsigned long long)st->recipients,
	       st->recipients == 1 ? "" : "s");
	printf("refused    %llu attempt%s\n", (unsigned long long)st->rejects,
	       st->rejects == 1 ? "" : "s");
	printf("delivery   %llu delivered, %llu deferred, %llu bounced, %llu waiting\n",
	       (unsigned long long)st->delivered, (unsigned long long)st->deferred,
	       (unsigned long long)st->bounced, (unsigned long long)st->queued);
	if (st->delay_median >= 0) {
		print_delay("delay      median", st->delay_median);
		print_delay(", 99th percentile", st->delay_p99);
		putchar('\n');
	}
	for (size_t i = 0; i < ARRAY_LEN(lists); i++) {
		const struct trace_counts *c = list_at(st, &lists[i]);
		if (c->n == 0)
			continue;
		printf("\n%s\n", lists[i].title);
		for (size_t j = 0; j < c->n; j++) {
			printf("  %10llu  ", (unsigned long long)c->v[j].count);
			if (lists[i].bytes)
				printf("%14llu bytes  ", (unsigned long long)c->v[j].bytes);
			cli_put_text(*c->v[j].key ? c->v[j].key : "(none)");
			putchar('\n');
		}
	}
}

static void print_json(const struct trace_stats *st, int64_t since, int64_t until)
{
	char when[32];
	fputs("{\"since\":", stdout);
	if (since) {
		cli_iso_time(since, when);
		printf("\"%s\"", when);
	} else {
		fputs("null", stdout);
	}
	fputs(",\"until\":", stdout);
	if (until) {
		cli_iso_time(until, when);
		printf("\"%s\"", when);
	} else {
		fputs("null", stdout);
	}
	printf(",\"messages\":%llu,\"bytes\":%llu,\"recipients\":%llu,\"rejects\":%llu,"
	       "\"delivered\":%llu,\"deferred\":%llu,\"bounced\":%llu,\"queued\":%llu",
	       (unsigned long long)st->messages, (unsigned long long)st->bytes,
	       (unsigned long long)st->recipients, (unsigned long long)st->rejects,
	       (unsigned long long)st->delivered, (unsigned long long)st->deferred,
	       (unsigned long long)st->bounced, (unsigned long long)st->queued);
	if (st->delay_median >= 0)
		printf(",\"delay_median\":%lld,\"delay_p99\":%lld", (long long)st->delay_median,
		       (long long)st->delay_p99);
	else
		fputs(",\"delay_median\":null,\"delay_p99\":null", stdout);
	for (size_t i = 0; i < ARRAY_LEN(lists); i++) {
		const struct trace_counts *c = list_at(st, &lists[i]);
		printf(",\"%s\":[", lists[i].json);
		for (size_t j = 0; j < c->n; j++) {
			fputs(j ? ",{\"key\":" : "{\"key\":", stdout);
			cli_put_json(*c->v[j].key ? c->v[j].key : NULL);
			printf(",\"count\":%llu", (unsigned long long)c->v[j].count);
			if (lists[i].bytes)
				printf(",\"bytes\":%llu", (unsigned long long)c->v[j].bytes);
			putchar('}');
		}
		putchar(']');
	}
	fputs("}\n", stdout);
}

static void usage(FILE *out)
{
	fputs("usage: postern stats [-c CONFIG | --db FILE] [--since TIME] [--until TIME]\n"
	      "                     [--top N] [--json]\n"
	      "  -c, --config FILE   read the trace store's place from FILE\n"
	      "                      (default: " CLI_CONFIG_FILE ")\n"
	      "      --db FILE       the trace store (overrides the configuration)\n"
	      "      --since TIME    --until TIME: the window (default: everything)\n"
	      "                      TIME: 2024-05-01, 2024-05-01T12:00[:SS][Z|+HH:MM] (UTC\n"
	      "                      when no zone), @UNIXTIME, or a time ago: 90m, 2h, 7d\n"
	      "      --top N         entries in the per-account and per-address lists (10)\n"
	      "      --json          one JSON object instead of text\n"
	      "delays are from acceptance to the latest delivery result of each delivered\n"
	      "recipient; delivery figures count the recipients of the messages accepted\n"
	      "in the window.\n"
	      "exit status: 0 done, 2 usage, 4 database (or output) error\n",
	      out);
}

enum { OPT_DB = 256, OPT_SINCE, OPT_UNTIL, OPT_TOP, OPT_JSON };

int cli_stats(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "db", required_argument, NULL, OPT_DB },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "until", required_argument, NULL, OPT_UNTIL },
		{ "top", required_argument, NULL, OPT_TOP },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static char name[] = "postern stats";   /* for getopt's messages */
	const char *config = NULL, *db = NULL;
	int64_t now = (int64_t)time(NULL), since = 0, until = 0;
	unsigned long top = 10;
	bool json = false;
	int c;
	argv[0] = name;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		const char *bad = NULL;
		switch (c) {
		case 'c': config = optarg; break;
		case OPT_DB: db = optarg; break;
		case OPT_SINCE:
			if (cli_parse_time(optarg, now, &since) < 0)
				bad = "--since";
			break;
		case OPT_UNTIL:
			if (cli_parse_time(optarg, now, &until) < 0)
				bad = "--until";
			break;
		case OPT_TOP:
			if (cli_parse_count(optarg, 100000, &top) < 0)
				bad = "--top";
			break;
		case OPT_JSON: json = true; break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_FOUND;
		default:
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
		if (bad) {
			fprintf(stderr, "postern stats: %s: cannot read \"%s\"\n", bad, optarg);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	struct cli_trace_conf conf;
	char err[512];
	if (cli_trace_conf_get(config, db, NULL, NULL, &conf, err, sizeof(err)) < 0) {
		fprintf(stderr, "postern stats: %s\n", err);
		return CLI_EXIT_USAGE;
	}
	struct trace_stats st;
	int rc = trace_stats_run(conf.db, since, until, (unsigned)top, &st, err, sizeof(err));
	cli_trace_conf_free(&conf);
	if (rc < 0) {
		trace_stats_free(&st);
		fprintf(stderr, "postern stats: %s\n", err);
		return CLI_EXIT_DB;
	}
	if (json)
		print_json(&st, since, until);
	else
		print_text(&st, since, until);
	trace_stats_free(&st);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "postern stats: cannot write the output\n");
		return CLI_EXIT_DB;
	}
	return CLI_EXIT_FOUND;
}
