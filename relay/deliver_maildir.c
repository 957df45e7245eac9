/*
 * deliver_maildir.c - the embedded default delivery: one copy of each
 * message into a Maildir (new/), whatever the recipients. Maildir wants LF
 * line ends, so CRLF is turned into LF while copying; Return-Path and
 * Delivered-To are prepended as a local delivery agent does.
 *
 * The copy is written to tmp/, fsync'd, renamed into new/ and new/ is
 * fsync'd: once a recipient counts as delivered the mail survives a crash.
 * Nothing here allocates beyond the call.
 */
#include "relay/relay_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536

int relay__maildir_prepare(const char *root)
{
	static const char *const sub[] = { "cur", "new", "tmp" };
	char path[PATH_MAX];
	for (size_t i = 0; i < ARRAY_LEN(sub); i++) {
		relay__path(path, sizeof(path), "%s/%s", root, sub[i]);
		int rc = file_mkdirs(path, 0700);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Maildir names may not hold '/' or ':' (the info separator). */
static void safe_host(char *dst, size_t size, const char *host)
{
	size_t o = 0;
	if (size > 100)
		size = 100;   /* the whole name must fit in NAME_MAX */
	for (; *host && o + 5 < size; host++) {
		if (*host == '/' || *host == ':')
			o += (size_t)snprintf(dst + o, size - o, "\\%03o", (unsigned char)*host);
		else
			dst[o++] = *host;
	}
	dst[o] = '\0';
}

/* Copies the body from the queue file, CRLF -> LF. A CR at the end of a
 * chunk is held back until the next byte shows whether LF follows. */
static int copy_body(int out, const struct relay__attempt *a)
{
	char *in = xmalloc(2 * CHUNK + 1), *conv = in + CHUNK;
	off_t off = a->env->body_offset;
	bool held_cr = false;
	int rc = 0;
	for (;;) {
		ssize_t n = pread(a->fd, in, CHUNK, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		off += n;
		size_t o = 0;
		for (ssize_t i = 0; i < n; i++) {
			char c = in[i];
			if (held_cr) {
				held_cr = false;
				if (c != '\n')
					conv[o++] = '\r';
			}
			if (c == '\r')
				held_cr = true;
			else
				conv[o++] = c;
		}
		if ((rc = file_write_all(out, conv, o)) < 0)
			break;
	}
	free(in);
	if (rc == 0 && held_cr)
		rc = file_write_all(out, "\r", 1);
	return rc;
}

static const char *first_pending(const struct relay__attempt *a)
{
	for (size_t i = 0; i < a->env->nrcpts; i++)
		if (a->result[i] == RELAY__PENDING)
			return a->env->rcpts[i];
	return NULL;
}

void relay__maildir_deliver(const struct relay__ctx *ctx, struct relay__attempt *a)
{
	const char *rcpt = first_pending(a);
	if (!rcpt)
		return;
	char host[256], name[PATH_MAX], tmp[PATH_MAX], dst[PATH_MAX], newdir[PATH_MAX];
	safe_host(host, sizeof(host), ctx->hostname);
	snprintf(name, sizeof(name), "%lld.%ld_%s.%s", (long long)time(NULL), (long)getpid(),
	         a->env->qid, host);
	relay__path(tmp, sizeof(tmp), "%s/tmp/%s", ctx->maildir, name);
	relay__path(newdir, sizeof(newdir), "%s/new", ctx->maildir);
	relay__path(dst, sizeof(dst), "%s/%s", newdir, name);

	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ENOENT && relay__maildir_prepare(ctx->maildir) == 0)
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc = fd < 0 ? -errno : 0;
	const char *stage = "create";
	if (rc == 0) {
		struct buf h;
		buf_init(&h);
		buf_printf(&h, "Return-Path: <%s>\nDelivered-To: %s\n", a->env->from, rcpt);
		stage = "write";
		rc = file_write_all(fd, h.data, h.len);
		buf_free(&h);
		if (rc == 0)
			rc = copy_body(fd, a);
		if (rc == 0 && fsync(fd) < 0) {
			stage = "fsync";
			rc = -errno;
		}
		close(fd);
		if (rc == 0 && rename(tmp, dst) < 0) {
			stage = "rename";
			rc = -errno;
		}
		if (rc < 0)
			unlink(tmp);
		else if ((rc = file_sync_dir(newdir)) < 0)
			stage = "fsync";
	}
	if (rc < 0) {
		/* a full disk or a permission problem can be fixed: try later */
		char err[512];
		snprintf(err, sizeof(err), "maildir %s %.400s: %s", stage, tmp, strerror(-rc));
		relay__attempt_set_pending(a, RELAY__TEMP, err);
		return;
	}
	char ok[PATH_MAX + 32];
	snprintf(ok, sizeof(ok), "delivered to maildir as %.300s", name);
	relay__attempt_set_pending(a, RELAY__SENT, ok);
}
