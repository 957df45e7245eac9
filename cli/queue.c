/*
 * queue.c - `postern queue`: lists the messages in the spool with their
 * delivery state, as text for people or as JSON for scripts. Reads the
 * spool files only (relay_queue_list), so it is safe beside the daemon.
 */
#include "cli/cli.h"
#include "relay/relay.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct listing {
	bool json;
	size_t count;
	uint64_t bytes;
};

static void iso_time(time_t t, char out[32])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Queue values come from the network: keep terminal controls out. */
static void put_text(const char *s)
{
	for (; *s; s++)
		putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
}

static void put_json(const char *s)
{
	if (!s) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_text(const struct relay_queue_entry *e)
{
	const struct relay_envelope *env = e->env;
	char when[32];
	iso_time(env->time, when);
	printf("%s  %s  %llu bytes  from <", env->qid, when, (unsigned long long)e->size);
	put_text(env->from);
	fputs(">\n", stdout);
	for (size_t i = 0; i < env->nrcpts; i++) {
		fputs("    to <", stdout);
		put_text(env->rcpts[i]);
		printf(">%s\n", e->done[i] ? " (done)" : "");
	}
	if (e->next_try) {
		iso_time(e->next_try, when);
		printf("    attempts %u, next try %s\n", e->attempts, when);
	} else {
		printf("    attempts %u, next try as soon as possible\n", e->attempts);
	}
	if (e->last_error) {
		fputs("    last error: ", stdout);
		put_text(e->last_error);
		putchar('\n');
	}
	putchar('\n');
}

static void print_json(const struct relay_queue_entry *e, bool first)
{
	const struct relay_envelope *env = e->env;
	char when[32];
	iso_time(env->time, when);
	printf("%s{\"qid\":", first ? "" : ",\n");
	put_json(env->qid);
	printf(",\"arrival\":\"%s\",\"size\":%llu,\"sender\":", when, (unsigned long long)e->size);
	put_json(env->from);
	fputs(",\"recipients\":[", stdout);
	for (size_t i = 0; i < env->nrcpts; i++) {
		printf("%s{\"address\":", i ? "," : "");
		put_json(env->rcpts[i]);
		printf(",\"done\":%s}", e->done[i] ? "true" : "false");
	}
	printf("],\"attempts\":%u,\"next_try\":", e->attempts);
	if (e->next_try) {
		iso_time(e->next_try, when);
		printf("\"%s\"", when);
	} else {
		fputs("null", stdout);
	}
	fputs(",\"last_error\":", stdout);
	put_json(e->last_error);
	putchar('}');
}

static void on_entry(const struct relay_queue_entry *e, void *arg)
{
	struct listing *l = arg;
	if (l->json)
		print_json(e, l->count == 0);
	else
		print_text(e);
	l->count++;
	l->bytes += e->size;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: postern queue [-d SPOOLDIR] [--json]\n"
	             "  -d, --spool SPOOLDIR   the spool directory (default: %s)\n"
	             "      --json             one JSON array of messages\n", CLI_SPOOL_DIR);
}

int cli_queue(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "spool", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct listing l = { 0 };
	const char *spool = CLI_SPOOL_DIR;
	static char name[] = "postern queue";   /* for getopt's messages */
	int c;
	argv[0] = name;
	optind = 1;
	while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			spool = optarg;
			break;
		case 'j':
			l.json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (l.json)
		putchar('[');
	int rc = relay_queue_list(spool, on_entry, &l);
	if (rc < 0) {
		if (l.json)
			putchar('\n');
		fflush(stdout);
		fprintf(stderr, "postern queue: cannot read %s/queue: %s\n", spool, strerror(-rc));
		return 1;
	}
	if (l.json)
		fputs("]\n", stdout);
	else if (l.count == 0)
		puts("queue is empty");
	else
		printf("%zu message%s, %llu bytes\n", l.count, l.count == 1 ? "" : "s",
		       (unsigned long long)l.bytes);
	return fflush(stdout) == 0 ? 0 : 1;
}
