/*
 * deliver_smtp.c - the blocking SMTP/LMTP client that hands queued mail to
 * the downstream. Each worker thread owns one struct relay__smtp, which
 * keeps the session open for a few seconds after a transaction so that the
 * next message skips the connect, greeting, EHLO and TLS handshake.
 *
 * I/O is blocking with SO_RCVTIMEO/SO_SNDTIMEO (conf.timeout per read or
 * write); TLS is OpenSSL straight on the socket. Writes are coalesced in a
 * buffer and flushed once per command batch (PIPELINING when offered).
 * Plain writes use MSG_NOSIGNAL; OpenSSL's write() relies on the runner
 * blocking SIGPIPE in its workers.
 *
 * Ownership: relay__smtp_new() returns a client freed by relay__smtp_free()
 * (which QUITs a cached session). Replies are copied into the attempt.
 */
#include "relay/relay_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define CACHE_IDLE 4.0          /* seconds a session waits for the next message */
#define QUIT_TIMEOUT 2          /* seconds to wait for the 221 */
#define MAX_REPLY_LINE 4096
#define MAX_REPLY_LINES 100
#define CHUNK 65536

struct relay__smtp {
	const struct relay__ctx *ctx;
	int fd;
	SSL *ssl;
	SSL_SESSION *resume;        /* the last session, for an abbreviated handshake */
	struct buf in, out;
	bool broken;                /* 421 seen or protocol out of step */
	bool pipelining, eightbit, smtputf8, dsn, starttls, size;
	double idle_since;          /* monotonic; end of the last transaction */
	char peer[300];             /* for messages: host:port or socket path */
	char err[512];              /* why the session failed */
};

struct reply {
	int code;
	struct buf lines;           /* text of each line, '\n' after each */
	struct buf msg;             /* "250 text text": one line for logs and DSNs */
};

/* ---- downstream address ---------------------------------------------- */

static bool parse_port(const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	return isdigit((unsigned char)*s) && !errno && !*end && v > 0 && v < 65536;
}

int relay__downstream_parse(const char *s, struct relay__downstream *ds,
                            char *err, size_t errlen)
{
	memset(ds, 0, sizeof(*ds));
	if (!s || !*s) {
		ds->proto = RELAY__MAILDIR;
		return 0;
	}
	const char *hp;
	if (strncmp(s, "lmtp:unix:", 10) == 0) {
		const char *path = s + 10;
		if (*path != '/' || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			goto bad;
		ds->proto = RELAY__LMTP;
		ds->path = str_dup(path);
		return 0;
	} else if (strncmp(s, "smtp://", 7) == 0) {
		ds->proto = RELAY__SMTP;
		hp = s + 7;
	} else if (strncmp(s, "lmtp://", 7) == 0) {
		ds->proto = RELAY__LMTP;
		hp = s + 7;
	} else {
		goto bad;
	}
	const char *colon;
	if (*hp == '[') {
		const char *close = strchr(hp, ']');
		if (!close || close[1] != ':' || close == hp + 1)
			goto bad;
		ds->host = str_ndup(hp + 1, (size_t)(close - hp - 1));
		colon = close + 1;
	} else {
		colon = strrchr(hp, ':');
		if (!colon || colon == hp)
			goto bad;
		ds->host = str_ndup(hp, (size_t)(colon - hp));
		if (strchr(ds->host, ':') || strchr(ds->host, '/'))
			goto bad;
	}
	if (!parse_port(colon + 1))
		goto bad;
	ds->port = str_dup(colon + 1);
	return 0;
bad:
	relay__downstream_free(ds);
	snprintf(err, errlen, "downstream \"%s\": expected smtp://host:port, "
	         "lmtp://host:port or lmtp:unix:/path", s);
	return -EINVAL;
}

void relay__downstream_free(struct relay__downstream *ds)
{
	free(ds->host);
	free(ds->port);
	free(ds->path);
	memset(ds, 0, sizeof(*ds));
}

/* ---- socket and TLS I/O -------------------------------------------------- */

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_timeout(int fd, unsigned seconds)
{
	struct timeval tv = { .tv_sec = (time_t)seconds };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Non-blocking connect bounded by the timeout, then back to blocking I/O. */
static int connect_one(int fd, const struct sockaddr *sa, socklen_t salen, unsigned timeout)
{
	if (connect(fd, sa, salen) == 0)
		goto ok;
	if (errno != EINPROGRESS)
		return -errno;
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int n;
	do
		n = poll(&p, 1, (int)timeout * 1000);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return -ETIMEDOUT;
	if (n < 0)
		return -errno;
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return -errno;
	if (soerr)
		return -soerr;
ok:
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	set_timeout(fd, timeout);
	return 0;
}

static int sock_connect(struct relay__smtp *s)
{
	const struct relay__downstream *ds = &s->ctx->ds;
	unsigned timeout = s->ctx->conf.timeout;
	int rc;
	if (ds->path) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		str_lcpy(sun.sun_path, ds->path, sizeof(sun.sun_path));
		s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (s->fd < 0)
			rc = -errno;
		else
			rc = connect_one(s->fd, (struct sockaddr *)&sun, sizeof(sun), timeout);
		goto out;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_NUMERICSERV }, *res;
	int g = getaddrinfo(ds->host, ds->port, &hints, &res);
	if (g != 0) {
		snprintf(s->err, sizeof(s->err), "cannot resolve %s: %s", ds->host, gai_strerror(g));
		return -1;
	}
	rc = -EHOSTUNREACH;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		s->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		               ai->ai_protocol);
		if (s->fd < 0) {
			rc = -errno;
			continue;
		}
		rc = connect_one(s->fd, ai->ai_addr, ai->ai_addrlen, timeout);
		if (rc == 0)
			break;
		close(s->fd);
		s->fd = -1;
	}
	freeaddrinfo(res);
	if (rc == 0) {
		/* writes are already batched; Nagle would only add a delay */
		int one = 1;
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
out:
	if (rc < 0) {
		if (s->fd >= 0)
			close(s->fd);
		s->fd = -1;
		snprintf(s->err, sizeof(s->err), "connect to %s: %s", s->peer, strerror(-rc));
		return -1;
	}
	return 0;
}

static void tls_error(struct relay__smtp *s, const char *what)
{
	char e[256] = "unknown error";
	unsigned long code = ERR_get_error();
	if (code)
		ERR_error_string_n(code, e, sizeof(e));
	ERR_clear_error();
	snprintf(s->err, sizeof(s->err), "TLS %s with %.200s: %.200s", what, s->peer, e);
}

/* Turns a failed read or write into s->err; returns -1. */
static int io_fail(struct relay__smtp *s, int ret, int errnum, const char *stage)
{
	if (s->ssl) {
		int e = SSL_get_error(s->ssl, ret);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			errnum = ETIMEDOUT;   /* blocking socket: the timeout expired */
		else if (e == SSL_ERROR_ZERO_RETURN)
			errnum = 0;
		else if (e == SSL_ERROR_SSL) {
			tls_error(s, stage);
			return -1;
		} else if (e == SSL_ERROR_SYSCALL && ret == 0)
			errnum = 0;
	} else if (errnum == EAGAIN || errnum == EWOULDBLOCK) {
		errnum = ETIMEDOUT;
	}
	ERR_clear_error();
	if (errnum == ETIMEDOUT)
		snprintf(s->err, sizeof(s->err), "timeout with %s while %s", s->peer, stage);
	else if (errnum == 0)
		snprintf(s->err, sizeof(s->err), "lost connection with %s while %s", s->peer, stage);
	else
		snprintf(s->err, sizeof(s->err), "lost connection with %s while %s: %s", s->peer,
		         stage, strerror(errnum));
	return -1;
}

static int io_flush(struct relay__smtp *s, const char *stage)
{
	const char *p = s->out.data;
	size_t len = s->out.len;
	while (len > 0) {
		ssize_t n;
		if (s->ssl) {
			int w = SSL_write(s->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
			if (w <= 0)
				return io_fail(s, w, errno, stage);
			n = w;
		} else {
			n = send(s->fd, p, len, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return io_fail(s, -1, errno, stage);
		}
		p += n;
		len -= (size_t)n;
	}
	s->out.len = 0;
	return 0;
}

static int io_fill(struct relay__smtp *s, const char *stage)
{
	buf_reserve(&s->in, 4096);
	for (;;) {
		ssize_t n;
		if (s->ssl) {
			int r = SSL_read(s->ssl, s->in.data + s->in.len, 4096);
			if (r <= 0)
				return io_fail(s, r, errno, stage);
			n = r;
		} else {
			n = recv(s->fd, s->in.data + s->in.len, 4096, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return io_fail(s, -1, n == 0 ? 0 : errno, stage);
		}
		s->in.len += (size_t)n;
		s->in.data[s->in.len] = '\0';
		return 0;
	}
}

/* Takes the next line (without CRLF) into line[MAX_REPLY_LINE + 1]. */
static int read_line(struct relay__smtp *s, char *line, size_t *len, const char *stage)
{
	char *nl;
	while (!(nl = memchr(s->in.data ? s->in.data : "", '\n', s->in.len))) {
		if (s->in.len > MAX_REPLY_LINE) {
			snprintf(s->err, sizeof(s->err), "overlong reply line from %s while %s",
			         s->peer, stage);
			return -1;
		}
		if (io_fill(s, stage) < 0)
			return -1;
	}
	size_t n = (size_t)(nl - s->in.data);
	size_t take = n;
	if (take > 0 && s->in.data[take - 1] == '\r')
		take--;
	if (take > MAX_REPLY_LINE)
		take = MAX_REPLY_LINE;
	memcpy(line, s->in.data, take);
	line[take] = '\0';
	*len = take;
	buf_consume(&s->in, n + 1);
	return 0;
}

static void reply_init(struct reply *r)
{
	r->code = 0;
	buf_init(&r->lines);
	buf_init(&r->msg);
}

static void reply_free(struct reply *r)
{
	buf_free(&r->lines);
	buf_free(&r->msg);
}

static int read_reply(struct relay__smtp *s, struct reply *r, const char *stage)
{
	char line[MAX_REPLY_LINE + 1];
	size_t len;
	r->code = 0;
	r->lines.len = 0;
	r->msg.len = 0;
	for (int n = 0;; n++) {
		if (n == MAX_REPLY_LINES) {
			snprintf(s->err, sizeof(s->err), "too many reply lines from %s while %s",
			         s->peer, stage);
			return -1;
		}
		if (read_line(s, line, &len, stage) < 0)
			return -1;
		if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
		    !isdigit((unsigned char)line[2]) || (len > 3 && line[3] != ' ' && line[3] != '-')) {
			char safe[128];
			str_sanitize(safe, sizeof(safe), line, len);
			snprintf(s->err, sizeof(s->err), "malformed reply from %s while %s: %s",
			         s->peer, stage, safe);
			s->broken = true;
			return -1;
		}
		const char *text = len > 4 ? line + 4 : "";
		if (n == 0) {
			r->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
			buf_printf(&r->msg, "%d", r->code);
		}
		if (*text)
			buf_printf(&r->msg, " %s", text);
		buf_printf(&r->lines, "%s\n", text);
		if (len == 3 || line[3] == ' ')
			break;
	}
	if (r->code == 421)
		s->broken = true;   /* the server is closing the session */
	return 0;
}

/* Sends what is buffered plus fmt, then reads the reply. */
static int command(struct relay__smtp *s, struct reply *r, const char *stage,
                   const char *fmt, ...) PRINTF_LIKE(4, 5);
static int command(struct relay__smtp *s, struct reply *r, const char *stage,
                   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&s->out, fmt, ap);
	va_end(ap);
	if (io_flush(s, stage) < 0)
		return -1;
	return read_reply(s, r, stage);
}

/* ---- session ------------------------------------------------------------ */

static void session_drop(struct relay__smtp *s)
{
	if (s->ssl) {
		/* TLS 1.3 tickets arrive after the handshake: take it at the end */
		SSL_SESSION *sess = SSL_is_init_finished(s->ssl) ? SSL_get1_session(s->ssl) : NULL;
		if (sess && SSL_SESSION_is_resumable(sess)) {
			SSL_SESSION_free(s->resume);
			s->resume = sess;
		} else if (sess) {
			SSL_SESSION_free(sess);
		}
		SSL_free(s->ssl);
	}
	if (s->fd >= 0)
		close(s->fd);
	s->ssl = NULL;
	s->fd = -1;
	s->in.len = 0;
	s->out.len = 0;
	s->broken = false;
	buf_shrink(&s->in);
	buf_shrink(&s->out);
}

static bool is_ip_literal(const char *host)
{
	unsigned char addr[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

static int tls_start(struct relay__smtp *s)
{
	const struct relay__ctx *ctx = s->ctx;
	const char *host = ctx->ds.host;
	s->ssl = SSL_new(ctx->ssl);
	if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1) {
		tls_error(s, "setup");
		return -1;
	}
	if (host && !is_ip_literal(host))
		SSL_set_tlsext_host_name(s->ssl, host);
	if (s->resume)
		SSL_set_session(s->ssl, s->resume);
	if (ctx->conf.tls_verify) {
		SSL_set_verify(s->ssl, SSL_VERIFY_PEER, NULL);
		if (host && is_ip_literal(host))
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), host);
		else if (host)
			SSL_set1_host(s->ssl, host);
	}
	ERR_clear_error();
	int r = SSL_connect(s->ssl);
	long v = SSL_get_verify_result(s->ssl);
	if (r == 1 && ctx->conf.tls_verify && v != X509_V_OK)
		r = 0;
	if (r != 1) {
		if (ctx->conf.tls_verify && v != X509_V_OK) {
			snprintf(s->err, sizeof(s->err), "TLS handshake with %s: certificate: %s",
			         s->peer, X509_verify_cert_error_string(v));
			ERR_clear_error();
		} else if (SSL_get_error(s->ssl, r) == SSL_ERROR_SSL) {
			tls_error(s, "handshake");
		} else {
			io_fail(s, r, errno, "in the TLS handshake");
		}
		return -1;
	}
	log_debug("event=relay_tls peer=%s version=%s cipher=%s resumed=%s", s->peer,
	          SSL_get_version(s->ssl), SSL_get_cipher_name(s->ssl),
	          SSL_session_reused(s->ssl) ? "yes" : "no");
	return 0;
}

static void parse_ehlo(struct relay__smtp *s, const struct reply *r)
{
	s->pipelining = s->eightbit = s->smtputf8 = s->dsn = s->starttls = s->size = false;
	const char *p = strchr(r->lines.data, '\n');  /* the first line is the greeting */
	while (p && *++p) {
		size_t n = strcspn(p, " \n");
		if (n == 10 && strncasecmp(p, "PIPELINING", n) == 0)
			s->pipelining = true;
		else if (n == 8 && strncasecmp(p, "8BITMIME", n) == 0)
			s->eightbit = true;
		else if (n == 8 && strncasecmp(p, "SMTPUTF8", n) == 0)
			s->smtputf8 = true;
		else if (n == 3 && strncasecmp(p, "DSN", n) == 0)
			s->dsn = true;
		else if (n == 8 && strncasecmp(p, "STARTTLS", n) == 0)
			s->starttls = true;
		else if (n == 4 && strncasecmp(p, "SIZE", n) == 0)
			s->size = true;
		p = strchr(p, '\n');
	}
}

static int hello(struct relay__smtp *s, struct reply *r)
{
	bool lmtp = s->ctx->ds.proto == RELAY__LMTP;
	const char *verb = lmtp ? "LHLO" : "EHLO";
	if (command(s, r, "sending EHLO", "%s %s\r\n", verb, s->ctx->hostname) < 0)
		return -1;
	if (r->code / 100 == 2) {
		parse_ehlo(s, r);
		return 0;
	}
	if (!lmtp && r->code / 100 == 5) {
		/* a plain SMTP server: no extensions */
		if (command(s, r, "sending HELO", "HELO %s\r\n", s->ctx->hostname) < 0)
			return -1;
		if (r->code / 100 == 2) {
			parse_ehlo(s, r);
			return 0;
		}
	}
	snprintf(s->err, sizeof(s->err), "%s refused %s: %s", s->peer, verb, r->msg.data);
	return -1;
}

static int session_open(struct relay__smtp *s)
{
	const struct relay__ctx *ctx = s->ctx;
	struct reply r;
	reply_init(&r);
	int rc = -1;
	if (sock_connect(s) < 0)
		goto out;
	if (ctx->conf.tls == RELAY_TLS_IMPLICIT && tls_start(s) < 0)
		goto out;
	if (read_reply(s, &r, "reading the greeting") < 0)
		goto out;
	if (r.code != 220) {
		snprintf(s->err, sizeof(s->err), "%s refused to talk to us: %s", s->peer, r.msg.data);
		goto out;
	}
	if (hello(s, &r) < 0)
		goto out;
	if (ctx->conf.tls == RELAY_TLS_STARTTLS) {
		if (!s->starttls) {
			snprintf(s->err, sizeof(s->err), "TLS is required but %s does not offer STARTTLS",
			         s->peer);
			goto out;
		}
		if (command(s, &r, "sending STARTTLS", "STARTTLS\r\n") < 0)
			goto out;
		if (r.code != 220) {
			snprintf(s->err, sizeof(s->err), "%s refused STARTTLS: %s", s->peer, r.msg.data);
			goto out;
		}
		if (s->in.len > 0) {
			/* plaintext sent after the 220 would be taken as TLS-protected */
			snprintf(s->err, sizeof(s->err), "%s sent data after the STARTTLS reply", s->peer);
			goto out;
		}
		if (tls_start(s) < 0 || hello(s, &r) < 0)
			goto out;
	}
	rc = 0;
out:
	reply_free(&r);
	if (rc < 0)
		session_drop(s);
	return rc;
}

/* ---- transaction ------------------------------------------------------- */

static enum relay__result classify(int code)
{
	return code / 100 == 2 ? RELAY__SENT : code / 100 == 5 ? RELAY__PERM : RELAY__TEMP;
}

/* Streams the body from the queue file with dot-stuffing and the final dot;
 * the body is made to end in CRLF. */
static int send_body(struct relay__smtp *s, const struct relay__attempt *a)
{
	char *in = xmalloc(CHUNK);
	off_t off = a->env->body_offset;
	bool bol = true;
	char last[2] = { '\r', '\n' };  /* an empty body needs no CRLF */
	int rc = 0;
	for (;;) {
		ssize_t n = pread(a->fd, in, CHUNK, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			/* cannot finish the message: leaving without the dot aborts it */
			snprintf(s->err, sizeof(s->err), "reading queue file: %s", strerror(errno));
			s->broken = true;
			rc = -1;
			break;
		}
		if (n == 0)
			break;
		off += n;
		size_t start = 0;
		for (size_t i = 0; i < (size_t)n; i++) {
			if (bol && in[i] == '.') {
				buf_append(&s->out, in + start, i - start);
				buf_append(&s->out, ".", 1);
				start = i;
			}
			bol = in[i] == '\n';
		}
		buf_append(&s->out, in + start, (size_t)n - start);
		last[0] = n >= 2 ? in[n - 2] : last[1];
		last[1] = in[n - 1];
		if (s->out.len >= CHUNK && (rc = io_flush(s, "sending the message")) < 0)
			break;
	}
	free(in);
	if (rc < 0)
		return rc;
	if (last[0] != '\r' || last[1] != '\n')
		buf_append(&s->out, "\r\n", 2);
	buf_append(&s->out, ".\r\n", 3);
	return io_flush(s, "sending the end of the message");
}

static void mail_params(const struct relay__smtp *s, const struct relay__attempt *a,
                        struct buf *p)
{
	const struct relay_envelope *env = a->env;
	if (s->size)
		buf_printf(p, " SIZE=%llu", (unsigned long long)a->body_size);
	if (env->eightbit && s->eightbit)
		buf_puts(p, " BODY=8BITMIME");
	if (env->smtputf8 && s->smtputf8)
		buf_puts(p, " SMTPUTF8");
	if (s->dsn && env->ret)
		buf_printf(p, " RET=%s", env->ret);
	if (s->dsn && env->envid)
		buf_printf(p, " ENVID=%s", env->envid);
}

/* One MAIL..DATA transaction for the PENDING recipients. Returns 0 when
 * the session is still in step (results set), -1 when it broke (s->err;
 * recipients without a result stay PENDING). */
/* What transaction() returns when the RSET in front of it found a cached
 * session dead: nothing of the message was accepted, try a new session. */
#define STALE_SESSION (-2)

/* One message. With `rset`, an RSET goes in front in the same pipelined
 * write (a cached session: it tells whether the server still listens,
 * without a round trip of its own). Returns 0 with every recipient's
 * result set, STALE_SESSION, or -1 when the session failed on the way. */
static int transaction(struct relay__smtp *s, struct relay__attempt *a, bool rset)
{
	const struct relay_envelope *env = a->env;
	bool lmtp = s->ctx->ds.proto == RELAY__LMTP, pl = s->pipelining;
	size_t *idx = xmalloc(env->nrcpts * sizeof(*idx));
	bool *acc = xcalloc(env->nrcpts, sizeof(*acc));
	size_t k = 0, naccepted = 0;
	struct reply r, mail;
	struct buf params;
	int rc = -1;
	reply_init(&r);
	reply_init(&mail);
	buf_init(&params);
	for (size_t i = 0; i < env->nrcpts; i++)
		if (a->result[i] == RELAY__PENDING)
			idx[k++] = i;

	mail_params(s, a, &params);
	if (rset)
		buf_puts(&s->out, "RSET\r\n");
	buf_printf(&s->out, "MAIL FROM:<%s>%s\r\n", env->from, params.data ? params.data : "");
	if (!pl) {
		if (io_flush(s, "sending MAIL FROM") < 0 || read_reply(s, &mail, "sending MAIL FROM") < 0)
			goto out;
		if (mail.code / 100 != 2) {
			relay__attempt_set_pending(a, classify(mail.code), mail.msg.data);
			rc = 0;
			goto out;
		}
	}
	for (size_t j = 0; j < k; j++) {
		buf_printf(&s->out, "RCPT TO:<%s>\r\n", env->rcpts[idx[j]]);
		if (pl)
			continue;
		if (io_flush(s, "sending RCPT TO") < 0 || read_reply(s, &r, "sending RCPT TO") < 0)
			goto out;
		if (r.code / 100 == 2)
			acc[j] = true, naccepted++;
		else
			relay__attempt_set(a, idx[j], classify(r.code), r.msg.data);
	}
	if (pl) {
		buf_puts(&s->out, "DATA\r\n");
		if (rset && (io_flush(s, "sending RSET") < 0 || read_reply(s, &r, "sending RSET") < 0 ||
		             r.code / 100 != 2)) {
			rc = STALE_SESSION;
			goto out;
		}
		if (io_flush(s, "sending MAIL FROM") < 0 ||
		    read_reply(s, &mail, "sending MAIL FROM") < 0)
			goto out;
		for (size_t j = 0; j < k; j++) {
			if (read_reply(s, &r, "sending RCPT TO") < 0)
				goto out;
			if (mail.code / 100 != 2)
				relay__attempt_set(a, idx[j], classify(mail.code), mail.msg.data);
			else if (r.code / 100 == 2)
				acc[j] = true, naccepted++;
			else
				relay__attempt_set(a, idx[j], classify(r.code), r.msg.data);
		}
		if (read_reply(s, &r, "sending DATA") < 0)
			goto out;
		if (r.code == 354 && naccepted == 0) {
			/* RFC 2920: DATA was accepted with no recipient; end it empty */
			if (command(s, &r, "sending an empty message", ".\r\n") < 0)
				goto out;
			rc = 0;
			goto out;
		}
	} else {
		if (naccepted == 0) {
			rc = 0;
			goto out;
		}
		if (command(s, &r, "sending DATA", "DATA\r\n") < 0)
			goto out;
	}
	if (naccepted == 0) {
		rc = 0;
		goto out;
	}
	if (r.code != 354) {
		for (size_t j = 0; j < k; j++)
			if (acc[j])
				relay__attempt_set(a, idx[j], r.code / 100 == 5 ? RELAY__PERM : RELAY__TEMP,
				                   r.msg.data);
		rc = 0;
		goto out;
	}
	if (send_body(s, a) < 0)
		goto out;
	/* SMTP: one reply for the message; LMTP: one per accepted recipient */
	if (!lmtp && read_reply(s, &r, "waiting for the end of data reply") < 0)
		goto out;
	for (size_t j = 0; j < k; j++) {
		if (!acc[j])
			continue;
		if (lmtp && read_reply(s, &r, "waiting for the end of data reply") < 0)
			goto out;
		relay__attempt_set(a, idx[j], classify(r.code), r.msg.data);
	}
	rc = 0;
out:
	free(idx);
	free(acc);
	reply_free(&r);
	reply_free(&mail);
	buf_free(&params);
	return rc;
}

/* ---- public ------------------------------------------------------------ */

struct relay__smtp *relay__smtp_new(const struct relay__ctx *ctx)
{
	struct relay__smtp *s = xcalloc(1, sizeof(*s));
	s->ctx = ctx;
	s->fd = -1;
	buf_init(&s->in);
	buf_init(&s->out);
	if (ctx->ds.path)
		str_lcpy(s->peer, ctx->ds.path, sizeof(s->peer));
	else if (ctx->ds.host && strchr(ctx->ds.host, ':'))
		snprintf(s->peer, sizeof(s->peer), "[%s]:%s", ctx->ds.host, ctx->ds.port);
	else
		snprintf(s->peer, sizeof(s->peer), "%s:%s", ctx->ds.host ? ctx->ds.host : "?",
		         ctx->ds.port ? ctx->ds.port : "?");
	return s;
}

double relay__smtp_idle_left(const struct relay__smtp *s)
{
	if (s->fd < 0)
		return -1;
	double left = CACHE_IDLE - (mono_now() - s->idle_since);
	return left > 0 ? left : 0;
}

void relay__smtp_close(struct relay__smtp *s)
{
	if (!s || s->fd < 0)
		return;
	if (!s->broken) {
		struct reply r;
		reply_init(&r);
		set_timeout(s->fd, QUIT_TIMEOUT);
		if (command(s, &r, "sending QUIT", "QUIT\r\n") == 0 && s->ssl)
			SSL_shutdown(s->ssl);
		reply_free(&r);
	}
	ERR_clear_error();
	session_drop(s);
}

void relay__smtp_free(struct relay__smtp *s)
{
	if (!s)
		return;
	relay__smtp_close(s);
	SSL_SESSION_free(s->resume);
	buf_free(&s->in);
	buf_free(&s->out);
	free(s);
}

static bool any_pending(const struct relay__attempt *a)
{
	for (size_t i = 0; i < a->env->nrcpts; i++)
		if (a->result[i] == RELAY__PENDING)
			return true;
	return false;
}

/* A cached session may have been closed by the server meanwhile: RSET
 * tells. With PIPELINING it travels in front of the next transaction
 * (no round trip of its own); without, it is a command of its own. A
 * failure there costs nothing but a reconnect. */
static bool session_reusable(struct relay__smtp *s, bool *rset)
{
	*rset = false;
	if (s->fd < 0)
		return false;
	if (relay__smtp_idle_left(s) <= 0) {
		relay__smtp_close(s);
		return false;
	}
	if (s->pipelining) {
		*rset = true;
		return true;
	}
	struct reply r;
	reply_init(&r);
	bool ok = command(s, &r, "sending RSET", "RSET\r\n") == 0 && r.code / 100 == 2;
	reply_free(&r);
	if (!ok)
		session_drop(s);
	return ok;
}

void relay__smtp_deliver(struct relay__smtp *s, struct relay__attempt *a)
{
	if (!any_pending(a))
		return;
	bool rset;
	if (!session_reusable(s, &rset) && session_open(s) < 0) {
		relay__attempt_set_pending(a, RELAY__TEMP, s->err);
		return;
	}
	int rc = transaction(s, a, rset);
	if (rc == STALE_SESSION) {
		session_drop(s);
		if (session_open(s) < 0) {
			relay__attempt_set_pending(a, RELAY__TEMP, s->err);
			return;
		}
		rc = transaction(s, a, false);
	}
	if (rc < 0) {
		relay__attempt_set_pending(a, RELAY__TEMP, s->err);
		session_drop(s);
		return;
	}
	/* cannot happen with the paths above; never leave a recipient unsettled */
	if (any_pending(a))
		relay__attempt_set_pending(a, RELAY__TEMP, "internal error: recipient without a result");
	if (s->broken)
		session_drop(s);
	else
		s->idle_since = mono_now();
}
