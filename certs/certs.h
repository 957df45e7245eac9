/*
 * certs.h - the certificate store: builds the SSL_CTXs that the TLS engine
 * uses, and computes certificate fingerprints.
 *
 * Ownership: certs_server_ctx()/certs_client_ctx() return a new SSL_CTX
 * owned by the caller (SSL_CTX_free). certs_fingerprint() writes into the
 * caller's buffer.
 */
#ifndef POSTERN_CERTS_H
#define POSTERN_CERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>

enum certs_client_verify {
	CERTS_CLIENT_NONE,     /* do not ask for a client certificate */
	CERTS_CLIENT_OPTIONAL, /* ask; accept a missing or unverified one */
	CERTS_CLIENT_REQUIRE,  /* ask; the handshake fails without a valid one */
};

struct certs_server_conf {
	const char *cert_file;   /* PEM chain, leaf first */
	const char *key_file;    /* PEM private key */
	const char *ca_file;     /* CA for client certificates, may be NULL */
	const char *ciphers;     /* TLS 1.2 cipher list, NULL for the default */
	enum certs_client_verify client_verify;
};

/* TLS 1.2 and 1.3 only, server cipher preference, session tickets and a
 * session cache for resumption, SSL_MODE_RELEASE_BUFFERS. On failure
 * returns NULL and writes a one-line reason into err. */
SSL_CTX *certs_server_ctx(const struct certs_server_conf *conf, char *err, size_t errlen);

/* Client context for relaying: TLS 1.2+; when verify is true, the peer is
 * checked against ca_file (or the system store when ca_file is NULL). */
SSL_CTX *certs_client_ctx(bool verify, const char *ca_file, char *err, size_t errlen);

/* Lowercase hex SHA-256 of the DER certificate; out holds 65 bytes. */
int certs_fingerprint(X509 *cert, char out[65]);

/* One-line RFC 2253 name; out is NUL-terminated (truncated if needed). */
void certs_name_oneline(X509_NAME *name, char *out, size_t outlen);

#endif
