/*
 * conn.c - the I/O side of a session: accepting, reading, the TLS engine
 * between the socket and the SMTP code, coalesced writes, timers, close.
 *
 * Replies accumulate in s->out and leave in one write per flush (one per
 * batch of pipelined commands), with TCP_NODELAY: a greeting or a reply
 * never waits for a delayed ACK. Ownership: the session is freed in the
 * close callback of the last of its two handles.
 */
#include "server/session.h"
#include "server/reply.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A client that sends without reading its replies is paused above
 * WRITE_QUEUE_HIGH bytes of unsent replies, until they drain below LOW. */
#define WRITE_QUEUE_HIGH (256 * 1024)
#define WRITE_QUEUE_LOW (64 * 1024)
/* How long a closing connection may take to take its last reply. */
#define CLOSE_TIMEOUT 30

struct conn_write {
	uv_write_t req;
	uint64_t sid;
	struct worker *w;
	char data[];
};

/* Refused smtps connections whose handshake we complete to answer 421:
 * each costs a handshake and a descriptor, so there are at most this many
 * per loop at once (the rest are closed without a word), and they get a
 * short handshake timeout. */
#define REFUSAL_HANDSHAKE_TIMEOUT 5
#define REFUSAL_DROP_LOG_MS 10000

static void conn_free(struct session *s)
{
	if (s->refusal_code)
		s->w->refusing--;
	free(s->refusal_text);
	session_free_state(s);
	smtp_reader_free(&s->reader);
	buf_free(&s->out);
	if (s->tls)
		tls_free(s->tls);
	if (s->counted)
		policy_note_disconnect(s->w->d->pstate, s->client_ip);
	free(s);
}

static void conn_closed(uv_handle_t *h)
{
	struct session *s = h->data;
	if (--s->handles_open == 0)
		conn_free(s);
}

static void conn_close_now(struct session *s)
{
	if (uv_is_closing((uv_handle_t *)&s->tcp))
		return;
	s->state = SS_CLOSING;
	worker_remove_session(s->w, s);
	log_info("event=disconnect sid=%s client=%s", s->sid, s->client_ip);
	uv_close((uv_handle_t *)&s->tcp, conn_closed);
	uv_close((uv_handle_t *)&s->timer, conn_closed);
}

static void conn_write_done(uv_write_t *req, int status)
{
	struct conn_write *cw = (struct conn_write *)req;
	struct session *s = worker_find_session(cw->w, cw->sid);
	free(cw);
	if (!s)
		return;
	if (status < 0) {
		log_info("event=write_error sid=%s error=\"%s\"", s->sid, uv_strerror(status));
		conn_close_now(s);
		return;
	}
	size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp);
	if (s->close_after_flush && queued == 0 && s->out.len == 0) {
		conn_close_now(s);
		return;
	}
	if (s->write_blocked && queued < WRITE_QUEUE_LOW) {
		s->write_blocked = false;
		session_resume(s);
		session_process(s);
		session_flush(s);
	}
}

/* Sends what the socket takes at once with uv_try_write (which also keeps
 * the order: it refuses while anything is queued) and queues only the
 * rest. A completed uv_write costs a request, a deferred callback and, on
 * Linux, an epoll_ctl to re-arm the watcher (4 of a one-message
 * connection's 10) that a reply the socket takes at once does not need. */
static void conn_write(struct session *s, const char *data, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int n = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
	if (n < 0 && n != UV_EAGAIN) {
		log_info("event=write_error sid=%s error=\"%s\"", s->sid, uv_strerror(n));
		conn_close_now(s);
		return;
	}
	if (n > 0) {
		data += n;
		len -= (size_t)n;
	}
	if (len == 0)
		return;
	struct conn_write *cw = xmalloc(sizeof(*cw) + len);
	cw->sid = s->id;
	cw->w = s->w;
	memcpy(cw->data, data, len);
	b = uv_buf_init(cw->data, (unsigned)len);
	int rc = uv_write(&cw->req, (uv_stream_t *)&s->tcp, &b, 1, conn_write_done);
	if (rc < 0) {
		free(cw);
		log_info("event=write_error sid=%s error=\"%s\"", s->sid, uv_strerror(rc));
		conn_close_now(s);
	}
}

void session_flush(struct session *s)
{
	if (uv_is_closing((uv_handle_t *)&s->tcp))
		return;
	if (s->tls) {
		if (s->out.len && s->tls_ready) {
			if (tls_write(s->tls, s->out.data, s->out.len) != TLS_OK) {
				log_info("event=tls_error sid=%s error=%s", s->sid, log_q(tls_error(s->tls)));
				conn_close_now(s);
				return;
			}
			buf_consume(&s->out, s->out.len);
		}
		while (tls_pending_output(s->tls) > 0) {
			size_t got = tls_take_output(s->tls, s->w->writebuf, sizeof(s->w->writebuf));
			conn_write(s, s->w->writebuf, got);
			if (uv_is_closing((uv_handle_t *)&s->tcp))
				return;
		}
	} else if (s->out.len) {
		conn_write(s, s->out.data, s->out.len);
		if (uv_is_closing((uv_handle_t *)&s->tcp))
			return;
		buf_consume(&s->out, s->out.len);
	}
	buf_shrink(&s->out);
	size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp);
	if (s->close_after_flush && queued == 0 && s->out.len == 0) {
		conn_close_now(s);
		return;
	}
	if (queued > WRITE_QUEUE_HIGH && !s->write_blocked) {
		s->write_blocked = true;
		session_pause(s);
	}
}

void session_send(struct session *s, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_vappend(&s->out, code, enh, fmt, ap);
	va_end(ap);
}

void session_close(struct session *s, bool after_flush)
{
	if (!after_flush) {
		conn_close_now(s);
		return;
	}
	session_pause(s);
	if (s->tls && s->tls_ready) {
		/* The last reply must be encrypted before the close_notify. */
		session_flush(s);
		if (uv_is_closing((uv_handle_t *)&s->tcp))
			return;
		tls_shutdown(s->tls);
	}
	s->close_after_flush = true;
	/* A peer that never reads must not keep us forever. */
	session_set_timeout(s, CLOSE_TIMEOUT);
	session_flush(s);
}

static void conn_timer_cb(uv_timer_t *t)
{
	session_timeout(t->data);
}

void session_set_timeout_ms(struct session *s, uint64_t ms)
{
	if (!uv_is_closing((uv_handle_t *)&s->timer))
		uv_timer_start(&s->timer, conn_timer_cb, ms, 0);
}

void session_set_timeout(struct session *s, unsigned seconds)
{
	session_set_timeout_ms(s, (uint64_t)seconds * 1000);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct session *s = h->data;
	/* Every read is consumed before the callback returns, so one buffer
	 * per loop serves all connections: idle connections hold none. */
	*b = uv_buf_init(s->w->readbuf, sizeof(s->w->readbuf));
}

static void conn_log_tls(struct session *s)
{
	log_info("event=tls sid=%s version=%s cipher=%s bits=%d sni=%s reused=%s cert_fp=%s "
	         "cert_subject=%s cert_issuer=%s cert_verified=%s",
	         s->sid, tls_version(s->tls), tls_cipher(s->tls), tls_cipher_bits(s->tls),
	         log_q(tls_sni(s->tls)), tls_session_reused(s->tls) ? "yes" : "no",
	         tls_peer_fingerprint(s->tls) ? tls_peer_fingerprint(s->tls) : "-",
	         log_q(tls_peer_subject(s->tls)), log_q(tls_peer_issuer(s->tls)),
	         tls_peer_verified(s->tls) ? "yes" : "no");
}

/* Ciphertext arrived: drive the handshake, then hand plaintext on. */
static void conn_tls_input(struct session *s, const char *data, size_t len)
{
	if (tls_feed(s->tls, data, len) != TLS_OK)
		goto fail;
	if (!s->tls_ready) {
		int rc = tls_handshake(s->tls);
		if (rc == TLS_WANT_IO) {
			session_flush(s);
			return;
		}
		if (rc != TLS_OK)
			goto fail;
		s->tls_ready = true;
		conn_log_tls(s);
		session_tls_ready(s);
	}
	for (;;) {
		size_t got = 0;
		int rc = tls_read(s->tls, s->w->readbuf, sizeof(s->w->readbuf), &got);
		if (rc == TLS_OK) {
			session_input(s, s->w->readbuf, got);
			/* The reader has its copy; the plaintext may be a password. */
			explicit_bzero(s->w->readbuf, got);
			if (s->state == SS_CLOSING || uv_is_closing((uv_handle_t *)&s->tcp))
				return;
			continue;
		}
		if (rc == TLS_WANT_IO)
			return;
		if (rc == TLS_CLOSED) {
			session_close(s, true);
			return;
		}
		goto fail;
	}
fail:
	log_info("event=tls_error sid=%s client=%s error=%s", s->sid, s->client_ip,
	         log_q(tls_error(s->tls)));
	session_flush(s); /* a TLS alert, if any */
	session_close(s, true);
}

static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
	struct session *s = stream->data;
	if (nread < 0) {
		if (nread != UV_EOF)
			log_info("event=read_error sid=%s error=\"%s\"", s->sid, uv_strerror((int)nread));
		conn_close_now(s);
		return;
	}
	if (nread == 0 || s->state == SS_CLOSING)
		return;
	if (s->tls) {
		conn_tls_input(s, b->base, (size_t)nread);
	} else {
		session_input(s, b->base, (size_t)nread);
		explicit_bzero(b->base, (size_t)nread);
	}
	/* Replies to MAIL and RCPT pipelined with DATA or BDAT wait for the
	 * 354 (or the error) that ends SS_SPOOL_WAIT a moment later, so that
	 * the group goes out in one TLS record and one write (RFC 2920 lets
	 * a server send a group's replies together). */
	if (!uv_is_closing((uv_handle_t *)&s->tcp) && s->state != SS_SPOOL_WAIT)
		session_flush(s);
}

void session_pause(struct session *s)
{
	if (s->reading && !uv_is_closing((uv_handle_t *)&s->tcp))
		uv_read_stop((uv_stream_t *)&s->tcp);
	s->reading = false;
}

void session_resume(struct session *s)
{
	if (s->reading || s->close_after_flush || s->write_blocked ||
	    uv_is_closing((uv_handle_t *)&s->tcp))
		return;
	/* Waiting for our own work (a SASL step, the queue file, the commit):
	 * its completion resumes. Reading meanwhile, say because the client's
	 * backlog of replies drained, would buffer whatever it pipelines. */
	if (s->state == SS_AUTH_WAIT || s->state == SS_SPOOL_WAIT || s->state == SS_COMMIT_WAIT)
		return;
	if (uv_read_start((uv_stream_t *)&s->tcp, conn_alloc, conn_read) == 0)
		s->reading = true;
}

int session_start_tls(struct session *s)
{
	s->tls = tls_new(s->l->ssl_ctx, TLS_SERVER);
	if (!s->tls)
		return -1;
	s->tls_ready = false;
	s->state = SS_HANDSHAKE;
	session_set_timeout(s, s->w->d->conf->tls_handshake_timeout);
	return 0;
}

static void conn_addr(const struct sockaddr_storage *ss, char *ip, size_t iplen, unsigned *port)
{
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		uv_ip6_name(a, ip, iplen);
		*port = ntohs(a->sin6_port);
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		uv_ip4_name(a, ip, iplen);
		*port = ntohs(a->sin_port);
	}
}

/* No TLS yet on smtps: the 421 is sent once the handshake is done (see
 * session_tls_ready), within a short timeout, or the connection is closed
 * at once when too many refusals wait already. */
static void conn_refuse_after_handshake(struct session *s, const struct policy_verdict *v)
{
	struct worker *w = s->w;
	if (w->refusing >= LISTENER_REFUSALS_MAX) {
		w->refusals_dropped++;
		uint64_t now = uv_now(&w->loop);
		if (now - w->refusals_drop_logged >= REFUSAL_DROP_LOG_MS) {
			log_warn("event=reject_dropped client=%s dropped=%llu note=\"too many refused smtps"
			         " handshakes at once: closed without a reply\"", s->client_ip,
			         (unsigned long long)w->refusals_dropped);
			w->refusals_drop_logged = now;
		}
		conn_close_now(s);
		return;
	}
	s->refusal_code = v->code;
	s->refusal_enh = v->enh;
	s->refusal_text = str_dup(v->text);
	w->refusing++;
	session_resume(s);
	if (session_start_tls(s) < 0) {
		conn_close_now(s);
		return;
	}
	unsigned t = w->d->conf->tls_handshake_timeout;
	session_set_timeout(s, t < REFUSAL_HANDSHAKE_TIMEOUT ? t : REFUSAL_HANDSHAKE_TIMEOUT);
}

void session_accept(struct worker *w, struct listener *l, int fd)
{
	struct session *s = xcalloc(1, sizeof(*s));
	s->w = w;
	s->l = l;
	s->id = id_session();
	s->started_ms = uv_now(&w->loop);
	snprintf(s->sid, sizeof(s->sid), "%llx", (unsigned long long)s->id);
	uv_tcp_init(&w->loop, &s->tcp);
	uv_timer_init(&w->loop, &s->timer);
	s->tcp.data = s;
	s->timer.data = s;
	s->handles_open = 2;
	smtp_reader_init(&s->reader, w->d->conf->max_command_line);
	worker_add_session(w, s);
	int rc = uv_tcp_open(&s->tcp, fd);
	if (rc < 0) {
		log_warn("event=accept_error error=\"%s\"", uv_strerror(rc));
		close(fd);
		conn_close_now(s);
		return;
	}
	uv_tcp_nodelay(&s->tcp, 1);

	struct sockaddr_storage ss;
	int len = sizeof(ss);
	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0)
		conn_addr(&ss, s->client_ip, sizeof(s->client_ip), &s->client_port);
	len = sizeof(ss);
	if (uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len) == 0)
		conn_addr(&ss, s->local_ip, sizeof(s->local_ip), &s->local_port);
	log_info("event=connect sid=%s listener=%s client=%s port=%u", s->sid, l->conf->name,
	         s->client_ip, s->client_port);

	struct policy_verdict v;
	policy_check_connect(session_policy(s), w->d->pstate, s->client_ip, session_now(), &v);
	s->counted = v.code == 0;
	if (w->stopping && v.code == 0) {
		v.code = 421, v.enh = "4.3.2", v.text = "Service shutting down", v.rule = "stopping";
	}
	if (v.code) {
		log_info("event=reject sid=%s client=%s code=%d rule=%s", s->sid, s->client_ip, v.code,
		         v.rule);
		session_trace_reject(s, "CONNECT", v.rule, v.code, v.enh, v.text, NULL);
		if (l->conf->mode == CONF_MODE_SMTPS) {
			conn_refuse_after_handshake(s, &v);
			return;
		}
		s->state = SS_CLOSING;
		session_send(s, v.code, v.enh, "%s %s", w->d->conf->hostname, v.text);
		session_close(s, true);
		return;
	}
	session_resume(s);
	session_dns_start(s);
	if (l->conf->mode == CONF_MODE_SMTPS) {
		if (session_start_tls(s) < 0) {
			conn_close_now(s);
			return;
		}
	} else {
		session_greet(s);
		session_flush(s);
	}
}
