/*
 * tls.h - the TLS engine: OpenSSL over memory BIOs, knowing no sockets.
 *
 * The owner feeds ciphertext read from the network with tls_feed(), drives
 * the handshake with tls_handshake(), reads and writes plaintext, and sends
 * whatever tls_take_output() returns. Every call answers TLS_OK,
 * TLS_WANT_IO (needs more input from the peer; flush output first) or
 * TLS_FAIL (the error text stays available through tls_error() until the
 * next call); tls_read() also answers TLS_CLOSED after the peer's
 * close_notify. After a fatal failure the engine is dead: every call fails
 * again with the first error, but the pending output (an alert) may still
 * be taken and sent; the output calls never touch the error text. This
 * file never includes uv.h.
 *
 * Ownership: tls_new() returns an engine owned by the caller, freed by
 * tls_free(); the engine takes a reference on the SSL_CTX. Strings returned
 * by the info getters live as long as the engine.
 */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>

enum tls_result {
	TLS_OK = 0,
	TLS_WANT_IO = 1,
	TLS_CLOSED = 2,
	TLS_FAIL = -1,
};

enum tls_role { TLS_SERVER, TLS_CLIENT };

struct tls;

struct tls *tls_new(SSL_CTX *ctx, enum tls_role role);
void tls_free(struct tls *t);

/* Client side only: name for SNI and (when verify is set) host checking. */
int tls_set_hostname(struct tls *t, const char *name);

/* Client side, before the handshake: offer a session saved from an earlier
 * connection (the engine takes its own reference). */
int tls_set_session(struct tls *t, SSL_SESSION *sess);
/* A resumable session to save for the next connection, or NULL; the caller
 * frees it with SSL_SESSION_free(). In TLS 1.3 the ticket arrives after the
 * handshake: ask once tls_read() has processed the server's first bytes. */
SSL_SESSION *tls_get1_session(const struct tls *t);

/* Ciphertext from the network. Always consumes all of it. */
int tls_feed(struct tls *t, const void *data, size_t len);

/* Drives the handshake: TLS_OK once complete, TLS_WANT_IO, TLS_FAIL. */
int tls_handshake(struct tls *t);
bool tls_handshake_done(const struct tls *t);

/* Plaintext out: TLS_OK with *got > 0, TLS_WANT_IO (nothing buffered),
 * TLS_CLOSED (close_notify received), TLS_FAIL. */
int tls_read(struct tls *t, void *buf, size_t cap, size_t *got);

/* Plaintext in: encrypts all of it into the output queue. TLS_OK/TLS_FAIL. */
int tls_write(struct tls *t, const void *data, size_t len);

/* Queues a close_notify. */
void tls_shutdown(struct tls *t);

/* Ciphertext waiting to be sent; tls_take_output() copies up to cap bytes
 * and removes them from the queue, returning how many. */
size_t tls_pending_output(const struct tls *t);
size_t tls_take_output(struct tls *t, void *buf, size_t cap);

/* Last error, "" when none. */
const char *tls_error(const struct tls *t);

/* Session facts, valid after the handshake. NULL when unknown. */
const char *tls_version(const struct tls *t);   /* "TLSv1.3" */
const char *tls_cipher(const struct tls *t);    /* "TLS_AES_256_GCM_SHA384" */
int tls_cipher_bits(const struct tls *t);
const char *tls_sni(const struct tls *t);
bool tls_session_reused(const struct tls *t);
/* Peer certificate facts; NULL when the peer sent none. The fingerprint
 * is lowercase hex SHA-256 of the DER certificate, without colons. */
const char *tls_peer_fingerprint(const struct tls *t);
const char *tls_peer_subject(const struct tls *t);
const char *tls_peer_issuer(const struct tls *t);
/* Whether the peer's certificate verified against the configured CA. */
bool tls_peer_verified(const struct tls *t);

#endif
