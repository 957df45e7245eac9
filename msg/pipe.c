/*
 * pipe.c - a message's stages in their order: the bytes one stage emits are
 * the next one's input, the last one's go to the sink. Emitting is a plain
 * call: a stage that only looks hands its input on without a copy.
 *
 * Ownership: the pipe owns its stages (free() in msg_pipe_free).
 */
#include "msg/msg.h"

#include <stdlib.h>

#define MSG_STAGES_MAX 8

struct msg_link {
	struct msg_pipe *pipe;
	unsigned next;           /* the stage this link feeds; n: the sink */
};

struct msg_pipe {
	msg_emit_fn sink;
	void *sink_ctx;
	unsigned n;
	const struct msg_stage_ops *ops[MSG_STAGES_MAX];
	void *st[MSG_STAGES_MAX];
	struct msg_link links[MSG_STAGES_MAX + 1];
};

static int link_emit(void *ctx, const char *p, size_t n)
{
	struct msg_link *l = ctx;
	struct msg_pipe *pp = l->pipe;
	if (n == 0)
		return 0;
	if (l->next == pp->n)
		return pp->sink(pp->sink_ctx, p, n);
	return pp->ops[l->next]->feed(pp->st[l->next], p, n, link_emit, &pp->links[l->next + 1]);
}

struct msg_pipe *msg_pipe_new(msg_emit_fn sink, void *sink_ctx)
{
	struct msg_pipe *p = xcalloc(1, sizeof(*p));
	p->sink = sink;
	p->sink_ctx = sink_ctx;
	for (unsigned i = 0; i <= MSG_STAGES_MAX; i++)
		p->links[i] = (struct msg_link){ p, i };
	return p;
}

void msg_pipe_add(struct msg_pipe *p, const struct msg_stage_ops *ops, void *st)
{
	if (p->n == MSG_STAGES_MAX)
		fatal("msg_pipe: more than %d stages", MSG_STAGES_MAX);
	p->ops[p->n] = ops;
	p->st[p->n] = st;
	p->n++;
}

int msg_pipe_feed(struct msg_pipe *p, const char *data, size_t n)
{
	return link_emit(&p->links[0], data, n);
}

int msg_pipe_finish(struct msg_pipe *p)
{
	for (unsigned i = 0; i < p->n; i++) {
		if (!p->ops[i]->finish)
			continue;
		int rc = p->ops[i]->finish(p->st[i], link_emit, &p->links[i + 1]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

void msg_pipe_free(struct msg_pipe *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->n; i++)
		if (p->ops[i]->free)
			p->ops[i]->free(p->st[i]);
	free(p);
}
