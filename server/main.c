/*
 * main.c - posternd: parse the command line, load the configuration, and
 * hand over to the daemon. `posternd -t -c FILE` only checks FILE.
 */
#include "config.h"
#include "common/common.h"
#include "conf/conf.h"
#include "server/daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

static void usage(FILE *f)
{
	fprintf(f, "usage: posternd [-t] [-c FILE]\n"
	           "  -c FILE  configuration file (default " SYSCONFDIR "/postern/postern.conf)\n"
	           "  -t       check the configuration and exit\n"
	           "  -V       print the version\n");
}

int main(int argc, char **argv)
{
	const char *path = SYSCONFDIR "/postern/postern.conf";
	bool check_only = false;
	int opt;
	while ((opt = getopt(argc, argv, "c:thV")) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 't': check_only = true; break;
		case 'V': printf("posternd %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	char err[1024];
	struct conf *conf = conf_load(path, err, sizeof(err));
	if (!conf) {
		fprintf(stderr, "posternd: %s\n", err);
		return 1;
	}
	log_open("posternd", conf->log_syslog && !check_only, (enum log_level)conf->log_level);
	struct daemon *d = daemon_new(conf, check_only, err, sizeof(err));
	if (!d) {
		fprintf(stderr, "posternd: %s\n", err);
		return 1;
	}
	if (check_only) {
		printf("posternd: %s: configuration OK\n", path);
		daemon_free(d);
		return 0;
	}
	if (daemon_drop_privileges(d, err, sizeof(err)) < 0) {
		fprintf(stderr, "posternd: %s\n", err);
		daemon_free(d);
		return 1;
	}
	int rc = daemon_run(d);
	daemon_free(d);
	return rc;
}
