/*
 * certs.c - the certificate store: builds the server and client SSL_CTXs
 * the TLS engine runs on, and turns certificates into the facts we log
 * (SHA-256 fingerprint, RFC 2253 names).
 *
 * Ownership: certs_server_ctx()/certs_client_ctx() return a new SSL_CTX
 * that the caller frees with SSL_CTX_free(); every SSL made from it holds
 * its own reference. On failure they free what they built, leave the
 * OpenSSL error queue empty and write one line naming the file into err.
 * certs_fingerprint() and certs_name_oneline() write into caller buffers.
 */
#include "certs/certs.h"

#include "common/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* TLS 1.2 only (1.3 suites are fixed): forward secrecy and AEAD, no CBC,
 * no RSA key exchange. */
#define CERTS_DEFAULT_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"
/* Resumed sessions must come from this service, not some other program
 * sharing the ticket key by accident. */
#define CERTS_SESSION_ID_CONTEXT "postern"

/* ---- errors ------------------------------------------------------------- */

/* The earliest queued error is the cause ("No such file or directory");
 * later ones only say who passed it on. */
static void certs_reason(char *out, size_t outlen)
{
	unsigned long e = ERR_peek_error();
	const char *r = NULL;
	if (e == 0)
		r = "unknown error";
	else if (ERR_SYSTEM_ERROR(e))
		r = strerror(ERR_GET_REASON(e));
	else
		r = ERR_reason_error_string(e);
	if (r)
		str_lcpy(out, r, outlen);
	else
		ERR_error_string_n(e, out, outlen);
	ERR_clear_error();
}

/* Writes "<what>: <openssl reason>" into err. Always returns -1. */
static int certs_error(char *err, size_t errlen, const char *fmt, ...) PRINTF_LIKE(3, 4);

static int certs_error(char *err, size_t errlen, const char *fmt, ...)
{
	char what[512], reason[160];
	va_list ap;
	certs_reason(reason, sizeof reason);
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (err && errlen)
		snprintf(err, errlen, "%s: %s", what, reason);
	return -1;
}

/* A daemon has no terminal: an encrypted key fails instead of prompting. */
static int certs_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

/* ---- server ------------------------------------------------------------- */

static int certs_server_base(SSL_CTX *ctx, const char *ciphers, char *err, size_t errlen)
{
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)
	    || !SSL_CTX_set_max_proto_version(ctx, 0))
		return certs_error(err, errlen, "cannot set TLS versions");
	/* CLEANSE_PLAINTEXT: a record's plaintext (an AUTH line is a password)
	 * is wiped once read, not left in a buffer that is freed as it is. */
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE
			    | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION
			    | SSL_OP_CLEANSE_PLAINTEXT);
	/* Idle connections give their record buffers (~34 KiB) back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_default_passwd_cb(ctx, certs_no_passphrase);
	/* Tickets (on by default) resume TLS 1.3 and most 1.2 clients; the
	 * cache serves 1.2 clients that only know session ids. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	if (!SSL_CTX_set_session_id_context(ctx,
			(const unsigned char *)CERTS_SESSION_ID_CONTEXT,
			sizeof CERTS_SESSION_ID_CONTEXT - 1))
		return certs_error(err, errlen, "cannot set the session id context");
	if (!ciphers)
		ciphers = CERTS_DEFAULT_CIPHERS;
	if (!SSL_CTX_set_cipher_list(ctx, ciphers))
		return certs_error(err, errlen, "bad TLS 1.2 cipher list \"%s\"", ciphers);
	return 0;
}

static EVP_PKEY *certs_read_key(const char *file, char *err, size_t errlen)
{
	BIO *b = BIO_new_file(file, "r");
	if (!b) {
		certs_error(err, errlen, "cannot open private key %s", file);
		return NULL;
	}
	EVP_PKEY *key = PEM_read_bio_PrivateKey(b, NULL, certs_no_passphrase, NULL);
	BIO_free(b);
	/* The decoder's own reason ("unsupported") helps nobody. */
	if (!key) {
		ERR_clear_error();
		snprintf(err, errlen, "no usable private key in %s (PEM, unencrypted)", file);
	}
	return key;
}

static int certs_load_pair(SSL_CTX *ctx, const struct certs_server_conf *conf,
			   char *err, size_t errlen)
{
	if (!conf->cert_file || !conf->key_file) {
		snprintf(err, errlen, "a server needs both a certificate and a key file");
		return -1;
	}
	if (!SSL_CTX_use_certificate_chain_file(ctx, conf->cert_file))
		return certs_error(err, errlen, "cannot load certificate chain %s", conf->cert_file);
	EVP_PKEY *key = certs_read_key(conf->key_file, err, errlen);
	if (!key)
		return -1;
	/* use_PrivateKey refuses a key of the cert's type that does not match;
	 * check_private_key catches a key of another type. */
	int ok = SSL_CTX_use_PrivateKey(ctx, key) && SSL_CTX_check_private_key(ctx);
	EVP_PKEY_free(key);
	if (!ok)
		return certs_error(err, errlen, "private key %s does not match certificate %s",
				   conf->key_file, conf->cert_file);
	return 0;
}

/* OPTIONAL keeps the handshake going whatever the client sends; the
 * verdict is still recorded for SSL_get_verify_result(). */
static int certs_accept_any(int preverify_ok, X509_STORE_CTX *store)
{
	return 1;
}

static int certs_client_cas(SSL_CTX *ctx, const char *ca_file, char *err, size_t errlen)
{
	if (!SSL_CTX_load_verify_locations(ctx, ca_file, NULL))
		return certs_error(err, errlen, "cannot load CA file %s", ca_file);
	/* Tells clients which certificate to pick. */
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
	if (!names)
		return certs_error(err, errlen, "no CA certificate names in %s", ca_file);
	SSL_CTX_set_client_CA_list(ctx, names); /* ctx owns names */
	return 0;
}

static int certs_server_verify(SSL_CTX *ctx, const struct certs_server_conf *conf,
			       char *err, size_t errlen)
{
	switch (conf->client_verify) {
	case CERTS_CLIENT_NONE:
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return 0;
	case CERTS_CLIENT_OPTIONAL:
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, certs_accept_any);
		break;
	case CERTS_CLIENT_REQUIRE:
		/* Without a CA nothing could ever verify: say so at start-up. */
		if (!conf->ca_file) {
			snprintf(err, errlen, "client certificates required but no CA file given");
			return -1;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		break;
	default:
		snprintf(err, errlen, "unknown client certificate mode %d", (int)conf->client_verify);
		return -1;
	}
	return conf->ca_file ? certs_client_cas(ctx, conf->ca_file, err, errlen) : 0;
}

SSL_CTX *certs_server_ctx(const struct certs_server_conf *conf, char *err, size_t errlen)
{
	char dummy[1];
	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof dummy;
	}
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		certs_error(err, errlen, "cannot create a TLS server context");
		return NULL;
	}
	if (certs_server_base(ctx, conf->ciphers, err, errlen) < 0
	    || certs_load_pair(ctx, conf, err, errlen) < 0
	    || certs_server_verify(ctx, conf, err, errlen) < 0) {
		SSL_CTX_free(ctx);
		ERR_clear_error();
		return NULL;
	}
	return ctx;
}

/* ---- client ------------------------------------------------------------- */

static int certs_client_trust(SSL_CTX *ctx, const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file) {
		if (!SSL_CTX_load_verify_locations(ctx, ca_file, NULL))
			return certs_error(err, errlen, "cannot load CA file %s", ca_file);
	} else if (!SSL_CTX_set_default_verify_paths(ctx)) {
		return certs_error(err, errlen, "cannot load the system CA store");
	}
	return 0;
}

SSL_CTX *certs_client_ctx(bool verify, const char *ca_file, char *err, size_t errlen)
{
	char dummy[1];
	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof dummy;
	}
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		certs_error(err, errlen, "cannot create a TLS client context");
		return NULL;
	}
	int r = 0;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)
	    || !SSL_CTX_set_max_proto_version(ctx, 0))
		r = certs_error(err, errlen, "cannot set TLS versions");
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_default_passwd_cb(ctx, certs_no_passphrase);
	if (r == 0 && verify)
		r = certs_client_trust(ctx, ca_file, err, errlen);
	else if (r == 0)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (r < 0) {
		SSL_CTX_free(ctx);
		ERR_clear_error();
		return NULL;
	}
	return ctx;
}

/* ---- certificate facts -------------------------------------------------- */

int certs_fingerprint(X509 *cert, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	out[0] = '\0';
	if (!cert)
		return -EINVAL;
	if (!X509_digest(cert, EVP_sha256(), md, &n) || n != 32) {
		ERR_clear_error();
		return -EIO;
	}
	codec_hex(md, n, out);
	return 0;
}

void certs_name_oneline(X509_NAME *name, char *out, size_t outlen)
{
	char *data = NULL;
	if (outlen == 0)
		return;
	out[0] = '\0';
	BIO *b = BIO_new(BIO_s_mem());
	if (!b || !name) {
		BIO_free(b);
		return;
	}
	/* RFC 2253 escaping also turns control bytes into \XX: log-safe. */
	if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
		long n = BIO_get_mem_data(b, &data);
		size_t len = n > 0 ? (size_t)n : 0;
		if (len >= outlen)
			len = outlen - 1;
		if (len)
			memcpy(out, data, len);
		out[len] = '\0';
	}
	BIO_free(b);
	ERR_clear_error();
}
