/*
 * keys.c - trace ids and the key file that signs trace headers.
 *
 * trace_keys_load() reads "<key-id> <secret>" lines; the array it returns
 * belongs to the caller (free(); wipe it first with OPENSSL_cleanse if the
 * memory may be reused while the process lives). Secrets never appear in
 * error messages.
 */
#include "trace/trace.h"
#include "trace/header_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

/* 48 bits of milliseconds, then 80 random bits (the layout of a ULID).
 * The time in front makes ids of the same moment share a prefix, so that
 * the trace store's index on them grows at one end instead of touching a
 * random page per message; 80 bits keep them unguessable. */
void trace_new_id(char out[TRACE_ID_LEN + 1])
{
	unsigned char r[16];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (int i = 0; i < 6; i++)
		r[i] = (unsigned char)(ms >> (40 - 8 * i));
	if (RAND_bytes(r + 6, sizeof(r) - 6) != 1)
		fatal("trace: RAND_bytes failed");
	/* 128 bits in 26 groups of 5, the last padded with two zero bits. */
	unsigned acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < sizeof(r); i++) {
		acc = (acc << 8) | r[i];
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			out[o++] = b32[(acc >> bits) & 31];
		}
	}
	if (bits > 0)
		out[o++] = b32[(acc << (5 - bits)) & 31];
	out[o] = '\0';
}

/* Hex is tried first: a run of hex digits is also valid base64, and a
 * secret written as hex is by far the more common. Returns the decoded
 * length, or -1; decodes at most max bytes (longer is an error). */
static long decode_secret(const char *s, size_t n, unsigned char *out, size_t max)
{
	bool hex = n % 2 == 0;
	for (size_t i = 0; hex && i < n; i++)
		hex = codec_hexval((unsigned char)s[i]) >= 0;
	if (hex) {
		if (n / 2 > max)
			return -1;
		for (size_t i = 0; i < n; i += 2)
			out[i / 2] = (unsigned char)(codec_hexval((unsigned char)s[i]) << 4 |
			                             codec_hexval((unsigned char)s[i + 1]));
		return (long)(n / 2);
	}
	/* Base64, standard or URL alphabet, padding optional but exact, and
	 * no stray trailing bits (likely a typo). */
	return codec_b64_decode(s, n, out, max, CODEC_B64_URL);
}

static bool is_space(int c)
{
	return c == ' ' || c == '\t';
}

/* Parses one line into k. Returns NULL or the reason it is wrong. */
static const char *parse_line(char *line, size_t len, struct trace_key *k)
{
	char *p = line, *end = line + len;
	while (p < end && is_space(*p))
		p++;
	char *id = p;
	while (p < end && !is_space(*p))
		p++;
	size_t idlen = (size_t)(p - id);
	while (p < end && is_space(*p))
		p++;
	char *sec = p;
	while (p < end && !is_space(*p))
		p++;
	size_t seclen = (size_t)(p - sec);
	while (p < end && is_space(*p))
		p++;
	if (seclen == 0)
		return "expected \"<key-id> <secret>\"";
	if (p < end)
		return "unexpected text after the secret";
	if (!trace__key_id_valid(id, idlen))
		return "key id must be 1-32 characters of [A-Za-z0-9._-]";
	long n = decode_secret(sec, seclen, k->key, sizeof(k->key));
	if (n < 0)
		return "secret is neither hex nor base64, or longer than 64 bytes";
	if (n < 16)
		return "secret shorter than 16 bytes";
	memcpy(k->id, id, idlen);
	k->id[idlen] = '\0';
	k->keylen = (size_t)n;
	return NULL;
}

int trace_keys_load(const char *path, struct trace_key **keys, size_t *nkeys,
                    char *err, size_t errlen)
{
	struct trace_key *arr = NULL;
	size_t n = 0, cap = 0;
	char *line = NULL;
	size_t linecap = 0;
	unsigned lineno = 0;
	int ret = -1;

	*keys = NULL;
	*nkeys = 0;
	FILE *fp = fopen(path, "re");
	if (!fp) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fileno(fp), &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "%s: mode %04o lets group or others read the keys (chmod 600)",
		         path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	ssize_t got;
	while ((got = getline(&line, &linecap, fp)) >= 0) {
		lineno++;
		size_t len = (size_t)got;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		size_t i = 0;
		while (i < len && is_space(line[i]))
			i++;
		if (i == len || line[i] == '#')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			struct trace_key *grown = xcalloc(cap, sizeof(*grown));
			if (arr) {
				memcpy(grown, arr, n * sizeof(*arr));
				OPENSSL_cleanse(arr, n * sizeof(*arr));
				free(arr);
			}
			arr = grown;
		}
		const char *why = parse_line(line, len, &arr[n]);
		OPENSSL_cleanse(line, linecap);
		if (why) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			goto out;
		}
		for (size_t j = 0; j < n; j++) {
			if (strcmp(arr[j].id, arr[n].id) == 0) {
				snprintf(err, errlen, "%s:%u: duplicate key id \"%s\"", path, lineno,
				         arr[n].id);
				goto out;
			}
		}
		n++;
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (n == 0) {
		snprintf(err, errlen, "%s: no keys", path);
		goto out;
	}
	*keys = arr;
	*nkeys = n;
	arr = NULL;
	ret = 0;
out:
	if (arr) {
		OPENSSL_cleanse(arr, cap * sizeof(*arr));
		free(arr);
	}
	if (line) {
		OPENSSL_cleanse(line, linecap);
		free(line);
	}
	fclose(fp);
	return ret;
}
