/*
 * common.h - the pieces every module may use: growable buffers, logging,
 * string helpers and unique ids. Nothing here knows SMTP.
 *
 * Ownership: a struct buf owns its data; buf_free() releases it. Strings
 * returned by str_dup()/str_printf() belong to the caller (free()).
 */
#ifndef POSTERN_COMMON_H
#define POSTERN_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* ---- buffers ------------------------------------------------------- */

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
/* Aborts on allocation failure: a daemon out of memory cannot recover. */
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Releases the memory of an empty buffer (idle connections stay small). */
void buf_shrink(struct buf *b);
/* The same for buffers that may hold secrets (AUTH lines): no byte they
 * held is left behind in freed memory or past the end. */
void buf_append_wiped(struct buf *b, const void *data, size_t len);
void buf_consume_wiped(struct buf *b, size_t n);
void buf_free_wiped(struct buf *b);

/* ---- logging --------------------------------------------------------- */

enum log_level { LOG_LEVEL_ERR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_open(const char *ident, bool use_syslog, enum log_level level);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);
/* One line per event, key=value pairs, e.g. log_info("event=connect sid=%s", id). */
void log_msg(enum log_level level, const char *fmt, ...) PRINTF_LIKE(2, 3);
#define log_err(...) log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LEVEL_DEBUG)) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)
/* A value a client (or a peer, or a file) controls, for a log line: always
 * in double quotes, with '"', '\\' and control bytes escaped ("\\n", "\\x01"),
 * so that no value can end its field or start a key of its own; NULL is an
 * unquoted "-". Values longer than LOG_Q_MAX bytes are cut and end in "...".
 * The result lives in a per-thread ring of LOG_Q_SLOTS buffers: pass it to
 * one log call, never keep it. */
#define LOG_Q_MAX 400
#define LOG_Q_SLOTS 12
const char *log_q(const char *s);
const char *log_qn(const char *s, size_t n);
/* The same escaping into a buffer of the caller's (quotes included). */
void log_quote(struct buf *out, const char *s, size_t n);
/* A broken invariant: log and abort. */
void fatal(const char *fmt, ...) PRINTF_LIKE(1, 2) __attribute__((noreturn));

/* ---- strings ------------------------------------------------------- */

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *str_dup(const char *s);
char *str_ndup(const char *s, size_t n);
char *str_printf(const char *fmt, ...) PRINTF_LIKE(1, 2);
size_t str_lcpy(char *dst, const char *src, size_t size);
bool str_case_prefix(const char *s, const char *prefix);
/* Parses "10", "10k", "50M", "1G" (binary multiples). Returns 0 or -EINVAL. */
int str_parse_size(const char *s, uint64_t *out);
/* Parses "30", "30s", "5m", "2h", "3d" into seconds. Returns 0 or -EINVAL. */
int str_parse_duration(const char *s, uint64_t *out);
/* Copies s into dst (size > 0) replacing anything unsafe in a log line. */
void str_sanitize(char *dst, size_t size, const char *s, size_t len);

/* ---- codec (codec.c): the one hex, base64 and UTF-8 of the tree ----- */

/* Lowercase hex of in[0..n) into out (2n + 1 bytes, NUL-terminated). */
void codec_hex(const void *in, size_t n, char *out);
char codec_hexdigit(unsigned v);
/* The value of a hex digit, or -1. */
int codec_hexval(int c);
/* The value of a base64 character (RFC 4648 alphabet; with url_too also the
 * URL-safe '-' and '_'), or -1. */
int codec_b64val(int c, bool url_too);
/* Padded base64 of in[0..n) into out (4 * ceil(n / 3) + 1 bytes); returns
 * the length. */
size_t codec_b64_encode(const void *in, size_t n, char *out);
/* Decodes into out (max bytes); returns the length or -1. Strict by
 * default (RFC 4648: the alphabet, padding only at the end); LENIENT as
 * MIME receivers are (RFC 2045 6.8: other characters skipped, '=' ends
 * the data); URL also takes '-' and '_'. */
enum { CODEC_B64_LENIENT = 1, CODEC_B64_URL = 2 };
long codec_b64_decode(const char *s, size_t n, void *out, size_t max, unsigned flags);
/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF), 0 if there is none; s is
 * NUL-terminated (NUL is no continuation byte: never reads past it). */
size_t codec_utf8_len(const char *s);
bool codec_utf8_valid(const char *s);

/* ---- ids ------------------------------------------------------------- */

/* Queue ids: 16 characters [0-9A-Z], sortable by time, unique per process
 * and across restarts. out must hold ID_LEN + 1 bytes. */
#define ID_LEN 16
void id_queue(char out[ID_LEN + 1]);
/* Session ids: short, unique per process run. */
uint64_t id_session(void);

/* ---- files ----------------------------------------------------------- */

/* Writes all of buf or returns -errno. */
int file_write_all(int fd, const void *buf, size_t len);
/* fsync() the directory holding path (or path itself when it is one). */
int file_sync_dir(const char *dir);
/* mkdir -p with mode; returns 0 or -errno. */
int file_mkdirs(const char *path, mode_t mode);

#endif
