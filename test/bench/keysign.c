/*
 * keysign.c - what keeping the TLS private keys in a process of their own
 * (OpenSMTPD's `ca` process) would cost per handshake: one signature
 * (TLS 1.3 CertificateVerify: SHA-256 over ~130 bytes, ECDSA P-256 or
 * RSA-PSS 2048) done in process, against the same signature asked of
 * another process over a socketpair and answered, and the bare round trip.
 *
 *     test/bench/build.sh && test/bench/keysign [seconds per measurement]
 *
 * Prints microseconds per operation, the best of three runs of each.
 */
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CONTENT 130
#define SIG_MAX 512

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t sign(EVP_PKEY *key, const unsigned char *msg, size_t len, unsigned char *sig)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	size_t siglen = SIG_MAX;
	if (EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, key) != 1)
		abort();
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
		abort();
	if (EVP_DigestSign(md, sig, &siglen, msg, len) != 1)
		abort();
	EVP_MD_CTX_free(md);
	return siglen;
}

/* The key process: a request is the content, the answer its signature (or
 * the content back, for the bare round trip). */
static void key_process(int fd, EVP_PKEY *key, int echo)
{
	unsigned char msg[CONTENT], sig[SIG_MAX];
	ssize_t n;
	while ((n = read(fd, msg, sizeof(msg))) > 0) {
		size_t len = echo ? (size_t)n : sign(key, msg, (size_t)n, sig);
		if (write(fd, echo ? msg : sig, len) != (ssize_t)len)
			break;
	}
	_exit(0);
}

typedef void (*op_fn)(void *arg);

struct remote {
	int fd;
};

static void op_local(void *arg)
{
	unsigned char msg[CONTENT] = { 1 }, sig[SIG_MAX];
	sign(arg, msg, sizeof(msg), sig);
}

static void op_remote(void *arg)
{
	struct remote *r = arg;
	unsigned char msg[CONTENT] = { 1 }, sig[SIG_MAX];
	if (write(r->fd, msg, sizeof(msg)) != sizeof(msg) || read(r->fd, sig, sizeof(sig)) <= 0)
		abort();
}

static double per_op_us(op_fn fn, void *arg, double seconds)
{
	double best = 1e30;
	for (int run = 0; run < 3; run++) {
		long n = 0;
		double start = now(), t;
		do {
			for (int i = 0; i < 16; i++)
				fn(arg);
			n += 16;
			t = now() - start;
		} while (t < seconds);
		if (t / n < best)
			best = t / n;
	}
	return best * 1e6;
}

static pid_t spawn(EVP_PKEY *key, int echo, struct remote *r)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		key_process(sv[1], key, echo);
	}
	close(sv[1]);
	r->fd = sv[0];
	return pid;
}

static void finish(pid_t pid, struct remote *r)
{
	close(r->fd);
	waitpid(pid, NULL, 0);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 1.0;
	struct {
		const char *name;
		EVP_PKEY *key;
	} keys[] = {
		{ "ECDSA P-256", EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256") },
		{ "RSA-2048 PSS", EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048) },
	};
	struct remote r;
	pid_t pid = spawn(NULL, 1, &r);
	printf("bare round trip over a socketpair: %.1f us\n", per_op_us(op_remote, &r, seconds));
	finish(pid, &r);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (!keys[i].key)
			abort();
		double local = per_op_us(op_local, keys[i].key, seconds);
		pid = spawn(keys[i].key, 0, &r);
		double remote = per_op_us(op_remote, &r, seconds);
		finish(pid, &r);
		printf("%-13s in process %7.1f us   in a key process %7.1f us   (%+.1f us, %+.0f%%)\n",
		       keys[i].name, local, remote, remote - local, 100 * (remote - local) / local);
		EVP_PKEY_free(keys[i].key);
	}
	return 0;
}
