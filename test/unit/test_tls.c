/*
 * test_tls.c - the TLS engine and the certificate store, tested as two
 * engines talking in memory. The PKI (two CAs, a server, a client and a
 * client signed by the wrong CA) is generated at start-up into a mkdtemp
 * directory, so no private key lives in git; the directory is removed at
 * the end. Tests share it read-only (it is built in an unchecked fixture,
 * before Check forks).
 */
#include "tls/tls.h"
#include "certs/certs.h"

#include "common/common.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define HOST "mail.example.test"

/* ---- the test PKI ------------------------------------------------------- */

static const char *const pki_files[] = {
	"ca.pem", "server.pem", "server.key", "client.pem", "client.key",
	"rogue.pem", "rogue.key",
};

static char pki_dir[64];
static char client_fp[65], rogue_fp[65], client_subject[256];

struct ext {
	int nid;
	const char *value;
};

static const struct ext ca_exts[] = {
	{ NID_basic_constraints, "critical,CA:TRUE" },
	{ NID_key_usage, "critical,keyCertSign,cRLSign" },
	{ 0, NULL },
};
static const struct ext server_exts[] = {
	{ NID_basic_constraints, "CA:FALSE" },
	{ NID_key_usage, "critical,digitalSignature" },
	{ NID_ext_key_usage, "serverAuth" },
	{ NID_subject_alt_name, "DNS:" HOST },
	{ 0, NULL },
};
static const struct ext client_exts[] = {
	{ NID_basic_constraints, "CA:FALSE" },
	{ NID_key_usage, "critical,digitalSignature" },
	{ NID_ext_key_usage, "clientAuth" },
	{ 0, NULL },
};

/* Up to eight results stay valid at once: enough for one conf struct. */
static const char *pki_path(const char *name)
{
	static char paths[8][128];
	static unsigned next;
	char *p = paths[next++ % ARRAY_LEN(paths)];
	snprintf(p, sizeof paths[0], "%s/%s", pki_dir, name);
	return p;
}

static EVP_PKEY *pki_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	ck_assert_ptr_nonnull(k);
	return k;
}

static void pki_add_exts(X509 *x, X509 *issuer, const struct ext *exts)
{
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	for (; exts->value; exts++) {
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, exts->nid, exts->value);
		ck_assert_ptr_nonnull(e);
		ck_assert_int_eq(X509_add_ext(x, e, -1), 1);
		X509_EXTENSION_free(e);
	}
}

/* issuer NULL: self-signed with key. */
static X509 *pki_cert(EVP_PKEY *key, const char *cn, X509 *issuer,
		      EVP_PKEY *issuer_key, const struct ext *exts)
{
	static long serial = 1;
	X509 *x = X509_new();
	ck_assert_ptr_nonnull(x);
	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Postern Test", -1, -1, 0);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
	pki_add_exts(x, issuer, exts);
	ck_assert_int_gt(X509_sign(x, issuer ? issuer_key : key, EVP_sha256()), 0);
	return x;
}

/* Writes cert, then extra (the chain), then key; any may be NULL. */
static void pki_write(const char *name, X509 *cert, X509 *extra, EVP_PKEY *key)
{
	FILE *f = fopen(pki_path(name), "w");
	ck_assert_ptr_nonnull(f);
	if (cert)
		ck_assert_int_eq(PEM_write_X509(f, cert), 1);
	if (extra)
		ck_assert_int_eq(PEM_write_X509(f, extra), 1);
	if (key)
		ck_assert_int_eq(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
	ck_assert_int_eq(fclose(f), 0);
}

/* A leaf signed by ca, written as <name>.pem and <name>.key. */
static X509 *pki_leaf(const char *name, const char *cn, X509 *ca, EVP_PKEY *ca_key,
		      const struct ext *exts, X509 *chain)
{
	char file[32];
	EVP_PKEY *key = pki_key();
	X509 *x = pki_cert(key, cn, ca, ca_key, exts);
	snprintf(file, sizeof file, "%s.pem", name);
	pki_write(file, x, chain, NULL);
	snprintf(file, sizeof file, "%s.key", name);
	pki_write(file, NULL, NULL, key);
	EVP_PKEY_free(key);
	return x;
}

static void pki_setup(void)
{
	str_lcpy(pki_dir, "/tmp/postern-tls-XXXXXX", sizeof pki_dir);
	ck_assert_ptr_nonnull(mkdtemp(pki_dir));

	EVP_PKEY *ca_key = pki_key(), *ca2_key = pki_key();
	X509 *ca = pki_cert(ca_key, "Postern Test CA", NULL, NULL, ca_exts);
	X509 *ca2 = pki_cert(ca2_key, "Some Other CA", NULL, NULL, ca_exts);
	pki_write("ca.pem", ca, NULL, NULL);

	X509 *server = pki_leaf("server", HOST, ca, ca_key, server_exts, ca);
	X509 *client = pki_leaf("client", "alice", ca, ca_key, client_exts, NULL);
	X509 *rogue = pki_leaf("rogue", "mallory", ca2, ca2_key, client_exts, NULL);

	ck_assert_int_eq(certs_fingerprint(client, client_fp), 0);
	ck_assert_int_eq(certs_fingerprint(rogue, rogue_fp), 0);
	certs_name_oneline(X509_get_subject_name(client), client_subject, sizeof client_subject);

	X509_free(server);
	X509_free(client);
	X509_free(rogue);
	X509_free(ca);
	X509_free(ca2);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(ca2_key);
}

static void pki_teardown(void)
{
	for (size_t i = 0; i < ARRAY_LEN(pki_files); i++)
		unlink(pki_path(pki_files[i]));
	rmdir(pki_dir);
}

/* ---- contexts and engine pairs ----------------------------------------- */

static SSL_CTX *server_ctx(enum certs_client_verify verify)
{
	char err[512];
	struct certs_server_conf conf = {
		.cert_file = pki_path("server.pem"),
		.key_file = pki_path("server.key"),
		.ca_file = pki_path("ca.pem"),
		.client_verify = verify,
	};
	SSL_CTX *ctx = certs_server_ctx(&conf, err, sizeof err);
	ck_assert_msg(ctx != NULL, "certs_server_ctx: %s", err);
	return ctx;
}

/* A client that checks the server against our CA; name "client" or
 * "rogue" adds that client certificate. */
static SSL_CTX *client_ctx(const char *name)
{
	char err[512], file[32];
	SSL_CTX *ctx = certs_client_ctx(true, pki_path("ca.pem"), err, sizeof err);
	ck_assert_msg(ctx != NULL, "certs_client_ctx: %s", err);
	if (!name)
		return ctx;
	snprintf(file, sizeof file, "%s.pem", name);
	ck_assert_int_eq(SSL_CTX_use_certificate_file(ctx, pki_path(file), SSL_FILETYPE_PEM), 1);
	snprintf(file, sizeof file, "%s.key", name);
	ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(ctx, pki_path(file), SSL_FILETYPE_PEM), 1);
	return ctx;
}

struct pair {
	struct tls *s, *c;
	int rs, rc;  /* last handshake results */
};

/* Takes over both contexts: the engines keep their own references, which
 * is exactly what freeing ours here proves. */
static void pair_open(struct pair *p, SSL_CTX *sctx, SSL_CTX *cctx)
{
	p->s = tls_new(sctx, TLS_SERVER);
	p->c = tls_new(cctx, TLS_CLIENT);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	ck_assert_ptr_nonnull(p->s);
	ck_assert_ptr_nonnull(p->c);
	ck_assert_int_eq(tls_set_hostname(p->c, HOST), TLS_OK);
	p->rs = p->rc = TLS_WANT_IO;
}

static void pair_close(struct pair *p)
{
	tls_free(p->s);
	tls_free(p->c);
}

/* Moves all pending ciphertext; the receiver may already be dead. */
static size_t pump(struct tls *from, struct tls *to)
{
	char buf[5000]; /* smaller than a record: split records must work */
	size_t n, total = 0;
	while ((n = tls_take_output(from, buf, sizeof buf)) > 0) {
		tls_feed(to, buf, n);
		total += n;
	}
	return total;
}

static void pair_handshake(struct pair *p)
{
	for (int round = 0; round < 20; round++) {
		if (p->rc == TLS_WANT_IO)
			p->rc = tls_handshake(p->c);
		size_t moved = pump(p->c, p->s);
		if (p->rs == TLS_WANT_IO)
			p->rs = tls_handshake(p->s);
		moved += pump(p->s, p->c);
		if ((p->rc != TLS_WANT_IO && p->rs != TLS_WANT_IO) || moved == 0)
			break;
	}
}

static void pair_connect(struct pair *p, SSL_CTX *sctx, SSL_CTX *cctx)
{
	pair_open(p, sctx, cctx);
	pair_handshake(p);
	ck_assert_msg(p->rc == TLS_OK, "client: %d %s", p->rc, tls_error(p->c));
	ck_assert_msg(p->rs == TLS_OK, "server: %d %s", p->rs, tls_error(p->s));
}

/* Reads everything available into out (cap bytes); returns the count and
 * the final result in *last. */
static size_t read_all(struct tls *t, char *out, size_t cap, int *last)
{
	size_t total = 0, got;
	int r;
	while ((r = tls_read(t, out + total, cap - total, &got)) == TLS_OK) {
		ck_assert_uint_gt(got, 0);
		total += got;
		if (total == cap)
			break;
	}
	*last = r;
	return total;
}

static void send_and_check(struct tls *from, struct tls *to, size_t len)
{
	char *msg = xmalloc(len), *got = xmalloc(len + 1);
	int last;
	for (size_t i = 0; i < len; i++)
		msg[i] = (char)('a' + i % 26 + (i / 26) % 3);
	ck_assert_int_eq(tls_write(from, msg, len), TLS_OK);
	pump(from, to);
	ck_assert_uint_eq(read_all(to, got, len + 1, &last), len);
	ck_assert_int_eq(last, TLS_WANT_IO);
	ck_assert(memcmp(msg, got, len) == 0);
	free(msg);
	free(got);
}

/* ---- handshake and data ------------------------------------------------- */

START_TEST(test_handshake_and_data)
{
	struct pair p;
	pair_connect(&p, server_ctx(CERTS_CLIENT_NONE), client_ctx(NULL));
	const char *v = tls_version(p.s);
	ck_assert_ptr_nonnull(v);
	ck_assert(strcmp(v, "TLSv1.3") == 0 || strcmp(v, "TLSv1.2") == 0);
	ck_assert_str_eq(tls_version(p.c), v);
	ck_assert_ptr_nonnull(tls_cipher(p.s));
	ck_assert_int_ge(tls_cipher_bits(p.s), 128);
	ck_assert_str_eq(tls_sni(p.s), HOST);
	ck_assert(tls_handshake_done(p.s) && tls_handshake_done(p.c));
	ck_assert(!tls_session_reused(p.s));
	ck_assert_str_eq(tls_error(p.s), "");
	/* The client checked the server; NONE asks no certificate back. */
	ck_assert(tls_peer_verified(p.c));
	ck_assert_ptr_nonnull(tls_peer_fingerprint(p.c));
	ck_assert_ptr_null(tls_peer_fingerprint(p.s));
	ck_assert_ptr_null(tls_peer_subject(p.s));
	ck_assert(!tls_peer_verified(p.s));

	send_and_check(p.c, p.s, 6);
	send_and_check(p.s, p.c, 200 * 1024);
	send_and_check(p.c, p.s, 70 * 1024);
	send_and_check(p.s, p.c, 1);
	pair_close(&p);
}
END_TEST

START_TEST(test_tls12_still_works)
{
	struct pair p;
	SSL_CTX *cctx = client_ctx(NULL);
	SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
	pair_connect(&p, server_ctx(CERTS_CLIENT_NONE), cctx);
	ck_assert_str_eq(tls_version(p.s), "TLSv1.2");
	/* Our default list: ECDHE with AEAD only. */
	ck_assert_ptr_nonnull(strstr(tls_cipher(p.s), "ECDHE-ECDSA-"));
	send_and_check(p.c, p.s, 100);
	pair_close(&p);
}
END_TEST

START_TEST(test_tls11_refused)
{
	struct pair p;
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	ck_assert_ptr_nonnull(cctx);
	/* Let the client really offer TLS 1.1 despite OpenSSL 3 defaults. */
	SSL_CTX_set_security_level(cctx, 0);
	ck_assert_int_eq(SSL_CTX_set_cipher_list(cctx, "DEFAULT:@SECLEVEL=0"), 1);
	SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(cctx, TLS1_1_VERSION);
	pair_open(&p, server_ctx(CERTS_CLIENT_NONE), cctx);
	pair_handshake(&p);
	ck_assert_int_eq(p.rs, TLS_FAIL);
	ck_assert_int_eq(p.rc, TLS_FAIL);
	ck_assert_msg(strstr(tls_error(p.s), "protocol") != NULL, "%s", tls_error(p.s));
	ck_assert(!tls_handshake_done(p.s));
	ck_assert_ptr_null(tls_version(p.s));
	/* A dead engine keeps failing with the first error. */
	ck_assert_int_eq(tls_handshake(p.s), TLS_FAIL);
	ck_assert_msg(strstr(tls_error(p.s), "protocol") != NULL, "%s", tls_error(p.s));
	pair_close(&p);
}
END_TEST

START_TEST(test_wrong_hostname)
{
	struct pair p;
	pair_open(&p, server_ctx(CERTS_CLIENT_NONE), client_ctx(NULL));
	ck_assert_int_eq(tls_set_hostname(p.c, "other.example.test"), TLS_OK);
	pair_handshake(&p);
	ck_assert_int_eq(p.rc, TLS_FAIL);
	ck_assert_msg(strstr(tls_error(p.c), "certificate verify failed (hostname mismatch)"),
		      "%s", tls_error(p.c));
	ck_assert_int_eq(p.rs, TLS_FAIL);
	pair_close(&p);
}
END_TEST

START_TEST(test_error_cleared_by_next_call)
{
	struct pair p;
	pair_open(&p, server_ctx(CERTS_CLIENT_NONE), client_ctx(NULL));
	ck_assert_int_eq(tls_write(p.c, "x", 1), TLS_FAIL);
	ck_assert_str_ne(tls_error(p.c), "");
	ck_assert_int_eq(tls_handshake(p.c), TLS_WANT_IO);
	ck_assert_str_eq(tls_error(p.c), "");
	ck_assert_int_eq(tls_set_hostname(p.s, HOST), TLS_FAIL);
	pair_handshake(&p);
	ck_assert_int_eq(p.rs, TLS_OK);
	ck_assert_int_eq(p.rc, TLS_OK);
	pair_close(&p);
}
END_TEST

/* ---- client certificates ------------------------------------------------ */

START_TEST(test_optional_with_cert)
{
	struct pair p;
	pair_connect(&p, server_ctx(CERTS_CLIENT_OPTIONAL), client_ctx("client"));
	ck_assert_str_eq(tls_peer_fingerprint(p.s), client_fp);
	ck_assert_uint_eq(strlen(client_fp), 64);
	ck_assert_str_eq(tls_peer_subject(p.s), "CN=alice,O=Postern Test");
	ck_assert_str_eq(tls_peer_subject(p.s), client_subject);
	ck_assert_str_eq(tls_peer_issuer(p.s), "CN=Postern Test CA,O=Postern Test");
	ck_assert(tls_peer_verified(p.s));
	pair_close(&p);
}
END_TEST

START_TEST(test_optional_without_cert)
{
	struct pair p;
	pair_connect(&p, server_ctx(CERTS_CLIENT_OPTIONAL), client_ctx(NULL));
	ck_assert_ptr_null(tls_peer_fingerprint(p.s));
	ck_assert_ptr_null(tls_peer_subject(p.s));
	ck_assert_ptr_null(tls_peer_issuer(p.s));
	ck_assert(!tls_peer_verified(p.s));
	send_and_check(p.c, p.s, 10);
	pair_close(&p);
}
END_TEST

START_TEST(test_optional_untrusted_cert)
{
	struct pair p;
	pair_connect(&p, server_ctx(CERTS_CLIENT_OPTIONAL), client_ctx("rogue"));
	ck_assert_str_eq(tls_peer_fingerprint(p.s), rogue_fp);
	ck_assert_str_eq(tls_peer_subject(p.s), "CN=mallory,O=Postern Test");
	ck_assert(!tls_peer_verified(p.s));
	pair_close(&p);
}
END_TEST

START_TEST(test_require_without_cert)
{
	struct pair p;
	char buf[64];
	size_t got;
	pair_open(&p, server_ctx(CERTS_CLIENT_REQUIRE), client_ctx(NULL));
	pair_handshake(&p);
	ck_assert_int_eq(p.rs, TLS_FAIL);
	ck_assert_str_ne(tls_error(p.s), "");
	/* In TLS 1.3 the client finishes first and hears the alert later. */
	if (p.rc == TLS_OK)
		ck_assert_int_eq(tls_read(p.c, buf, sizeof buf, &got), TLS_FAIL);
	else
		ck_assert_int_eq(p.rc, TLS_FAIL);
	pair_close(&p);
}
END_TEST

START_TEST(test_require_with_cert)
{
	struct pair p;
	pair_connect(&p, server_ctx(CERTS_CLIENT_REQUIRE), client_ctx("client"));
	ck_assert_str_eq(tls_peer_fingerprint(p.s), client_fp);
	ck_assert(tls_peer_verified(p.s));
	pair_close(&p);
}
END_TEST

START_TEST(test_require_untrusted_cert)
{
	struct pair p;
	pair_open(&p, server_ctx(CERTS_CLIENT_REQUIRE), client_ctx("rogue"));
	pair_handshake(&p);
	ck_assert_int_eq(p.rs, TLS_FAIL);
	ck_assert_msg(strstr(tls_error(p.s), "certificate verify failed ("), "%s", tls_error(p.s));
	pair_close(&p);
}
END_TEST

/* ---- hostile input ------------------------------------------------------ */

static void feed_noise(struct tls *t, unsigned seed, size_t len)
{
	unsigned char buf[4096];
	ck_assert_uint_le(len, sizeof buf);
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (unsigned char)(seed >> 16);
	}
	ck_assert_int_eq(tls_feed(t, buf, len), TLS_OK);
}

START_TEST(test_garbage_before_handshake)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	SSL_CTX *ctx = server_ctx(CERTS_CLIENT_OPTIONAL);
	struct tls *t = tls_new(ctx, TLS_SERVER);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(tls_feed(t, http, sizeof http - 1), TLS_OK);
	ck_assert_int_eq(tls_handshake(t), TLS_FAIL);
	ck_assert_str_ne(tls_error(t), "");
	tls_free(t);

	for (unsigned seed = 1; seed < 40; seed++) {
		t = tls_new(ctx, TLS_SERVER);
		ck_assert_ptr_nonnull(t);
		feed_noise(t, seed, 64 + seed * 97);
		int r = tls_handshake(t);
		ck_assert(r == TLS_FAIL || r == TLS_WANT_IO);
		tls_free(t);
	}
	SSL_CTX_free(ctx);
}
END_TEST

START_TEST(test_garbage_after_handshake)
{
	struct pair p;
	char buf[256];
	size_t got;
	pair_connect(&p, server_ctx(CERTS_CLIENT_NONE), client_ctx(NULL));
	feed_noise(p.s, 7, 2000);
	ck_assert_int_eq(tls_read(p.s, buf, sizeof buf, &got), TLS_FAIL);
	ck_assert_uint_eq(got, 0);
	ck_assert_str_ne(tls_error(p.s), "");
	ck_assert_int_eq(tls_write(p.s, "x", 1), TLS_FAIL);
	tls_shutdown(p.s); /* must be harmless on a dead engine */
	pair_close(&p);
}
END_TEST

/* ---- resumption and close ----------------------------------------------- */

/* Connects once, saves the session, connects again offering it. */
static void check_resumption(int max_version, const char *cert)
{
	struct pair p;
	char buf[16];
	size_t got;
	SSL_CTX *sctx = server_ctx(CERTS_CLIENT_OPTIONAL);
	SSL_CTX *cctx = client_ctx(cert);
	SSL_CTX_set_max_proto_version(cctx, max_version);
	SSL_CTX_up_ref(sctx);
	SSL_CTX_up_ref(cctx);

	pair_connect(&p, sctx, cctx);
	/* The TLS 1.3 tickets follow the handshake: let the client read them. */
	ck_assert_int_eq(tls_read(p.c, buf, sizeof buf, &got), TLS_WANT_IO);
	SSL_SESSION *sess = tls_get1_session(p.c);
	ck_assert_ptr_nonnull(sess);
	ck_assert(!tls_session_reused(p.s));
	pair_close(&p);

	pair_open(&p, sctx, cctx);
	ck_assert_int_eq(tls_set_session(p.c, sess), TLS_OK);
	SSL_SESSION_free(sess);
	pair_handshake(&p);
	ck_assert_msg(p.rs == TLS_OK && p.rc == TLS_OK, "%s / %s", tls_error(p.s), tls_error(p.c));
	ck_assert(tls_session_reused(p.s));
	ck_assert(tls_session_reused(p.c));
	/* The trace needs the client's identity on resumed sessions too. */
	if (cert) {
		ck_assert_str_eq(tls_peer_fingerprint(p.s), client_fp);
		ck_assert(tls_peer_verified(p.s));
	}
	send_and_check(p.c, p.s, 100);
	pair_close(&p);
}

START_TEST(test_resumption_tls13)
{
	check_resumption(TLS1_3_VERSION, NULL);
	check_resumption(TLS1_3_VERSION, "client");
}
END_TEST

START_TEST(test_resumption_tls12)
{
	check_resumption(TLS1_2_VERSION, NULL);
	check_resumption(TLS1_2_VERSION, "client");
}
END_TEST

START_TEST(test_close_notify)
{
	struct pair p;
	char buf[64];
	size_t got;
	int last;
	pair_connect(&p, server_ctx(CERTS_CLIENT_NONE), client_ctx(NULL));
	ck_assert_int_eq(tls_write(p.c, "QUIT\r\n", 6), TLS_OK);
	tls_shutdown(p.c);
	pump(p.c, p.s);
	ck_assert_uint_eq(read_all(p.s, buf, sizeof buf, &last), 6);
	ck_assert(memcmp(buf, "QUIT\r\n", 6) == 0);
	ck_assert_int_eq(last, TLS_CLOSED);
	ck_assert_int_eq(tls_read(p.s, buf, sizeof buf, &got), TLS_CLOSED);
	/* Half-closed: the server may still answer, then closes too. */
	ck_assert_int_eq(tls_write(p.s, "221 bye\r\n", 9), TLS_OK);
	tls_shutdown(p.s);
	ck_assert_uint_gt(tls_pending_output(p.s), 0);
	pump(p.s, p.c);
	ck_assert_uint_eq(read_all(p.c, buf, sizeof buf, &last), 9);
	ck_assert_int_eq(last, TLS_CLOSED);
	pair_close(&p);
}
END_TEST

/* ---- the certificate store ---------------------------------------------- */

static SSL_CTX *try_server(const char *cert, const char *key, const char *ca,
			   enum certs_client_verify v, const char *ciphers,
			   char *err, size_t errlen)
{
	struct certs_server_conf conf = {
		.cert_file = cert, .key_file = key, .ca_file = ca,
		.ciphers = ciphers, .client_verify = v,
	};
	return certs_server_ctx(&conf, err, errlen);
}

static void expect_error(SSL_CTX *ctx, const char *err, const char *needle)
{
	ck_assert_ptr_null(ctx);
	ck_assert_msg(strstr(err, needle) != NULL, "\"%s\" lacks \"%s\"", err, needle);
	ck_assert_ptr_null(strchr(err, '\n'));
	ck_assert_uint_eq(ERR_peek_error(), 0);
}

START_TEST(test_certs_errors)
{
	char err[512];
	const char *missing = pki_path("missing.pem");
	const char *cert = pki_path("server.pem"), *key = pki_path("server.key");
	SSL_CTX *ctx;

	ctx = try_server(missing, key, NULL, CERTS_CLIENT_NONE, NULL, err, sizeof err);
	expect_error(ctx, err, missing);
	ck_assert_msg(strstr(err, "No such file"), "%s", err);
	ctx = try_server(cert, missing, NULL, CERTS_CLIENT_NONE, NULL, err, sizeof err);
	expect_error(ctx, err, missing);
	ctx = try_server(cert, pki_path("client.key"), NULL, CERTS_CLIENT_NONE, NULL, err, sizeof err);
	expect_error(ctx, err, "does not match");
	ck_assert_ptr_nonnull(strstr(err, "client.key"));
	ctx = try_server(cert, pki_path("client.pem"), NULL, CERTS_CLIENT_NONE, NULL, err, sizeof err);
	expect_error(ctx, err, "client.pem");
	ctx = try_server(cert, key, missing, CERTS_CLIENT_OPTIONAL, NULL, err, sizeof err);
	expect_error(ctx, err, missing);
	ctx = try_server(cert, key, NULL, CERTS_CLIENT_REQUIRE, NULL, err, sizeof err);
	expect_error(ctx, err, "CA");
	ctx = try_server(cert, key, NULL, CERTS_CLIENT_NONE, "NO-SUCH-CIPHER", err, sizeof err);
	expect_error(ctx, err, "NO-SUCH-CIPHER");
	ctx = certs_client_ctx(true, missing, err, sizeof err);
	expect_error(ctx, err, missing);

	/* The happy paths, for contrast. */
	ctx = try_server(cert, key, NULL, CERTS_CLIENT_OPTIONAL, "ECDHE+AESGCM", err, sizeof err);
	ck_assert_msg(ctx != NULL, "%s", err);
	ck_assert(SSL_CTX_get_mode(ctx) & SSL_MODE_RELEASE_BUFFERS);
	ck_assert_int_eq(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	SSL_CTX_free(ctx);
	ctx = certs_client_ctx(false, NULL, err, sizeof err);
	ck_assert_ptr_nonnull(ctx);
	SSL_CTX_free(ctx);
}
END_TEST

START_TEST(test_certs_helpers)
{
	char out[65], small[8];
	ck_assert_int_eq(certs_fingerprint(NULL, out), -EINVAL);
	ck_assert_str_eq(out, "");
	for (const char *c = client_fp; *c; c++)
		ck_assert(strchr("0123456789abcdef", *c) != NULL);
	ck_assert_str_ne(client_fp, rogue_fp);

	X509_NAME *n = X509_NAME_new();
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"a,b\nc", -1, -1, 0);
	certs_name_oneline(n, out, sizeof out);
	ck_assert_ptr_null(strchr(out, '\n')); /* escaped: safe in a log line */
	ck_assert_ptr_nonnull(strstr(out, "CN=a\\,b"));
	certs_name_oneline(n, small, sizeof small);
	ck_assert_uint_eq(strlen(small), sizeof small - 1);
	certs_name_oneline(NULL, small, sizeof small);
	ck_assert_str_eq(small, "");
	X509_NAME_free(n);
}
END_TEST

static Suite *tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("engine");
	tcase_add_unchecked_fixture(tc, pki_setup, pki_teardown);
	tcase_set_timeout(tc, 60); /* sanitizers make key generation slow */
	tcase_add_test(tc, test_handshake_and_data);
	tcase_add_test(tc, test_tls12_still_works);
	tcase_add_test(tc, test_tls11_refused);
	tcase_add_test(tc, test_wrong_hostname);
	tcase_add_test(tc, test_error_cleared_by_next_call);
	tcase_add_test(tc, test_optional_with_cert);
	tcase_add_test(tc, test_optional_without_cert);
	tcase_add_test(tc, test_optional_untrusted_cert);
	tcase_add_test(tc, test_require_without_cert);
	tcase_add_test(tc, test_require_with_cert);
	tcase_add_test(tc, test_require_untrusted_cert);
	tcase_add_test(tc, test_garbage_before_handshake);
	tcase_add_test(tc, test_garbage_after_handshake);
	tcase_add_test(tc, test_resumption_tls13);
	tcase_add_test(tc, test_resumption_tls12);
	tcase_add_test(tc, test_close_notify);
	tcase_add_test(tc, test_certs_errors);
	tcase_add_test(tc, test_certs_helpers);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(tls_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
