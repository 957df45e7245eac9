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

/* Keeps the header section as it streams past (it passes every byte on
 * untouched): up to the empty line that ends it, CRLF or LF, or to the end
 * of a message that has no body; at most cap bytes, beyond which `cut` says
 * that the section was longer than what is kept, and nothing about it can
 * be checked whole. */
struct msg_headers {
	struct buf block;        /* the fields, with their line ends */
	size_t cap;
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
	const char *raw;         /* the whole field, line ends included */
	size_t raw_len;
};
/* Steps through the fields of section[0..len) from *pos (start at 0):
 * returns true with *f filled, false at the empty line or the end. A line
 * that is not a field (no colon, or a continuation with no field to
 * continue) is skipped. */
bool msg_field_next(const char *section, size_t len, size_t *pos, struct msg_field *f);
/* Whether f is named name (ASCII case-insensitive). */
bool msg_field_is(const struct msg_field *f, const char *name);
/* The unfolded value: line ends of continuation lines removed (RFC 5322
 * 2.2.3), appended to out. */
void msg_field_unfold(const struct msg_field *f, struct buf *out);

#endif
