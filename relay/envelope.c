/*
 * envelope.c - reads the envelope of a queue file and reads and writes the
 * runner's state file (both formats are described in relay.h and
 * relay_int.h). Used by the runner and by `postern queue`, so nothing here
 * knows threads or sockets.
 *
 * Ownership: relay_envelope_read() fills the caller's struct with strings
 * it allocates; relay_envelope_free() releases them (also after a failed
 * read). relay__state_read() likewise, released by relay__state_free().
 */
#include "relay/relay_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* A header line longer than this is garbage, not an address. */
#define MAX_LINE 65536

bool relay__qid_valid(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (n >= ID_LEN || !isalnum((unsigned char)s[n]))
			return false;
	return n > 0;
}

void relay__path(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		fatal("relay: path too long: %s", out);
}

void relay__one_line(char *dst, size_t size, const char *s)
{
	size_t o = 0;
	for (; *s && o + 1 < size; s++)
		dst[o++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? ' ' : *s;
	dst[o] = '\0';
}

/* Reads one LF-terminated line without its LF into *line. Returns its
 * length, -1 at EOF, -EINVAL for an overlong, NUL-holding or unterminated
 * line. */
static ssize_t read_line(FILE *f, char **line, size_t *cap)
{
	ssize_t n = getline(line, cap, f);
	if (n < 0)
		return ferror(f) ? -EIO : -1;
	if (n > MAX_LINE || (*line)[n - 1] != '\n' || strlen(*line) != (size_t)n)
		return -EINVAL;
	(*line)[--n] = '\0';
	return n;
}

/* Splits "key value" in place; a key alone gets "". */
static char *split_value(char *line)
{
	char *sp = strchr(line, ' ');
	if (!sp)
		return line + strlen(line);
	*sp = '\0';
	return sp + 1;
}

static bool parse_time(const char *s, time_t *out)
{
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*out = (time_t)v;
	return true;
}

static bool truthy(const char *v)
{
	return strcmp(v, "0") != 0 && strcasecmp(v, "no") != 0 && strcasecmp(v, "false") != 0;
}

static int parse_header(FILE *f, struct relay_envelope *env)
{
	char *line = NULL;
	size_t cap = 0, rcap = 0;
	bool have_qid = false, have_time = false, have_from = false, ended = false;
	int rc = -EINVAL;
	ssize_t n = read_line(f, &line, &cap);
	if (n < 0 || strcmp(line, "POSTERN-QUEUE 1") != 0) {
		rc = n == -EIO ? -EIO : -EINVAL;
		goto out;
	}
	while ((n = read_line(f, &line, &cap)) >= 0) {
		if (n == 0) {
			ended = true;
			break;
		}
		char *v = split_value(line);
		if (strcmp(line, "qid") == 0) {
			if (!relay__qid_valid(v))
				goto out;
			str_lcpy(env->qid, v, sizeof(env->qid));
			have_qid = true;
		} else if (strcmp(line, "time") == 0) {
			if (!parse_time(v, &env->time))
				goto out;
			have_time = true;
		} else if (strcmp(line, "from") == 0) {
			free(env->from);
			env->from = str_dup(v);
			have_from = true;
		} else if (strcmp(line, "rcpt") == 0) {
			if (!*v)
				goto out;
			if (env->nrcpts == rcap) {
				rcap = rcap ? rcap * 2 : 4;
				env->rcpts = xrealloc(env->rcpts, rcap * sizeof(*env->rcpts));
			}
			env->rcpts[env->nrcpts++] = str_dup(v);
		} else if (strcmp(line, "ret") == 0) {
			free(env->ret);
			env->ret = *v ? str_dup(v) : NULL;
		} else if (strcmp(line, "envid") == 0) {
			free(env->envid);
			env->envid = *v ? str_dup(v) : NULL;
		} else if (strcmp(line, "smtputf8") == 0) {
			env->smtputf8 = truthy(v);
		} else if (strcmp(line, "body") == 0) {
			env->eightbit = strcasecmp(v, "8BITMIME") == 0 || strcasecmp(v, "BINARYMIME") == 0;
		}
		/* other keys belong to other readers (trace, listing) */
	}
	if (n == -EIO)
		rc = -EIO;
	else if (ended && have_qid && have_time && have_from && env->nrcpts > 0)
		rc = 0;
out:
	free(line);
	return rc;
}

int relay_envelope_read_fd(int fd, struct relay_envelope *env)
{
	memset(env, 0, sizeof(*env));
	/* A stdio stream of its own: fclose() leaves the caller's fd open,
	 * and the body is read with pread(), whatever the offset. */
	int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	FILE *f = d >= 0 ? fdopen(d, "r") : NULL;
	if (!f) {
		int rc = -errno;
		if (d >= 0)
			close(d);
		return rc;
	}
	rewind(f);
	int rc = parse_header(f, env);
	if (rc == 0) {
		off_t off = ftello(f);
		if (off < 0)
			rc = -errno;
		else
			env->body_offset = off;
	}
	fclose(f);
	if (rc < 0) {
		relay_envelope_free(env);
		memset(env, 0, sizeof(*env));
	}
	return rc;
}

int relay_envelope_read(const char *path, struct relay_envelope *env)
{
	memset(env, 0, sizeof(*env));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = relay_envelope_read_fd(fd, env);
	close(fd);
	return rc;
}

void relay_envelope_free(struct relay_envelope *env)
{
	free(env->from);
	for (size_t i = 0; i < env->nrcpts; i++)
		free(env->rcpts[i]);
	free(env->rcpts);
	free(env->ret);
	free(env->envid);
	env->from = NULL;
	env->rcpts = NULL;
	env->nrcpts = 0;
	env->ret = NULL;
	env->envid = NULL;
}

/* ---- state ----------------------------------------------------------- */

void relay__state_init(struct relay__state *st, size_t nrcpts)
{
	memset(st, 0, sizeof(*st));
	st->nrcpts = nrcpts;
	st->rcpts = xcalloc(nrcpts, sizeof(*st->rcpts));
}

void relay__state_free(struct relay__state *st)
{
	for (size_t i = 0; i < st->nrcpts; i++)
		free(st->rcpts[i].diag);
	free(st->rcpts);
	free(st->last_error);
	memset(st, 0, sizeof(*st));
}

static bool parse_status(const char *s, size_t len)
{
	if (len < 5 || len > 11 || (s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	for (size_t i = 2; i < len; i++)
		if (!isdigit((unsigned char)s[i]) && s[i] != '.')
			return false;
	return true;
}

/* "rcpt <index> delivered" or "rcpt <index> failed <status> <text>" */
static int parse_rcpt(char *v, struct relay__state *st)
{
	char *end;
	errno = 0;
	unsigned long i = strtoul(v, &end, 10);
	if (errno || end == v || *end != ' ' || i >= st->nrcpts)
		return -EINVAL;
	struct relay__rcpt *r = &st->rcpts[i];
	char *what = end + 1;
	char *rest = split_value(what);
	if (strcmp(what, "delivered") == 0) {
		r->state = RELAY__DELIVERED;
		return 0;
	}
	if (strcmp(what, "failed") != 0)
		return -EINVAL;
	char *text = split_value(rest);
	if (!parse_status(rest, strlen(rest)))
		return -EINVAL;
	r->state = RELAY__FAILED;
	str_lcpy(r->status, rest, sizeof(r->status));
	free(r->diag);
	r->diag = str_dup(text);
	return 0;
}

static int parse_state(FILE *f, struct relay__state *st)
{
	char *line = NULL;
	size_t cap = 0;
	int rc = -EINVAL;
	ssize_t n = read_line(f, &line, &cap);
	if (n < 0 || strcmp(line, "POSTERN-STATE 1") != 0)
		goto out;
	while ((n = read_line(f, &line, &cap)) >= 0) {
		char *v = split_value(line);
		if (strcmp(line, "attempts") == 0) {
			time_t t;
			if (!parse_time(v, &t) || t > UINT_MAX)
				goto out;
			st->attempts = (unsigned)t;
		} else if (strcmp(line, "next_try") == 0) {
			if (!parse_time(v, &st->next_try))
				goto out;
		} else if (strcmp(line, "last_error") == 0) {
			free(st->last_error);
			st->last_error = str_dup(v);
		} else if (strcmp(line, "rcpt") == 0 && st->nrcpts > 0) {
			if (parse_rcpt(v, st) < 0)
				goto out;
		}
	}
	rc = n == -1 ? 0 : n;
out:
	free(line);
	return rc;
}

int relay__state_read(const char *spool_dir, const char *qid, size_t nrcpts,
                      struct relay__state *st)
{
	relay__state_init(st, nrcpts);
	char path[PATH_MAX];
	relay__path(path, sizeof(path), "%s/state/%s", spool_dir, qid);
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	int rc = parse_state(f, st);
	fclose(f);
	if (rc < 0) {
		relay__state_free(st);
		relay__state_init(st, nrcpts);
	}
	return rc;
}

int relay__state_write(const char *spool_dir, const char *qid,
                       const struct relay__state *st)
{
	struct buf b;
	char line[1024];
	buf_init(&b);
	buf_printf(&b, "POSTERN-STATE 1\nattempts %u\nnext_try %lld\n", st->attempts,
	           (long long)st->next_try);
	if (st->last_error) {
		relay__one_line(line, sizeof(line), st->last_error);
		buf_printf(&b, "last_error %s\n", line);
	}
	for (size_t i = 0; i < st->nrcpts; i++) {
		const struct relay__rcpt *r = &st->rcpts[i];
		if (r->state == RELAY__DELIVERED) {
			buf_printf(&b, "rcpt %zu delivered\n", i);
		} else if (r->state == RELAY__FAILED) {
			relay__one_line(line, sizeof(line), r->diag ? r->diag : "");
			buf_printf(&b, "rcpt %zu failed %s %s\n", i, r->status, line);
		}
	}

	char dir[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX];
	relay__path(dir, sizeof(dir), "%s/state", spool_dir);
	relay__path(tmp, sizeof(tmp), "%s/.%s.tmp", dir, qid);
	relay__path(path, sizeof(path), "%s/%s", dir, qid);
	int rc = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = file_write_all(fd, b.data, b.len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	else
		rc = file_sync_dir(dir);
out:
	buf_free(&b);
	return rc;
}
