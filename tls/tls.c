/*
 * tls.c - the TLS engine: one SSL object between two memory BIOs.
 *
 * Ciphertext from the network goes into the "in" BIO (tls_feed); whatever
 * OpenSSL wants to send piles up in the "out" BIO (tls_take_output). No
 * sockets, no event loop: the owner moves the bytes. Every public call
 * first forgets the previous error, so tls_error() describes the last call
 * only; once the engine has failed it keeps failing with the first error.
 *
 * Ownership: tls_new() returns an engine freed by tls_free(). SSL_new()
 * takes a reference on the SSL_CTX, so the caller may free its own. After
 * SSL_set_bio() the SSL object owns both BIOs; we keep plain pointers to
 * them and never free them ourselves. The session facts (SNI, peer subject,
 * issuer, fingerprint) are copied when the handshake completes and freed by
 * tls_free(); the version and cipher names are OpenSSL's static strings.
 */
#include "tls/tls.h"
#include "certs/certs.h"

#include "common/common.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* A memory BIO never gives memory back; one that grew past this (a large
 * write or read) is swapped for a fresh one once drained, so that an idle
 * connection costs little. A full TLS record is ~16.7 KiB. */
#define TLS_BIO_KEEP (32 * 1024)

struct tls {
	SSL *ssl;
	BIO *in;                /* owned by ssl */
	BIO *out;               /* owned by ssl */
	bool done;              /* handshake complete */
	bool failed;            /* fatal error: the SSL object is unusable */
	bool reused;
	bool verified;
	int bits;
	const char *version;    /* static strings from OpenSSL */
	const char *cipher;
	char *sni;              /* ours, sanitized */
	char *subject;
	char *issuer;
	char fingerprint[65];   /* "" when the peer sent no certificate */
	char err[200];
};

/* ---- errors ----------------------------------------------------------- */

/* Starts a public call: forgets the last error unless the engine is dead,
 * in which case the first error stays and the call fails. */
static bool tls_begin(struct tls *t)
{
	if (t->failed)
		return false;
	t->err[0] = '\0';
	/* SSL_get_error() looks at this thread's queue: leftovers from other
	 * code would turn a WANT_READ into a failure. */
	ERR_clear_error();
	return true;
}

static int tls_set_error(struct tls *t, const char *text)
{
	str_lcpy(t->err, text, sizeof t->err);
	return TLS_FAIL;
}

/* Explains the verify result too: "certificate verify failed" alone does
 * not tell an operator what to fix. */
static void tls_describe_queue(struct tls *t, unsigned long e)
{
	ERR_error_string_n(e, t->err, sizeof t->err);
	if (ERR_GET_LIB(e) != ERR_LIB_SSL
	    || ERR_GET_REASON(e) != SSL_R_CERTIFICATE_VERIFY_FAILED)
		return;
	long v = SSL_get_verify_result(t->ssl);
	if (v == X509_V_OK)
		return;
	size_t n = strlen(t->err);
	snprintf(t->err + n, sizeof t->err - n, " (%s)",
		 X509_verify_cert_error_string(v));
}

/* A fatal error: records the text and marks the engine dead. */
static int tls_fail(struct tls *t, int ssl_err)
{
	unsigned long e = ERR_peek_error(); /* the earliest is the cause */
	if (e != 0)
		tls_describe_queue(t, e);
	else if (ssl_err == SSL_ERROR_SYSCALL)
		tls_set_error(t, "unexpected end of TLS stream");
	else
		snprintf(t->err, sizeof t->err, "TLS error (SSL_get_error %d)", ssl_err);
	ERR_clear_error();
	t->failed = true;
	return TLS_FAIL;
}

/* Maps an OpenSSL return value to our three-way answer (plus CLOSED). */
static int tls_status(struct tls *t, int ret)
{
	int e = SSL_get_error(t->ssl, ret);
	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_IO;
	case SSL_ERROR_ZERO_RETURN:
		return TLS_CLOSED;
	default:
		return tls_fail(t, e);
	}
}

/* ---- memory BIOs -------------------------------------------------------- */

static BIO *tls_bio_new(void)
{
	BIO *b = BIO_new(BIO_s_mem());
	/* An empty BIO means "no data yet", not end of stream. */
	if (b)
		BIO_set_mem_eof_return(b, -1);
	return b;
}

/* True when b is empty and holds more memory than TLS_BIO_KEEP. */
static bool tls_bio_bloated(BIO *b)
{
	BUF_MEM *bm = NULL;
	if (BIO_ctrl_pending(b) != 0)
		return false;
	BIO_get_mem_ptr(b, &bm);
	return bm && bm->max > TLS_BIO_KEEP;
}

/* Swaps drained, oversized BIOs for fresh ones. Only after the handshake:
 * during it OpenSSL stacks a buffering BIO on the write side. */
static void tls_trim(struct tls *t)
{
	BIO *b;
	if (!t->done || t->failed)
		return;
	if (tls_bio_bloated(t->in) && (b = tls_bio_new()) != NULL) {
		SSL_set0_rbio(t->ssl, b); /* frees the old one */
		t->in = b;
	}
	if (tls_bio_bloated(t->out) && (b = tls_bio_new()) != NULL) {
		SSL_set0_wbio(t->ssl, b);
		t->out = b;
	}
}

/* ---- life cycle --------------------------------------------------------- */

struct tls *tls_new(SSL_CTX *ctx, enum tls_role role)
{
	struct tls *t = xcalloc(1, sizeof *t);
	BIO *in = tls_bio_new(), *out = tls_bio_new();
	t->ssl = SSL_new(ctx);
	if (!t->ssl || !in || !out) {
		BIO_free(in);
		BIO_free(out);
		SSL_free(t->ssl);
		free(t);
		ERR_clear_error();
		return NULL;
	}
	SSL_set_bio(t->ssl, in, out);
	t->in = in;
	t->out = out;
	if (role == TLS_SERVER)
		SSL_set_accept_state(t->ssl);
	else
		SSL_set_connect_state(t->ssl);
	return t;
}

void tls_free(struct tls *t)
{
	if (!t)
		return;
	/* SSL_free() marks the session not resumable unless a close_notify
	 * was sent; peers that just drop TCP would then kill the session the
	 * relay saved. TLS 1.1+ only forbids resuming after a fatal alert
	 * (RFC 5246 section 7.2.1), so a clean engine keeps its session. */
	if (t->done && !t->failed)
		SSL_set_shutdown(t->ssl, SSL_get_shutdown(t->ssl) | SSL_SENT_SHUTDOWN);
	SSL_free(t->ssl); /* frees both BIOs and drops the SSL_CTX reference */
	free(t->sni);
	free(t->subject);
	free(t->issuer);
	free(t);
}

/* SNI must not carry IP literals (RFC 6066 section 3). */
static bool tls_is_ip_literal(const char *name)
{
	ASN1_OCTET_STRING *ip = a2i_IPADDRESS(name);
	ASN1_OCTET_STRING_free(ip);
	ERR_clear_error();
	return ip != NULL;
}

int tls_set_hostname(struct tls *t, const char *name)
{
	if (!tls_begin(t))
		return TLS_FAIL;
	if (SSL_is_server(t->ssl))
		return tls_set_error(t, "a server does not send a host name");
	if (!tls_is_ip_literal(name) && !SSL_set_tlsext_host_name(t->ssl, name))
		return tls_set_error(t, "invalid host name for SNI");
	/* Host checking only matters when the chain is verified at all. */
	if (SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER) {
		SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (!SSL_set1_host(t->ssl, name))
			return tls_set_error(t, "invalid host name for verification");
	}
	return TLS_OK;
}

int tls_set_session(struct tls *t, SSL_SESSION *sess)
{
	if (!tls_begin(t))
		return TLS_FAIL;
	if (SSL_is_server(t->ssl) || t->done)
		return tls_set_error(t, "session resumption is set by a client before the handshake");
	if (!SSL_set_session(t->ssl, sess)) {
		ERR_clear_error();
		return tls_set_error(t, "cannot use the saved TLS session");
	}
	return TLS_OK;
}

SSL_SESSION *tls_get1_session(const struct tls *t)
{
	if (!t->done || t->failed)
		return NULL;
	SSL_SESSION *s = SSL_get1_session(t->ssl);
	if (s && !SSL_SESSION_is_resumable(s)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

/* ---- handshake ---------------------------------------------------------- */

static char *tls_name_dup(const X509_NAME *name)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *s = NULL, *data = NULL;
	if (!b)
		return NULL;
	if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
		long n = BIO_get_mem_data(b, &data);
		s = n > 0 ? str_ndup(data, (size_t)n) : str_dup("");
	}
	BIO_free(b);
	return s;
}

static void tls_cache_peer(struct tls *t)
{
	X509 *peer = SSL_get0_peer_certificate(t->ssl);
	if (!peer)
		return;
	certs_fingerprint(peer, t->fingerprint);
	t->subject = tls_name_dup(X509_get_subject_name(peer));
	t->issuer = tls_name_dup(X509_get_issuer_name(peer));
	t->verified = SSL_get_verify_result(t->ssl) == X509_V_OK;
}

/* The client chose the SNI bytes: keep them out of our log lines. */
static void tls_cache_sni(struct tls *t)
{
	const char *sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
	if (!sni)
		return;
	size_t len = strlen(sni);
	t->sni = xmalloc(len + 1);
	str_sanitize(t->sni, len + 1, sni, len);
}

/* Caches the session facts once, so the getters stay cheap and valid
 * even after the SSL object has failed or shut down. */
static void tls_established(struct tls *t)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
	t->done = true;
	t->reused = SSL_session_reused(t->ssl);
	t->version = SSL_get_version(t->ssl);
	t->cipher = c ? SSL_CIPHER_get_name(c) : NULL;
	t->bits = c ? SSL_CIPHER_get_bits(c, NULL) : 0;
	tls_cache_sni(t);
	tls_cache_peer(t);
	ERR_clear_error();
}

static int tls_step(struct tls *t)
{
	int r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		tls_established(t);
		return TLS_OK;
	}
	r = tls_status(t, r);
	if (r == TLS_CLOSED) {
		t->failed = true;
		return tls_set_error(t, "peer closed the connection during the TLS handshake");
	}
	return r;
}

int tls_handshake(struct tls *t)
{
	if (!tls_begin(t))
		return TLS_FAIL;
	if (t->done)
		return TLS_OK;
	return tls_step(t);
}

bool tls_handshake_done(const struct tls *t)
{
	return t->done;
}

/* ---- data ----------------------------------------------------------------- */

int tls_feed(struct tls *t, const void *data, size_t len)
{
	if (!tls_begin(t))
		return TLS_FAIL;
	const char *p = data;
	while (len > 0) {
		int chunk = len > INT_MAX ? INT_MAX : (int)len;
		int n = BIO_write(t->in, p, chunk);
		if (n <= 0) {
			ERR_clear_error();
			t->failed = true;
			return tls_set_error(t, "out of memory buffering TLS input");
		}
		p += n;
		len -= (size_t)n;
	}
	return TLS_OK;
}

int tls_read(struct tls *t, void *buf, size_t cap, size_t *got)
{
	*got = 0;
	if (!tls_begin(t))
		return TLS_FAIL;
	if (cap == 0)
		return tls_set_error(t, "tls_read: empty buffer");
	if (!t->done) {
		int r = tls_step(t);
		if (r != TLS_OK)
			return r;
	}
	/* One record at most per call; the owner loops until WANT_IO. */
	int r = SSL_read_ex(t->ssl, buf, cap, got) ? TLS_OK : tls_status(t, 0);
	tls_trim(t);
	return r;
}

int tls_write(struct tls *t, const void *data, size_t len)
{
	if (!tls_begin(t))
		return TLS_FAIL;
	if (!t->done)
		return tls_set_error(t, "tls_write before the TLS handshake completed");
	const char *p = data;
	while (len > 0) {
		size_t n = 0;
		if (!SSL_write_ex(t->ssl, p, len, &n)) {
			/* The memory BIO cannot block: anything but success is
			 * fatal, WANT_* included. */
			int e = SSL_get_error(t->ssl, 0);
			return tls_fail(t, e);
		}
		p += n;
		len -= n;
	}
	return TLS_OK;
}

void tls_shutdown(struct tls *t)
{
	/* OpenSSL forbids SSL_shutdown() after a fatal error, and before the
	 * handshake there is nothing to close politely. */
	if (!tls_begin(t) || !t->done)
		return;
	if (!(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
		SSL_shutdown(t->ssl);
	ERR_clear_error();
}

size_t tls_pending_output(const struct tls *t)
{
	return BIO_ctrl_pending(t->out);
}

size_t tls_take_output(struct tls *t, void *buf, size_t cap)
{
	int chunk = cap > INT_MAX ? INT_MAX : (int)cap;
	if (chunk == 0)
		return 0;
	int n = BIO_read(t->out, buf, chunk);
	if (n <= 0)
		return 0;
	tls_trim(t);
	return (size_t)n;
}

/* ---- facts ---------------------------------------------------------------- */

const char *tls_error(const struct tls *t)
{
	return t->err;
}

const char *tls_version(const struct tls *t)
{
	return t->version;
}

const char *tls_cipher(const struct tls *t)
{
	return t->cipher;
}

int tls_cipher_bits(const struct tls *t)
{
	return t->bits;
}

const char *tls_sni(const struct tls *t)
{
	return t->sni;
}

bool tls_session_reused(const struct tls *t)
{
	return t->reused;
}

const char *tls_peer_fingerprint(const struct tls *t)
{
	return t->fingerprint[0] ? t->fingerprint : NULL;
}

const char *tls_peer_subject(const struct tls *t)
{
	return t->subject;
}

const char *tls_peer_issuer(const struct tls *t)
{
	return t->issuer;
}

bool tls_peer_verified(const struct tls *t)
{
	return t->verified;
}
