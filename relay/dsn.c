/*
 * dsn.c - delivery status notifications (RFC 3464): when a message is done
 * and some recipients failed for good, the sender gets a multipart/report
 * with a human-readable part, a message/delivery-status part and the
 * original headers (or the whole message for RET=FULL).
 *
 * The DSN is an ordinary queue file from <> written like the spool does it:
 * tmp/<qid>, fsync, rename into queue/, fsync queue/; the runner then
 * enqueues it. The original is streamed, never loaded whole.
 *
 * Ownership: nothing allocated here outlives a call.
 */
#include "relay/relay_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CHUNK 65536
#define MAX_DIAG 900    /* keeps each DSN field under the 998-byte line limit */

void relay__rfc5322_date(time_t t, char out[40])
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
	         tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	         tm.tm_sec);
}

static bool is_reply(const char *s)
{
	return isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) &&
	       isdigit((unsigned char)s[2]) && (s[3] == ' ' || s[3] == '\0');
}

/* d.ddd.ddd (RFC 3463) of length n */
static bool enhanced_ok(const char *p, size_t n)
{
	int dots = 0, run = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '.') {
			if (run == 0 || run > 3)
				return false;
			dots++;
			run = 0;
		} else if (isdigit((unsigned char)p[i])) {
			run++;
		} else {
			return false;
		}
	}
	return dots == 2 && run > 0 && run <= 3 && p[1] == '.';
}

void relay__status_code(const char *reply, bool perm, char out[12])
{
	if (reply && is_reply(reply) && reply[3] == ' ') {
		const char *p = reply + 4;
		size_t n = strcspn(p, " ");
		if (n < 12 && p[0] == reply[0] && (p[0] == '4' || p[0] == '5') && enhanced_ok(p, n)) {
			memcpy(out, p, n);
			out[n] = '\0';
			return;
		}
	}
	str_lcpy(out, perm ? "5.0.0" : "4.0.0", 12);
}

static bool non_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

static void add_report(struct buf *b, const struct relay__ctx *ctx,
                       const struct relay_envelope *env, const struct relay__state *st)
{
	char date[40], diag[MAX_DIAG + 1];
	relay__rfc5322_date(env->time, date);
	buf_printf(b, "Reporting-MTA: dns; %s\r\n", ctx->hostname);
	buf_printf(b, "X-Postern-Queue-ID: %s\r\n", env->qid);
	if (env->envid)
		buf_printf(b, "Original-Envelope-Id: %s\r\n", env->envid);
	buf_printf(b, "Arrival-Date: %s\r\n", date);
	for (size_t i = 0; i < st->nrcpts; i++) {
		const struct relay__rcpt *r = &st->rcpts[i];
		if (r->state != RELAY__FAILED)
			continue;
		relay__one_line(diag, sizeof(diag), r->diag ? r->diag : "");
		buf_printf(b, "\r\nFinal-Recipient: %s; %s\r\n", non_ascii(env->rcpts[i]) ? "utf-8" : "rfc822",
		           env->rcpts[i]);
		buf_printf(b, "Action: failed\r\nStatus: %s\r\n", r->status);
		if (is_reply(diag)) {
			if (ctx->ds.host)
				buf_printf(b, "Remote-MTA: dns; %s\r\n", ctx->ds.host);
			buf_printf(b, "Diagnostic-Code: smtp; %s\r\n", diag);
		} else {
			buf_printf(b, "Diagnostic-Code: X-Postern; %s\r\n", diag);
		}
	}
}

static void add_notice(struct buf *b, const struct relay__ctx *ctx,
                       const struct relay_envelope *env, const struct relay__state *st)
{
	char diag[MAX_DIAG + 1];
	buf_printf(b, "This is the mail system at %s.\r\n\r\n"
	           "Your message could not be delivered to one or more recipients.\r\n"
	           "The delivery report and %s are attached.\r\n\r\n",
	           ctx->hostname, env->ret && strcasecmp(env->ret, "FULL") == 0
	           ? "your message" : "the headers of your message");
	for (size_t i = 0; i < st->nrcpts; i++) {
		const struct relay__rcpt *r = &st->rcpts[i];
		if (r->state != RELAY__FAILED)
			continue;
		relay__one_line(diag, sizeof(diag), r->diag ? r->diag : "");
		buf_printf(b, "<%s>: %s%s\r\n", env->rcpts[i],
		           strcmp(r->status, "4.4.7") == 0 ? "delivery time expired; last error: " : "",
		           diag);
	}
}

/* Copies the original message (all of it, or its header section) into out.
 * Sets *blank when the copy ends with the empty line after the headers. */
static int copy_original(int out, int in, off_t off, bool full, bool *blank)
{
	char *chunk = xmalloc(CHUNK);
	static const char eoh[] = "\r\n\r\n";
	int matched = 2;   /* as if a CRLF came before: "\r\n" first = no headers */
	char last[2] = { '\r', '\n' };
	int rc = 0;
	*blank = false;
	for (;;) {
		ssize_t n = pread(in, chunk, CHUNK, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		off += n;
		size_t take = (size_t)n;
		if (!full) {
			for (size_t i = 0; i < (size_t)n; i++) {
				matched = chunk[i] == eoh[matched] ? matched + 1 : chunk[i] == '\r' ? 1 : 0;
				if (matched == 4) {
					take = i + 1;
					*blank = true;
					break;
				}
			}
		}
		last[0] = take >= 2 ? chunk[take - 2] : last[1];
		last[1] = chunk[take - 1];
		if ((rc = file_write_all(out, chunk, take)) < 0 || *blank)
			break;
	}
	free(chunk);
	if (rc == 0 && (last[0] != '\r' || last[1] != '\n'))
		rc = file_write_all(out, "\r\n", 2);
	return rc;
}

int relay__dsn_create(const struct relay__ctx *ctx, const struct relay_envelope *env,
                      int fd, const struct relay__state *st, char newqid[ID_LEN + 1])
{
	bool full = env->ret && strcasecmp(env->ret, "FULL") == 0;
	bool eight = env->eightbit || env->smtputf8;
	time_t now = time(NULL);
	char date[40], boundary[ID_LEN + 16];
	struct buf b;
	id_queue(newqid);
	relay__rfc5322_date(now, date);
	snprintf(boundary, sizeof(boundary), "=_postern_%s", newqid);  /* RFC 2046: <= 70 chars */
	buf_init(&b);

	buf_printf(&b, "POSTERN-QUEUE 1\nqid %s\ntime %lld\nfrom \nrcpt %s\ndsn_of %s\n", newqid,
	           (long long)now, env->from, env->qid);
	if (env->smtputf8)
		buf_puts(&b, "smtputf8 1\n");
	if (eight)
		buf_puts(&b, "body 8BITMIME\n");
	buf_puts(&b, "\n");

	buf_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", ctx->hostname);
	buf_printf(&b, "To: <%s>\r\n", env->from);
	buf_printf(&b, "Subject: Undelivered Mail Returned to Sender\r\n");
	buf_printf(&b, "Date: %s\r\n", date);
	buf_printf(&b, "Message-ID: <%s@%s>\r\n", newqid, ctx->hostname);
	buf_printf(&b, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
	buf_printf(&b, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	           "\tboundary=\"%s\"\r\n", boundary);
	buf_printf(&b, "Content-Transfer-Encoding: %s\r\n\r\n", eight ? "8bit" : "7bit");
	buf_printf(&b, "This is a MIME-encapsulated message.\r\n\r\n");

	buf_printf(&b, "--%s\r\nContent-Description: Notification\r\n"
	           "Content-Type: text/plain; charset=utf-8\r\n\r\n", boundary);
	add_notice(&b, ctx, env, st);

	buf_printf(&b, "\r\n--%s\r\nContent-Description: Delivery report\r\n"
	           "Content-Type: message/delivery-status\r\n\r\n", boundary);
	add_report(&b, ctx, env, st);

	buf_printf(&b, "\r\n--%s\r\nContent-Description: Undelivered %s\r\nContent-Type: %s\r\n\r\n",
	           boundary, full ? "Message" : "Message Headers",
	           full ? "message/rfc822" : "text/rfc822-headers");

	char qdir[PATH_MAX], tmp[PATH_MAX], dst[PATH_MAX];
	relay__path(qdir, sizeof(qdir), "%s/queue", ctx->spool_dir);
	relay__path(tmp, sizeof(tmp), "%s/tmp/%s", ctx->spool_dir, newqid);
	relay__path(dst, sizeof(dst), "%s/%s", qdir, newqid);
	int rc;
	int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		rc = -errno;
		buf_free(&b);
		return rc;
	}
	bool blank;
	rc = file_write_all(out, b.data, b.len);
	if (rc == 0)
		rc = copy_original(out, fd, env->body_offset, full, &blank);
	if (rc == 0) {
		b.len = 0;
		buf_printf(&b, "%s--%s--\r\n", blank ? "" : "\r\n", boundary);
		rc = file_write_all(out, b.data, b.len);
	}
	if (rc == 0 && fsync(out) < 0)
		rc = -errno;
	close(out);
	if (rc == 0 && rename(tmp, dst) < 0)
		rc = -errno;
	if (rc == 0)
		rc = file_sync_dir(qdir);
	else
		unlink(tmp);
	buf_free(&b);
	return rc;
}
