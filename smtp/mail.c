/*
 * mail.c - MAIL FROM and RCPT TO (RFC 5321 4.1.1.2, 4.1.1.3): what the
 * engine itself refuses (sequence, parameters it does not offer, SIZE
 * over the limit), then the hooks of HOOK_MAIL / HOOK_RCPT decide (DNSBL,
 * sender ownership, relay rules, rates), then the transaction grows.
 */
#include "smtp/smtp_int.h"

#include <stdlib.h>
#include <string.h>

int smtp__check_mail(struct smtp_session *s, const struct smtp_cmd *cmd, enum smtp_reply_id *id)
{
	if (s->tx.active)
		*id = SMTP_R_NESTED_MAIL;
	else if (cmd->ret || cmd->envid)
		*id = SMTP_R_DSN_PARAM;
	else if (cmd->has_size && cmd->size > s->cfg->max_message_size)
		*id = SMTP_R_SIZE;
	else if (cmd->body == SMTP_BODY_BINARYMIME)
		*id = SMTP_R_BINARYMIME;
	else
		return 0;
	return -1;
}

void smtp__proceed_mail(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct smtp_tx *tx = &s->tx;
	smtp__tx_reset(s); /* a refused BDAT may have left marks */
	tx->active = true;
	id_queue(tx->qid);
	tx->from = str_dup(cmd->path);
	tx->smtputf8 = cmd->smtputf8;
	tx->eightbit = cmd->body == SMTP_BODY_8BITMIME;
	tx->mail_size = cmd->has_size ? cmd->size : 0;
	log_info("event=mail sid=%s qid=%s from=%s size=%llu", s->sid, tx->qid, log_q(tx->from),
	         (unsigned long long)cmd->size);
	smtp__observe_ok(s, HOOK_MAIL, cmd->path);
	smtp__send(s, 250, "2.1.0", "Ok");
}

int smtp__check_rcpt(struct smtp_session *s, const struct smtp_cmd *cmd, enum smtp_reply_id *id)
{
	if (!s->tx.active)
		*id = SMTP_R_NEED_MAIL;
	else if (cmd->non_ascii && !s->tx.smtputf8)
		*id = SMTP_R_NON_ASCII;
	else if (cmd->notify || cmd->orcpt)
		*id = SMTP_R_DSN_PARAM;
	else
		return 0;
	return -1;
}

void smtp__proceed_rcpt(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct smtp_tx *tx = &s->tx;
	if (tx->nrcpts == tx->rcpt_cap) {
		tx->rcpt_cap = tx->rcpt_cap ? tx->rcpt_cap * 2 : 4;
		tx->rcpts = xrealloc(tx->rcpts, tx->rcpt_cap * sizeof(char *));
	}
	tx->rcpts[tx->nrcpts++] = str_dup(cmd->path);
	log_info("event=rcpt sid=%s qid=%s to=%s", s->sid, tx->qid, log_q(cmd->path));
	smtp__observe_ok(s, HOOK_RCPT, cmd->path);
	smtp__send(s, 250, "2.1.5", "Ok");
}
