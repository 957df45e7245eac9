/*
 * conn.c - one client connection: the socket, reads, the TLS engine
 * between the socket and the SMTP engine, coalesced writes, the timer,
 * the close. The SMTP engine sees it through struct smtp_io.
 *
 * Replies accumulate in c->out and leave in one write per flush (one per
 * batch of pipelined commands), with TCP_NODELAY: a greeting or a reply
 * never waits for a delayed ACK. Writes try the socket first (uv_try_write)
 * and queue only what it does not take.
 *
 * Ownership: a connection is freed in the close callback of the last of
 * its two handles; its session and its pin go first.
 */
#include "conn/conn_int.h"

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
#define CLOSE_TIMEOUT_MS 30000
#define REFUSAL_DROP_LOG_MS 10000

struct conn_write {
	uv_write_t req;
	uint64_t id;
	struct conn_loop *cl;
	char data[];
};

static const struct smtp_io conn_io;

static bool closing(const struct conn *c)
{
	return c->closed || uv_is_closing((const uv_handle_t *)&c->tcp);
}

static void conn_free(struct conn *c)
{
	smtp_session_free(c->s);
	if (c->refusal)
		c->cl->refusing--;
	if (c->pin)
		c->lops.release(c->lops.ctx, c->pin);
	buf_free(&c->out);
	if (c->tls)
		tls_free(c->tls);
	free(c);
}

static void conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	if (--c->handles_open == 0)
		conn_free(c);
}

void conn__close_now(struct conn *c)
{
	if (closing(c))
		return;
	c->closed = true;
	conn__remove(c->cl, c);
	log_info("event=disconnect sid=%llx client=%s", (unsigned long long)c->id, c->client_ip);
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
	uv_close((uv_handle_t *)&c->timer, conn_closed);
}

/* ---- reading ------------------------------------------------------------------------ */

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct conn *c = h->data;
	/* Every read is consumed before the callback returns, so one buffer
	 * per loop serves all connections: idle connections hold none. */
	*b = uv_buf_init(c->cl->readbuf, sizeof(c->cl->readbuf));
}

static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b);

/* Reading follows what the engine asked for, unless the client does not
 * take its replies (write_blocked) or the connection is closing. */
static void conn_update_reading(struct conn *c)
{
	bool want = c->want_read && !c->write_blocked && !c->close_after_flush && !closing(c);
	if (want == c->reading)
		return;
	if (want) {
		if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) == 0)
			c->reading = true;
	} else {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
}

/* ---- writing ------------------------------------------------------------------------ */

static void conn_write_done(uv_write_t *req, int status)
{
	struct conn_write *cw = (struct conn_write *)req;
	struct conn *c = conn__find(cw->cl, cw->id);
	free(cw);
	if (!c || closing(c))
		return;
	if (status < 0) {
		log_info("event=write_error sid=%llx error=\"%s\"", (unsigned long long)c->id,
		         uv_strerror(status));
		conn__close_now(c);
		return;
	}
	size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
	if (c->close_after_flush && queued == 0 && c->out.len == 0) {
		conn__close_now(c);
		return;
	}
	if (c->write_blocked && queued < WRITE_QUEUE_LOW) {
		c->write_blocked = false;
		conn_update_reading(c);
		smtp_session_process(c->s);
		if (!closing(c))
			conn__flush(c);
	}
}

/* Sends what the socket takes at once with uv_try_write (which also keeps
 * the order: it refuses while anything is queued) and queues only the
 * rest: a reply the socket takes at once costs no request, no deferred
 * callback and no re-armed watcher. */
static void conn_write(struct conn *c, const char *data, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (n < 0 && n != UV_EAGAIN) {
		log_info("event=write_error sid=%llx error=\"%s\"", (unsigned long long)c->id,
		         uv_strerror(n));
		conn__close_now(c);
		return;
	}
	if (n > 0) {
		data += n;
		len -= (size_t)n;
	}
	if (len == 0)
		return;
	struct conn_write *cw = xmalloc(sizeof(*cw) + len);
	cw->id = c->id;
	cw->cl = c->cl;
	memcpy(cw->data, data, len);
	b = uv_buf_init(cw->data, (unsigned)len);
	int rc = uv_write(&cw->req, (uv_stream_t *)&c->tcp, &b, 1, conn_write_done);
	if (rc < 0) {
		free(cw);
		log_info("event=write_error sid=%llx error=\"%s\"", (unsigned long long)c->id,
		         uv_strerror(rc));
		conn__close_now(c);
	}
}

void conn__flush(struct conn *c)
{
	if (closing(c))
		return;
	if (c->tls) {
		if (c->out.len && c->tls_ready) {
			if (tls_write(c->tls, c->out.data, c->out.len) != TLS_OK) {
				log_info("event=tls_error sid=%llx error=%s", (unsigned long long)c->id,
				         log_q(tls_error(c->tls)));
				conn__close_now(c);
				return;
			}
			buf_consume(&c->out, c->out.len);
		}
		while (tls_pending_output(c->tls) > 0) {
			size_t got = tls_take_output(c->tls, c->cl->writebuf, sizeof(c->cl->writebuf));
			conn_write(c, c->cl->writebuf, got);
			if (closing(c))
				return;
		}
	} else if (c->out.len) {
		conn_write(c, c->out.data, c->out.len);
		if (closing(c))
			return;
		buf_consume(&c->out, c->out.len);
	}
	buf_shrink(&c->out);
	size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
	if (c->close_after_flush && queued == 0 && c->out.len == 0) {
		conn__close_now(c);
		return;
	}
	if (queued > WRITE_QUEUE_HIGH && !c->write_blocked) {
		c->write_blocked = true;
		conn_update_reading(c);
	}
}

/* ---- the engine's side: struct smtp_io ------------------------------------------------ */

static void io_send(void *p, const char *data, size_t n)
{
	struct conn *c = p;
	buf_append(&c->out, data, n);
}

static void io_flush(void *p)
{
	conn__flush(p);
}

static void conn_timer_cb(uv_timer_t *t)
{
	struct conn *c = t->data;
	smtp_session_timer(c->s);
	if (!closing(c) && !smtp_session_holds_replies(c->s))
		conn__flush(c);
}

static void io_set_timer(void *p, uint64_t ms)
{
	struct conn *c = p;
	if (!uv_is_closing((uv_handle_t *)&c->timer))
		uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

static void io_close(void *p, bool after_flush)
{
	struct conn *c = p;
	if (closing(c))
		return;
	if (!after_flush) {
		conn__close_now(c);
		return;
	}
	if (c->tls && c->tls_ready) {
		/* The last reply must be encrypted before the close_notify. */
		conn__flush(c);
		if (closing(c))
			return;
		tls_shutdown(c->tls);
	}
	c->close_after_flush = true;
	conn_update_reading(c);
	/* A peer that never reads must not keep us forever. */
	uv_timer_start(&c->timer, conn_timer_cb, CLOSE_TIMEOUT_MS, 0);
	conn__flush(c);
}

static int io_start_tls(void *p, bool refusal)
{
	struct conn *c = p;
	struct conn_loop *cl = c->cl;
	if (refusal) {
		if (cl->refusing >= CONN_REFUSALS_MAX) {
			/* Each costs a handshake and a descriptor while it waits. */
			cl->refusals_dropped++;
			uint64_t now = uv_now(cl->loop);
			if (now - cl->refusals_drop_logged >= REFUSAL_DROP_LOG_MS) {
				log_warn("event=reject_dropped client=%s dropped=%llu note=\"too many refused"
				         " smtps handshakes at once: closed without a reply\"", c->client_ip,
				         (unsigned long long)cl->refusals_dropped);
				cl->refusals_drop_logged = now;
			}
			return -1;
		}
		cl->refusing++;
		c->refusal = true;
	}
	c->tls = tls_new(c->ssl_ctx, TLS_SERVER);
	if (!c->tls)
		return -1;
	c->tls_ready = false;
	return 0;
}

static void io_pause(void *p)
{
	struct conn *c = p;
	c->want_read = false;
	conn_update_reading(c);
}

static void io_resume(void *p)
{
	struct conn *c = p;
	c->want_read = true;
	conn_update_reading(c);
}

static const struct smtp_config *io_refresh(void *p)
{
	struct conn *c = p;
	return c->lops.refresh ? c->lops.refresh(c->lops.ctx, &c->pin, &c->ssl_ctx) : NULL;
}

static uint64_t io_now_ms(void *p)
{
	struct conn *c = p;
	return uv_now(c->cl->loop);
}

static unsigned io_sessions(void *p)
{
	struct conn *c = p;
	return c->cl->nsessions;
}

static const struct smtp_io conn_io = {
	.send = io_send,
	.flush = io_flush,
	.close = io_close,
	.start_tls = io_start_tls,
	.pause = io_pause,
	.resume = io_resume,
	.set_timer = io_set_timer,
	.now_ms = io_now_ms,
	.sessions = io_sessions,
	.refresh = io_refresh,
};

/* ---- TLS ------------------------------------------------------------------------------ */

static void conn_tls_facts(struct conn *c)
{
	struct hook_tls *f = &c->facts;
	f->version = tls_version(c->tls);
	f->cipher = tls_cipher(c->tls);
	f->sni = tls_sni(c->tls);
	f->bits = tls_cipher_bits(c->tls);
	f->reused = tls_session_reused(c->tls);
	f->cert_fp = tls_peer_fingerprint(c->tls);
	f->cert_subject = tls_peer_subject(c->tls);
	f->cert_issuer = tls_peer_issuer(c->tls);
	f->cert_verified = tls_peer_verified(c->tls);
	log_info("event=tls sid=%llx version=%s cipher=%s bits=%d sni=%s reused=%s cert_fp=%s "
	         "cert_subject=%s cert_issuer=%s cert_verified=%s", (unsigned long long)c->id,
	         f->version, f->cipher, f->bits, log_q(f->sni), f->reused ? "yes" : "no",
	         f->cert_fp ? f->cert_fp : "-", log_q(f->cert_subject), log_q(f->cert_issuer),
	         f->cert_verified ? "yes" : "no");
}

/* Ciphertext arrived: drive the handshake, then hand plaintext on. */
static void conn_tls_input(struct conn *c, const char *data, size_t len)
{
	if (tls_feed(c->tls, data, len) != TLS_OK)
		goto fail;
	if (!c->tls_ready) {
		int rc = tls_handshake(c->tls);
		if (rc == TLS_WANT_IO) {
			conn__flush(c);
			return;
		}
		if (rc != TLS_OK)
			goto fail;
		c->tls_ready = true;
		conn_tls_facts(c);
		smtp_session_tls_ready(c->s, &c->facts);
		if (closing(c) || smtp_session_closing(c->s))
			return;
	}
	for (;;) {
		size_t got = 0;
		int rc = tls_read(c->tls, c->cl->readbuf, sizeof(c->cl->readbuf), &got);
		if (rc == TLS_OK) {
			smtp_session_input(c->s, c->cl->readbuf, got);
			/* The plaintext may be an AUTH line: not left in the buffer. */
			explicit_bzero(c->cl->readbuf, got);
			if (closing(c) || smtp_session_closing(c->s))
				return;
			continue;
		}
		if (rc == TLS_WANT_IO)
			return;
		if (rc == TLS_CLOSED) {
			io_close(c, true);
			return;
		}
		goto fail;
	}
fail:
	log_info("event=tls_error sid=%llx client=%s error=%s", (unsigned long long)c->id,
	         c->client_ip, log_q(tls_error(c->tls)));
	conn__flush(c); /* a TLS alert, if any */
	io_close(c, true);
}

static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
	struct conn *c = stream->data;
	if (nread < 0) {
		if (nread != UV_EOF)
			log_info("event=read_error sid=%llx error=\"%s\"", (unsigned long long)c->id,
			         uv_strerror((int)nread));
		conn__close_now(c);
		return;
	}
	if (nread == 0 || c->close_after_flush)
		return;
	if (c->tls) {
		conn_tls_input(c, b->base, (size_t)nread);
	} else {
		smtp_session_input(c->s, b->base, (size_t)nread);
		explicit_bzero(b->base, (size_t)nread);
	}
	if (!closing(c) && !smtp_session_holds_replies(c->s))
		conn__flush(c);
}

/* ---- accepting ---------------------------------------------------------------------------- */

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

void conn__accept(struct conn_loop *cl, struct conn_listener *l, int fd)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	c->cl = cl;
	c->lops = l->ops;
	c->id = id_session();
	uv_tcp_init(cl->loop, &c->tcp);
	uv_timer_init(cl->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles_open = 2;
	conn__add(cl, c);
	int rc = uv_tcp_open(&c->tcp, fd);
	if (rc < 0) {
		log_warn("event=accept_error error=\"%s\"", uv_strerror(rc));
		close(fd);
		conn__close_now(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);

	struct smtp_peer peer;
	memset(&peer, 0, sizeof(peer));
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		conn_addr(&ss, peer.client_ip, sizeof(peer.client_ip), &peer.client_port);
	len = sizeof(ss);
	if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		conn_addr(&ss, peer.local_ip, sizeof(peer.local_ip), &peer.local_port);
	str_lcpy(c->client_ip, peer.client_ip, sizeof(c->client_ip));

	const struct smtp_config *cfg = l->ops.acquire(l->ops.ctx, &c->pin, &c->ssl_ctx);
	log_info("event=connect sid=%llx listener=%s client=%s port=%u", (unsigned long long)c->id,
	         cfg->listener, peer.client_ip, peer.client_port);
	c->s = smtp_session_new(cfg, c->id, &peer, &conn_io, c, &cl->host, cl);
	c->want_read = true;
	conn_update_reading(c);
	if (cl->stopping)
		smtp_session_shutdown(c->s);
	smtp_session_start(c->s);
	if (!closing(c) && !smtp_session_holds_replies(c->s))
		conn__flush(c);
}

/* ---- the loop ------------------------------------------------------------------------------- */

struct conn_loop *conn_loop_new(uv_loop_t *loop, const struct conn_loop_conf *conf)
{
	struct conn_loop *cl = xcalloc(1, sizeof(*cl));
	cl->loop = loop;
	cl->host.ops = &conn__host_ops;
	cl->host.loop = conf->index;
	cl->hostname = str_dup(conf->hostname);
	cl->reserve_fd = -1;
	return cl;
}

void conn_shutdown_all(struct conn_loop *cl)
{
	cl->stopping = true;
	for (size_t i = 0; i < CONN_BUCKETS; i++) {
		struct conn *next;
		for (struct conn *c = cl->buckets[i]; c; c = next) {
			next = c->hnext;
			smtp_session_shutdown(c->s);
			if (!closing(c) && !smtp_session_holds_replies(c->s))
				conn__flush(c);
		}
	}
}

void conn_close_all(struct conn_loop *cl)
{
	for (size_t i = 0; i < CONN_BUCKETS; i++)
		while (cl->buckets[i])
			conn__close_now(cl->buckets[i]);
}

void conn_loop_free(struct conn_loop *cl)
{
	if (!cl)
		return;
	if (cl->reserve_fd >= 0)
		close(cl->reserve_fd);
	free(cl->hostname);
	free(cl);
}
