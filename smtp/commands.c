/*
 * commands.c - the command table (one row per verb: when it is allowed, a
 * pure check, the phase whose hooks run, the step that does the work),
 * the dispatcher that walks it, and the small verbs: HELO, EHLO, RSET,
 * NOOP, QUIT, VRFY, EXPN, HELP, STARTTLS. MAIL and RCPT are in mail.c,
 * AUTH in auth.c, DATA and BDAT in data.c.
 *
 * A command whose checks answer later is held: its line is copied and its
 * parse moved onto the copy, since the reader's buffer moves on.
 */
#include "smtp/smtp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the small verbs ------------------------------------------------------------- */

static void set_helo(struct smtp_session *s, const char *domain, bool esmtp)
{
	free(s->helo);
	s->helo = str_dup(domain);
	s->esmtp = esmtp;
	smtp__tx_reset(s);
}

static bool offers_auth(const struct smtp_session *s)
{
	return s->cfg->mode != HOOK_MODE_MX && smtp__tls_active(s) && !s->account &&
	       s->cfg->auth_mechs && s->cfg->auth_mechs[0];
}

static void proceed_helo(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	set_helo(s, cmd->domain, false);
	smtp__send(s, 250, NULL, "%s", s->cfg->hostname);
}

static void proceed_ehlo(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	struct buf b;
	buf_init(&b);
	set_helo(s, cmd->domain, true);
	buf_printf(&b, "%s\nPIPELINING\nSIZE %llu\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\nCHUNKING",
	           s->cfg->hostname, (unsigned long long)s->cfg->max_message_size);
	if (!s->tls_started && s->cfg->mode != HOOK_MODE_SMTPS)
		buf_puts(&b, "\nSTARTTLS");
	if (offers_auth(s))
		buf_printf(&b, "\nAUTH %s", s->cfg->auth_mechs);
	smtp__send(s, 250, NULL, "%s", b.data);
	buf_free(&b);
}

static void proceed_rset(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp__tx_reset(s);
	smtp__send(s, 250, "2.0.0", "Ok");
}

static void proceed_noop(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp__send(s, 250, "2.0.0", "Ok");
}

static void proceed_quit(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp__send(s, 221, "2.0.0", "Bye");
	smtp__close(s, true);
}

static void proceed_vrfy(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	/* RFC 5321 3.5.3: 252 when we will not verify but will try delivery. */
	smtp__send(s, 252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

static int check_expn(struct smtp_session *s, const struct smtp_cmd *cmd, enum smtp_reply_id *id)
{
	*id = SMTP_R_EXPN;
	return -1;
}

static void proceed_help(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp__send(s, 214, "2.0.0", "Postern: see RFC 5321 and https://www.rfc-editor.org/rfc/rfc5321");
}

static int check_starttls(struct smtp_session *s, const struct smtp_cmd *cmd,
                          enum smtp_reply_id *id)
{
	if (s->tls_started)
		*id = SMTP_R_TLS_ACTIVE;
	else if (s->cfg->mode == HOOK_MODE_SMTPS)
		*id = SMTP_R_NO_STARTTLS;
	else
		return 0;
	return -1;
}

static void proceed_starttls(struct smtp_session *s, const struct smtp_cmd *cmd)
{
	smtp__send(s, 220, "2.0.0", "Ready to start TLS");
	s->io->flush(s->c);
	if (s->closing)
		return;   /* the peer went away while we wrote */
	/* CVE-2011-0411: anything pipelined after STARTTLS arrived in
	 * plaintext and must not be taken as if it came over TLS. */
	if (smtp_reader_pending(&s->reader)) {
		log_info("event=starttls_injection sid=%s client=%s discarded=%zu", s->sid,
		         s->peer.client_ip, smtp_reader_pending(&s->reader));
		smtp_reader_discard(&s->reader);
	}
	/* RFC 3207 4.2: forget everything learnt before TLS. */
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	smtp__tx_reset(s);
	if (smtp__start_tls(s) < 0) {
		log_err("event=tls_error sid=%s error=\"cannot create TLS engine\"", s->sid);
		smtp__close(s, false);
	}
}

/* ---- the table --------------------------------------------------------------------- */

static const struct smtp_command commands[] = {
	{ SMTP_VERB_HELO, 0, NULL, HOOK_HELO, proceed_helo },
	{ SMTP_VERB_EHLO, 0, NULL, HOOK_HELO, proceed_ehlo },
	{ SMTP_VERB_MAIL, SMTP_CMD_NEED_HELO, smtp__check_mail, HOOK_MAIL, smtp__proceed_mail },
	{ SMTP_VERB_RCPT, SMTP_CMD_NEED_HELO, smtp__check_rcpt, HOOK_RCPT, smtp__proceed_rcpt },
	{ SMTP_VERB_DATA, SMTP_CMD_NEED_HELO, smtp__check_data, HOOK_DATA, smtp__proceed_data },
	/* BDAT checks for itself: its chunk must be read even when refused. */
	{ SMTP_VERB_BDAT, 0, NULL, HOOK_NPHASES, smtp__bdat },
	{ SMTP_VERB_RSET, 0, NULL, HOOK_NPHASES, proceed_rset },
	{ SMTP_VERB_NOOP, 0, NULL, HOOK_NPHASES, proceed_noop },
	{ SMTP_VERB_QUIT, 0, NULL, HOOK_NPHASES, proceed_quit },
	{ SMTP_VERB_VRFY, 0, NULL, HOOK_NPHASES, proceed_vrfy },
	{ SMTP_VERB_EXPN, 0, check_expn, HOOK_NPHASES, NULL },
	{ SMTP_VERB_HELP, 0, NULL, HOOK_NPHASES, proceed_help },
	{ SMTP_VERB_STARTTLS, SMTP_CMD_NEED_HELO, check_starttls, HOOK_NPHASES, proceed_starttls },
	{ SMTP_VERB_AUTH, SMTP_CMD_NEED_HELO, smtp__check_auth, HOOK_AUTH, smtp__proceed_auth },
};

const struct smtp_command *smtp__command(enum smtp_verb verb)
{
	for (size_t i = 0; i < ARRAY_LEN(commands); i++)
		if (commands[i].verb == verb)
			return &commands[i];
	return NULL;
}

static void parse_error(struct smtp_session *s, int err, enum smtp_verb verb)
{
	switch (err) {
	case SMTP_PARSE_UNKNOWN_VERB:
		smtp__error(s, HOOK_NPHASES, SMTP_R_UNKNOWN_COMMAND, NULL);
		break;
	case SMTP_PARSE_BAD_PATH:
		smtp__error(s, HOOK_NPHASES,
		            verb == SMTP_VERB_MAIL ? SMTP_R_BAD_SENDER_SYNTAX : SMTP_R_BAD_RCPT_SYNTAX,
		            NULL);
		break;
	case SMTP_PARSE_UNKNOWN_PARAM:
		smtp__error(s, HOOK_NPHASES, SMTP_R_UNKNOWN_PARAM, NULL);
		break;
	case SMTP_PARSE_NON_ASCII:
		smtp__error(s, HOOK_NPHASES, SMTP_R_NON_ASCII, NULL);
		break;
	default:
		smtp__error(s, HOOK_NPHASES, SMTP_R_SYNTAX, NULL);
		break;
	}
}

/* Copies the line (with the NULs the parser wrote) and moves every pointer
 * of the parse onto the copy. */
static void hold(struct smtp_session *s, const struct smtp_cmd *cmd, const char *line,
                 size_t len)
{
	s->held_line = xmalloc(len + 1);
	memcpy(s->held_line, line, len + 1);
	s->held_len = len;
	s->held = *cmd;
	char **fields[] = {
		&s->held.arg, &s->held.domain, &s->held.path, &s->held.auth_param, &s->held.ret,
		&s->held.envid, &s->held.notify, &s->held.orcpt, &s->held.mech, &s->held.initial,
	};
	for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
		char *p = *fields[i];
		if (p && p >= line && p <= line + len)
			*fields[i] = s->held_line + (p - line);
	}
	s->cmd = &s->held;
}

static void release(struct smtp_session *s)
{
	if (s->held_line) {
		/* An AUTH line's initial response is a secret. */
		explicit_bzero(s->held_line, s->held_len + 1);
		free(s->held_line);
		s->held_line = NULL;
		memset(&s->held, 0, sizeof(s->held));
	}
	s->cmd = NULL;
}

/* The checks of the command's phase have answered. */
static void command_then(struct smtp_session *s, const struct hook_verdict *v)
{
	const struct smtp_cmd *cmd = s->cmd;
	const struct smtp_command *row = cmd ? smtp__command(cmd->verb) : NULL;
	if (!row) {
		release(s);
		return;
	}
	if (v->result != HOOK_OK)
		smtp__refuse(s, row->phase, v);
	else
		row->proceed(s, cmd);
	release(s);
}

static const char *phase_arg(const struct smtp_cmd *cmd)
{
	return cmd->verb == SMTP_VERB_MAIL || cmd->verb == SMTP_VERB_RCPT ? cmd->path : NULL;
}

/* Between transactions the session moves to the newest configuration:
 * a reload (a sender right taken away, a limit lowered) reaches open
 * sessions from their next transaction on, and no transaction ever sees
 * two. */
static void refresh(struct smtp_session *s)
{
	if (s->tx.active || s->state != SMTP_S_COMMAND || !s->io->refresh)
		return;
	const struct smtp_config *cfg = s->io->refresh(s->c);
	if (!cfg)
		return;
	s->cfg = cfg;
	hook_session_rechain(s->hooks, cfg->hooks);
	s->reader.max_line = cfg->max_command_line;
}

void smtp__command_line(struct smtp_session *s, char *line, size_t len)
{
	struct smtp_cmd cmd;
	refresh(s);
	/* Logged before the parser cuts the line up; never an AUTH payload. */
	bool auth = len >= 4 && strncasecmp(line, "AUTH", 4) == 0 && (len == 4 || line[4] == ' ');
	if (!auth)
		log_debug("event=command sid=%s cmd=%s", s->sid, log_qn(line, len > 200 ? 200 : len));
	int err = smtp_parse(line, len, &cmd);
	if (auth)
		log_debug("event=command sid=%s cmd=\"AUTH\" mech=%s arg=\"********\"", s->sid,
		          log_q(cmd.mech));
	const struct smtp_command *row = smtp__command(cmd.verb);
	if (!row || (err != SMTP_PARSE_OK && cmd.verb != SMTP_VERB_BDAT)) {
		parse_error(s, err, cmd.verb);
		return;
	}
	if (err != SMTP_PARSE_OK) {
		/* A BDAT we cannot parse has no size we could skip. */
		parse_error(s, err, cmd.verb);
		smtp__close(s, true);
		return;
	}
	if ((row->flags & SMTP_CMD_NEED_HELO) && !s->helo) {
		smtp__error(s, HOOK_NPHASES, SMTP_R_NEED_HELO, NULL);
		return;
	}
	enum smtp_reply_id id;
	s->cmd = &cmd;
	if (row->check && row->check(s, &cmd, &id) < 0) {
		smtp__error(s, row->phase, id, id == SMTP_R_DSN_PARAM
		            ? (cmd.ret ? "RET" : cmd.envid ? "ENVID" : cmd.notify ? "NOTIFY" : "ORCPT")
		            : NULL);
	} else if (row->phase == HOOK_NPHASES) {
		row->proceed(s, &cmd);
	} else {
		smtp__phase(s, row->phase, phase_arg(&cmd), command_then);
		if (s->state == SMTP_S_WAIT && s->wait == SMTP_W_HOOK && s->cmd == &cmd)
			hold(s, &cmd, line, len);
	}
	if (s->cmd == &cmd)
		s->cmd = NULL;
}
