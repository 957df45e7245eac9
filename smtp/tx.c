/*
 * tx.c - the transaction's one reset: after the message (accepted or not),
 * RSET, HELO/EHLO, STARTTLS, a new MAIL, and the session's end. What the
 * session still holds of the queue (an uncommitted file) goes back to it.
 */
#include "smtp/smtp_int.h"

#include <stdlib.h>
#include <string.h>

void smtp__tx_reset(struct smtp_session *s)
{
	struct smtp_tx *tx = &s->tx;
	if (tx->file)
		s->cfg->queue->abort(s->cfg->queue_ctx, tx->file);
	free(tx->from);
	for (size_t i = 0; i < tx->nrcpts; i++)
		free(tx->rcpts[i]);
	free(tx->rcpts);
	msg_pipe_free(tx->pipe);
	msg_headers_free(&tx->headers);
	buf_free(&tx->body);
	buf_free(&tx->out);
	/* A rider is the queue's once handed to a commit (and then NULL here). */
	if (tx->rider)
		s->cfg->queue->drop_rider(s->cfg->queue_ctx, tx->rider);
	memset(tx, 0, sizeof(*tx));
	hook_facts_clear(&s->facts, false);
}
