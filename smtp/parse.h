/*
 * smtp_parse.h - pure SMTP input handling: the command line reader, the
 * command parser (RFC 5321 section 4.1 with ESMTP parameters) and the DATA
 * decoder. No I/O, no uv.h: easy to unit-test and to fuzz.
 *
 * Ownership: nothing here allocates except the line reader's buffer (freed
 * by smtp_reader_free); parsed commands point into the caller's line.
 */
#ifndef POSTERN_SMTP_PARSE_H
#define POSTERN_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/common.h"

/* ---- command line reader ------------------------------------------- */

enum smtp_line_result {
	SMTP_LINE_NONE = 0,    /* need more input */
	SMTP_LINE_OK = 1,      /* a line (without CRLF) is ready */
	SMTP_LINE_TOO_LONG = 2,/* line exceeded the limit; skipped up to its CRLF
	                        * (reported once, maybe before that CRLF came) */
	SMTP_LINE_BARE_LF = 3, /* LF without CR, or CR not followed by LF */
};

struct smtp_reader {
	struct buf in;     /* bytes received; in.data[0..off) already handed out */
	size_t off;
	size_t max_line;   /* longest accepted line, CRLF included */
	bool discarding;   /* skipping the rest of an overlong line */
	bool discard_cr;   /* while discarding: the last byte seen was CR */
};

void smtp_reader_init(struct smtp_reader *r, size_t max_line);
void smtp_reader_free(struct smtp_reader *r);
void smtp_reader_push(struct smtp_reader *r, const void *data, size_t len);
/* Takes the next line. On SMTP_LINE_OK, *line points to the NUL-terminated
 * line inside r (valid until the next smtp_reader_* call) and *len is its
 * length; the line may contain NUL bytes (smtp_parse rejects them). Returns
 * SMTP_LINE_NONE once everything is consumed, and then holds no memory. */
int smtp_reader_next(struct smtp_reader *r, char **line, size_t *len);
/* Bytes received but not yet consumed (for STARTTLS: must be zero, or
 * discarded). */
size_t smtp_reader_pending(const struct smtp_reader *r);
void smtp_reader_discard(struct smtp_reader *r);
/* Raw access for DATA and BDAT content, which is not line-based: the bytes
 * not yet consumed, and consuming n of them. */
const char *smtp_reader_peek(const struct smtp_reader *r, size_t *len);
void smtp_reader_skip(struct smtp_reader *r, size_t n);

/* ---- commands --------------------------------------------------------- */

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO, SMTP_VERB_EHLO, SMTP_VERB_MAIL, SMTP_VERB_RCPT,
	SMTP_VERB_DATA, SMTP_VERB_BDAT, SMTP_VERB_RSET, SMTP_VERB_NOOP,
	SMTP_VERB_QUIT, SMTP_VERB_VRFY, SMTP_VERB_EXPN, SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS, SMTP_VERB_AUTH,
	SMTP_VERB_COUNT
};

enum smtp_body { SMTP_BODY_UNSET = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };

struct smtp_cmd {
	enum smtp_verb verb;
	char *arg;           /* everything after the verb and the spaces after it,
	                      * or ""; MAIL/RCPT/BDAT/AUTH cut it into fields */

	/* HELO/EHLO */
	char *domain;

	/* MAIL/RCPT: the path between < and >, "" for the null path; a source
	 * route (<@a,@b:user@c>) is dropped. */
	char *path;
	/* The path has octets >= 0x80 (well-formed UTF-8). MAIL checks it
	 * against its own SMTPUTF8; for RCPT the session must check it against
	 * the transaction's (553 5.6.7 without SMTPUTF8). */
	bool non_ascii;
	/* MAIL parameters */
	bool has_size;
	uint64_t size;
	enum smtp_body body;
	bool smtputf8;
	char *auth_param;    /* AUTH=<...> as given, xtext undecoded */
	char *ret;           /* RET=FULL|HDRS */
	char *envid;         /* ENVID=... */
	/* RCPT parameters */
	char *notify;        /* NOTIFY=... */
	char *orcpt;         /* ORCPT=... */

	/* BDAT */
	uint64_t chunk_size;
	bool last;

	/* AUTH */
	char *mech;
	char *initial;       /* NULL when absent */
};

/* Result of parsing: 0, or one of these, which the session turns into the
 * reply shown. */
enum smtp_parse_error {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_UNKNOWN_VERB,     /* 500 5.5.2 Command not recognized */
	SMTP_PARSE_SYNTAX,           /* 501 5.5.4 Syntax error in parameters */
	SMTP_PARSE_BAD_PATH,         /* 501 5.1.3 / 5.1.7 Bad address syntax */
	SMTP_PARSE_UNKNOWN_PARAM,    /* 555 5.5.4 Unsupported parameter */
	SMTP_PARSE_NON_ASCII,        /* 553 5.6.7 non-ASCII address without SMTPUTF8 */
};

/* Parses one command line (no CRLF) in place: writes NULs into line, and
 * cmd points into it; line[len] must be '\0' (the reader guarantees it).
 * Log the line before parsing it. cmd->verb is set even when an error is
 * returned, unless the verb is unknown. */
int smtp_parse(char *line, size_t len, struct smtp_cmd *cmd);

/* Keyword table for error messages and logs: "MAIL", "RCPT", ... */
const char *smtp_verb_name(enum smtp_verb verb);

/* Checks that path is a syntactically valid RFC 5321 Mailbox (local@domain,
 * domain or address literal; quoted local parts allowed). utf8 allows
 * RFC 6531 UTF-8 in both parts. */
bool smtp_valid_mailbox(const char *path, bool utf8);

/* ---- DATA decoder --------------------------------------------------- */

enum smtp_data_result {
	SMTP_DATA_MORE = 0,       /* all input consumed, need more */
	SMTP_DATA_END = 1,        /* end-of-data seen; *used says how far */
};

enum smtp_data_flag {
	SMTP_DATA_ERR_BARE_LF = 1 << 0,   /* LF not preceded by CR */
	SMTP_DATA_ERR_BARE_CR = 1 << 1,   /* CR not followed by LF */
	SMTP_DATA_ERR_LONG_LINE = 1 << 2, /* a line longer than max_line */
	SMTP_DATA_ERR_TOO_BIG = 1 << 3,   /* more than max_size bytes */
	/* NUL is not allowed in 7bit or 8bit content (RFC 2045 2.7, 2.8) and
	 * BINARYMIME is not offered; a lenient next hop may take it as a line
	 * end (smuggling with "\r\n\0.\r\n"). */
	SMTP_DATA_ERR_NUL = 1 << 4,
};

/* The decoder removes dot-stuffing and finds the terminating CRLF.CRLF. It
 * never treats anything else (LF.LF, CR.CR, LF.CRLF, ...) as the end. Once
 * an error flag is set it keeps scanning for the real end but stops emitting
 * data, so the session can answer after the end-of-data. */
struct smtp_data {
	int state;
	size_t line_len;
	size_t max_line;     /* 0: no limit; counted without CRLF */
	uint64_t max_size;   /* 0: no limit */
	uint64_t size;       /* message bytes decoded so far (after unstuffing),
	                      * still counted after emitting stopped */
	unsigned flags;      /* smtp_data_flag */
};

void smtp_data_init(struct smtp_data *d, size_t max_line, uint64_t max_size);
/* Decodes in[0..len). Output bytes are appended to out. *used receives the
 * number of input bytes consumed (all of them unless SMTP_DATA_END, where
 * the rest belongs to the next command). Once a flag is set, out holds an
 * unspecified prefix of the message: discard it. */
int smtp_data_feed(struct smtp_data *d, const char *in, size_t len, size_t *used,
                   struct buf *out);

/* ---- BDAT content scanner ---------------------------------------------- */

/* BDAT content is not dot-stuffed and has no end marker, but it is relayed
 * into someone's DATA stream, so the same rules hold: no bare CR or LF, no
 * NUL, no line longer than max_line (0: no limit; without CRLF). Flags
 * accumulate over the chunks of one message; the size limit is the
 * caller's, who knows the chunk sizes before the bytes come. */
struct smtp_bdat {
	size_t line_len;
	size_t max_line;
	bool prev_cr;        /* the last byte seen was CR */
	unsigned flags;      /* smtp_data_flag */
};

void smtp_bdat_init(struct smtp_bdat *b, size_t max_line);
void smtp_bdat_feed(struct smtp_bdat *b, const char *p, size_t n);
/* After the LAST chunk: a CR at the very end is bare. */
void smtp_bdat_finish(struct smtp_bdat *b);

#endif
