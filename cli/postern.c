/*
 * postern.c - main() of `postern`, the operator's tool: picks the
 * subcommand and leaves the work to it (cli/<command>.c).
 */
#include "cli/cli.h"
#include "common/common.h"

#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} commands[] = {
	{ "queue", cli_queue },
	{ "trace", cli_trace },
	{ "stats", cli_stats },
};

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: postern <command> [options]\n"
	        "\n"
	        "commands:\n"
	        "  queue [-d SPOOLDIR] [--json]   list the messages waiting for delivery\n"
	        "                                 (spool default: %s)\n"
	        "  trace [options]                find who sent what: look up trace records,\n"
	        "                                 check a message's trace header, prune\n"
	        "  stats [options]                accepted, refused, delivered: the figures\n"
	        "\n"
	        "\"postern <command> --help\" tells a command's options.\n",
	        CLI_SPOOL_DIR);
}

int main(int argc, char **argv)
{
	/* the commands read files the daemon writes; only problems are news */
	log_open("postern", false, LOG_LEVEL_WARN);
	if (argc >= 2) {
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (strcmp(argv[1], commands[i].name) == 0)
				return commands[i].run(argc - 1, argv + 1);
		if (strcmp(argv[1], "--help") != 0 && strcmp(argv[1], "-h") != 0)
			fprintf(stderr, "postern: unknown command \"%s\"\n", argv[1]);
	}
	usage(stderr);
	return 2;
}
