/*
 * conn_int.h - what the transport's files share: the connection, the
 * loop's object, the listening socket.
 *
 * Ownership: see conn.h.
 */
#ifndef POSTERN_CONN_INT_H
#define POSTERN_CONN_INT_H

#include "conn/conn.h"
#include "tls/tls.h"
#include "common/common.h"

#define CONN_BUCKETS 4096

struct conn_listener {
	uv_poll_t poll;
	uv_timer_t backoff;        /* accepting paused after EMFILE/ENFILE */
	struct conn_loop *cl;
	struct conn_listener_ops ops;
	int fd;
	unsigned handles_open;
	struct conn_listener *next;
};

struct conn {
	uv_tcp_t tcp;              /* first: the handle's data is the connection */
	uv_timer_t timer;
	struct conn_loop *cl;
	struct conn *hnext;        /* bucket chain */
	uint64_t id;
	unsigned handles_open;     /* tcp + timer: freed when both are closed */
	struct conn_listener_ops lops;   /* a copy: the listener may close first */
	void *pin;                 /* the generation this connection runs under */
	SSL_CTX *ssl_ctx;
	struct smtp_session *s;
	char client_ip[64];

	struct tls *tls;           /* NULL before TLS */
	bool tls_ready;
	bool refusal;              /* a refusal's handshake: counted in cl->refusing */
	struct hook_tls facts;
	struct buf out;            /* replies waiting for the next flush */
	bool want_read;            /* what the engine asked for */
	bool reading;
	bool close_after_flush;
	bool closed;
	bool write_blocked;        /* too many unsent replies: reading paused */
};

struct conn_loop {
	uv_loop_t *loop;
	struct hook_host host;     /* first of the hook side: see registry.c */
	char *hostname;
	struct conn *buckets[CONN_BUCKETS];
	unsigned nsessions;
	struct conn_listener *listeners;
	bool stopping;
	unsigned refusing;         /* smtps refusals waiting for their handshake */
	uint64_t refusals_dropped;
	uint64_t refusals_drop_logged;
	int reserve_fd;            /* given up to accept-and-refuse when out of descriptors */
	uint64_t accept_errors;
	uint64_t accept_error_logged;
	char readbuf[65536];       /* shared by every read on this loop */
	char writebuf[16384];      /* ciphertext on its way to a socket, ditto */
};

/* registry.c */
void conn__add(struct conn_loop *cl, struct conn *c);
void conn__remove(struct conn_loop *cl, struct conn *c);
struct conn *conn__find(struct conn_loop *cl, uint64_t id);
extern const struct hook_host_ops conn__host_ops;

/* conn.c */
void conn__accept(struct conn_loop *cl, struct conn_listener *l, int fd);
void conn__flush(struct conn *c);
void conn__close_now(struct conn *c);

#endif
