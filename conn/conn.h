/*
 * conn.h - the transport: listening sockets and the accept loop, client
 * sockets, reads, the TLS engine between the socket and the SMTP engine,
 * coalesced writes (uv_try_write first, one write per batch of replies),
 * the session's timer, close callbacks, and the per-loop table of
 * sessions by id through which every late answer finds its session.
 *
 * One struct conn_loop per event loop; nothing here is shared between
 * loops except the listeners' configuration the server pins per
 * connection. A PROXY protocol preamble, when it comes, is parsed here
 * before the session starts (planned).
 *
 * Ownership: conn_loop_new() returns an object owned by the loop's
 * thread, freed by conn_loop_free() once the loop has closed every
 * handle. A connection is freed in the close callback of the last of its
 * handles (libuv's rule), after its session and pin are released.
 */
#ifndef POSTERN_CONN_H
#define POSTERN_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include <openssl/ssl.h>

#include "smtp/smtp.h"

struct conn_loop;

/* Refused smtps connections whose handshake a loop completes at once to
 * answer 421 inside TLS; each holds a descriptor meanwhile (start-up
 * counts them against RLIMIT_NOFILE). */
#define CONN_REFUSALS_MAX 64

/* What a listener's new connection starts with: the server pins the
 * runtime generation of the moment (config and TLS context) for the
 * connection's whole life. */
struct conn_listener_ops {
	const struct smtp_config *(*acquire)(void *ctx, void **pin, SSL_CTX **ssl);
	void (*release)(void *ctx, void *pin);
	/* A newer generation than *pin: moves the pin to it and returns its
	 * config; NULL when *pin is the newest (the common case, cheap). */
	const struct smtp_config *(*refresh)(void *ctx, void **pin, SSL_CTX **ssl);
	/* Whether the listener is smtps (no plaintext reply is ever sent). */
	bool implicit_tls;
	void *ctx;
};

struct conn_loop_conf {
	const char *hostname;    /* in the 421 when out of descriptors */
	unsigned index;          /* which loop (struct hook_host.loop) */
};

/* Opens n listening sockets on host:port (address is for messages), one
 * per loop, into fds; as root if the port needs it. Fails, with err
 * filled, when anything listens on the address already. */
int conn_bind(const char *host, unsigned port, const char *address, unsigned n, int *fds,
              char *err, size_t errlen);

struct conn_loop *conn_loop_new(uv_loop_t *loop, const struct conn_loop_conf *conf);
/* Starts accepting on fd (a bound, listening socket the loop now owns). */
int conn_listen(struct conn_loop *cl, int fd, const struct conn_listener_ops *ops);
/* Stops accepting and closes the listening sockets. */
void conn_stop_listening(struct conn_loop *cl);
/* The daemon stops: every session says 421 now or after its message. */
void conn_shutdown_all(struct conn_loop *cl);
/* Closes every connection now. */
void conn_close_all(struct conn_loop *cl);
unsigned conn_loop_sessions(const struct conn_loop *cl);
/* Once the loop has run its close callbacks. */
void conn_loop_free(struct conn_loop *cl);

/* An answer for session sid on this loop (route is the conn_loop, from a
 * struct smtp_token); must run on the loop's thread. Returns whether the
 * session took it: false when the session has gone or no longer waits for
 * it, and what the answer carries is then still the caller's. The replies
 * the answer produced are flushed. */
bool conn_complete(void *route, uint64_t sid, uint32_t seq, const struct smtp_done *d);

#endif
