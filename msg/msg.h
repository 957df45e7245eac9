/*
 * msg.h - the message as it streams from the DATA/BDAT decoder to the queue
 * file: a pipe of stages in a fixed order (header collector, the filter
 * and S/MIME stages to come, the trace mark), ending in a sink (the queue
 * file). Each stage passes bytes on with emit(), the same bytes when it
 * only looks at them (no copy) or bytes of its own, and may hold some
 * back until finish(). Nothing here blocks or knows a socket.
 *
 * Also the one reader of RFC 5322 header sections: the collector stage
 * that keeps a message's header section (up to a cap) while it streams,
 * and an iterator over the fields of a header section in memory.
 *
 * Ownership: a pipe owns the stages added to it (their free() runs in
 * msg_pipe_free()); the sink's context is the caller's.
 */
#ifndef POSTERN_MSG_H
#define POSTERN_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include "common/common.h"

/* 0, or a negative errno that ends the message (the sink could not write). */
typedef int (*msg_emit_fn)(void *ctx, const char *p, size_t n);

struct msg_stage_ops {
	const char *name;
	int (*feed)(void *st, const char *p, size_t n, msg_emit_fn emit, void *ctx);
	/* The end of the message: emit what was held back. Optional. */
	int (*finish)(void *st, msg_emit_fn emit, void *ctx);
	void (*free)(void *st);
};

struct msg_pipe;
struct msg_pipe *msg_pipe_new(msg_emit_fn sink, void *sink_ctx);
void msg_pipe_add(struct msg_pipe *p, const struct msg_stage_ops *ops, void *st);
int msg_pipe_feed(struct msg_pipe *p, const char *data, size_t n);
/* Finishes every stage in order, so that what one held back still passes
 * through the ones after it. */
int msg_pipe_finish(struct msg_pipe *p);
void msg_pipe_free(struct msg_pipe *p);

/* ---- header sections ---------------------------------------------------- */

/* The one definition of a header section, which the trace scanner (its
 * streaming form), the trace lookup, the header From check and the
 * collector below share, so that they agree on which fields a message
 * has: the run of field lines and their continuations from the start;
 * a field line is a name of printable non-space characters, optional
 * blanks (RFC 5322 obsolete syntax) and a colon, the colon within
 * MSG_FIELD_NAME_MAX bytes; a continuation starts with a blank and
 * follows a field. The empty line ends the section and is in neither
 * part; any other line ends it too and is the body's first. Lines end
 * in LF, with or without CR (a report saved from a mail client). */
#define MSG_FIELD_NAME_MAX 998

/* The offset of the colon of a field line (line[0..n), no line end), or 0
 * when it is none; *nlen gets the name's length. */
size_t msg_field_colon(const char *line, size_t n, size_t *nlen);
/* Cuts an entity into its header section [0, *hlen) and its body [*body,
 * len). */
void msg_header_split(const char *p, size_t len, size_t *hlen, size_t *body);

/* Keeps the header section as it streams past (it passes every byte on
 * untouched), at most cap bytes, beyond which `cut` says that the section
 * was longer than what is kept, and nothing about it can be checked
 * whole. */
struct msg_headers {
	struct buf block;        /* the fields, with their line ends */
	size_t cap;
	size_t scanned;          /* complete lines of block already judged */
	bool seen_field;
	bool done;               /* the end of the section was seen */
	bool cut;
};
void msg_headers_init(struct msg_headers *h, size_t cap);
void msg_headers_free(struct msg_headers *h);
/* A stage that fills h; h belongs to the caller and outlives the pipe. */
extern const struct msg_stage_ops msg_headers_stage;

/* One field of a header section in memory. */
struct msg_field {
	const char *name;        /* not NUL-terminated */
	size_t name_len;
	const char *value;       /* after the colon, folding included, up to its
	                          * last line end (excluded) */
	size_t value_len;
};
/* Steps through the fields of section[0..len) (as msg_header_split cut
 * it) from *pos (start at 0): returns true with *f filled, false at the
 * end. Lines that are no field are skipped. */
bool msg_field_next(const char *section, size_t len, size_t *pos, struct msg_field *f);
/* Whether f is named name (ASCII case-insensitive). */
bool msg_field_is(const struct msg_field *f, const char *name);
/* The first field named name. */
bool msg_field_find(const char *section, size_t len, const char *name, struct msg_field *f);
/* The unfolded value: line ends of continuation lines removed (RFC 5322
 * 2.2.3), appended to out. */
void msg_field_unfold(const struct msg_field *f, struct buf *out);

/* ---- MIME (mime.c) --------------------------------------------------------- */

#define MSG_MIME_BOUNDARY_MAX 200

/* What the trace lookup needs of Content-Type and Content-Disposition
 * (RFC 2045 5.1, comments and all). */
struct msg_mime_type {
	char type[32];           /* lowercase */
	char sub[64];
	char boundary[MSG_MIME_BOUNDARY_MAX + 1];
	bool eml;                /* a name or filename parameter ending in ".eml" */
};
/* The entity's type from its header section; dflt ("text/plain",
 * "message/rfc822" in a digest) when it has none or an unparseable one. */
void msg_mime_type(const char *hdr, size_t hlen, const char *dflt, struct msg_mime_type *t);
/* message/rfc822, message/global, the header-only forms, or an .eml. */
bool msg_mime_is_message(const struct msg_mime_type *t);

/* Walks an entity for the messages it encloses: each part of a multipart
 * (nested), each message-like part decoded from base64 or quoted-printable
 * when so encoded, given to fn with its nesting depth, down to max_depth.
 * A multipart without its close delimiter (reports are often cut short)
 * still yields its last part. Decoded copies are freed after fn returns. */
typedef void (*msg_mime_fn)(void *ctx, const char *msg, size_t len, int depth);
void msg_mime_walk(const char *hdr, size_t hlen, const char *body, size_t blen,
                   const char *dflt, int depth, int max_depth, msg_mime_fn fn, void *ctx);

#endif
