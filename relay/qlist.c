/*
 * qlist.c - lists the queue for `postern queue`: every queue/<qid> with
 * its delivery state, oldest first. Reads files only, so it runs beside a
 * live daemon; a message that disappears meanwhile is simply skipped.
 *
 * Ownership: the entry handed to the callback and everything it points to
 * are freed when the callback returns.
 */
#include "relay/relay_int.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns 1 when listed, 0 when skipped. */
static int list_one(const char *spool_dir, const char *qid, relay_list_cb cb, void *arg)
{
	char path[PATH_MAX];
	relay__path(path, sizeof(path), "%s/queue/%s", spool_dir, qid);
	struct relay_envelope env;
	struct stat sb;
	int rc = relay_envelope_read(path, &env);
	if (rc == 0 && stat(path, &sb) < 0)
		rc = -errno;
	if (rc < 0) {
		if (rc != -ENOENT)
			log_warn("event=queue_error qid=%s error=\"%s\"", qid, strerror(-rc));
		relay_envelope_free(&env);
		return 0;
	}
	struct relay__state st;
	if ((rc = relay__state_read(spool_dir, qid, env.nrcpts, &st)) < 0)
		log_warn("event=state_error qid=%s error=\"%s\"", qid, strerror(-rc));
	bool *done = xcalloc(env.nrcpts, sizeof(*done));
	for (size_t i = 0; i < env.nrcpts; i++)
		done[i] = st.rcpts[i].state != RELAY__TODO;
	struct relay_queue_entry e = {
		.env = &env,
		.size = (uint64_t)sb.st_size,
		.attempts = st.attempts,
		.next_try = st.next_try,
		.last_error = st.last_error,
		.done = done,
	};
	cb(&e, arg);
	free(done);
	relay__state_free(&st);
	relay_envelope_free(&env);
	return 1;
}

int relay_queue_list(const char *spool_dir, relay_list_cb cb, void *arg)
{
	char dir[PATH_MAX];
	if (strlen(spool_dir) > RELAY__DIR_MAX)
		return -ENAMETOOLONG;
	relay__path(dir, sizeof(dir), "%s/queue", spool_dir);
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!relay__qid_valid(de->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = xrealloc(names, cap * sizeof(*names));
		}
		names[n++] = str_dup(de->d_name);
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp_names);
	int listed = 0;
	for (size_t i = 0; i < n; i++) {
		listed += list_one(spool_dir, names[i], cb, arg);
		free(names[i]);
	}
	free(names);
	return listed;
}
