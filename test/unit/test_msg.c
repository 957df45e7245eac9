/*
 * test_msg.c - the message stages and the one reader of header sections:
 * the split of an entity by the one definition (msg.h), the collector
 * stage agreeing with it however the message is cut into feeds, the field
 * iterator and unfolding, the pipe's order, and the MIME walk.
 */
#include "msg/msg.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *in;
	size_t hlen, body;
} splits[] = {
	{ "Subject: a\r\n\r\nbody", 12, 14 },
	{ "Subject: a\n\nbody", 11, 12 },                 /* LF alone */
	{ "Subject: a\r\n folded\r\nX: b\r\n\r\n", 27, 29 },
	{ "\r\nbody", 0, 2 },                              /* no fields at all */
	{ " continued\r\nX: y\r\n\r\n", 0, 0 },            /* nothing to continue */
	{ "Subject: a\r\nnot a field\r\nX: b\r\n\r\n", 12, 12 },   /* body starts */
	{ "Subject : obs\r\n\r\n", 15, 17 },              /* blanks before the colon */
	{ "Subject: headers only", 21, 21 },
	{ "Subject: a\r\n\r", 12, 12 },                    /* a lone CR is body */
	{ ": no name\r\n\r\n", 0, 0 },
	{ "", 0, 0 },
};

START_TEST(test_split)
{
	for (size_t i = 0; i < ARRAY_LEN(splits); i++) {
		size_t hlen = 99, body = 99;
		msg_header_split(splits[i].in, strlen(splits[i].in), &hlen, &body);
		ck_assert_msg(hlen == splits[i].hlen && body == splits[i].body,
		              "case %zu: %zu %zu", i, hlen, body);
	}
	/* The name's colon within MSG_FIELD_NAME_MAX bytes, or no field. */
	char line[MSG_FIELD_NAME_MAX + 8];
	size_t nlen;
	memset(line, 'a', sizeof(line));
	line[MSG_FIELD_NAME_MAX - 1] = ':';
	ck_assert_uint_eq(msg_field_colon(line, sizeof(line), &nlen), MSG_FIELD_NAME_MAX - 1);
	line[MSG_FIELD_NAME_MAX - 1] = 'a';
	line[MSG_FIELD_NAME_MAX] = ':';
	ck_assert_uint_eq(msg_field_colon(line, sizeof(line), &nlen), 0);
}
END_TEST

static int sink_count(void *ctx, const char *p, size_t n)
{
	struct buf *b = ctx;
	buf_append(b, p, n);
	return 0;
}

/* The collector keeps exactly what msg_header_split calls the header
 * section, for every cut of the message into two feeds. */
START_TEST(test_collector_agrees_with_split)
{
	for (size_t i = 0; i < ARRAY_LEN(splits); i++) {
		const char *in = splits[i].in;
		size_t len = strlen(in);
		for (size_t cut = 0; cut <= len; cut++) {
			struct msg_headers h;
			struct buf out;
			buf_init(&out);
			msg_headers_init(&h, 1000);
			struct msg_pipe *p = msg_pipe_new(sink_count, &out);
			msg_pipe_add(p, &msg_headers_stage, &h);
			msg_pipe_feed(p, in, cut);
			msg_pipe_feed(p, in + cut, len - cut);
			msg_pipe_finish(p);
			ck_assert_msg(h.block.len == splits[i].hlen, "case %zu cut %zu: %zu", i, cut,
			              h.block.len);
			ck_assert(h.block.len == 0 || memcmp(h.block.data, in, h.block.len) == 0);
			ck_assert_uint_eq(out.len, len);   /* every byte passed on */
			ck_assert(!h.cut);
			msg_pipe_free(p);
			msg_headers_free(&h);
			buf_free(&out);
		}
	}
}
END_TEST

START_TEST(test_collector_cap)
{
	struct msg_headers h;
	struct buf out;
	buf_init(&out);
	msg_headers_init(&h, 64);
	struct msg_pipe *p = msg_pipe_new(sink_count, &out);
	msg_pipe_add(p, &msg_headers_stage, &h);
	for (int i = 0; i < 20; i++)
		msg_pipe_feed(p, "X-Pad: 0123456789\r\n", 19);
	ck_assert(h.done && h.cut);
	ck_assert_uint_eq(h.block.len, 64);
	msg_pipe_free(p);
	msg_headers_free(&h);
	buf_free(&out);
}
END_TEST

START_TEST(test_fields)
{
	static const char sec[] = "From: a@b\r\nSubject: one\r\n two\r\n\tthree\r\nfrom : c@d\r\n";
	size_t pos = 0;
	struct msg_field f;
	ck_assert(msg_field_next(sec, sizeof(sec) - 1, &pos, &f));
	ck_assert(msg_field_is(&f, "FROM"));
	ck_assert(msg_field_next(sec, sizeof(sec) - 1, &pos, &f));
	ck_assert(msg_field_is(&f, "Subject"));
	struct buf b;
	buf_init(&b);
	msg_field_unfold(&f, &b);
	ck_assert_str_eq(b.data, " one two\tthree");
	buf_free(&b);
	ck_assert(msg_field_next(sec, sizeof(sec) - 1, &pos, &f));
	ck_assert(msg_field_is(&f, "from"));
	ck_assert(!msg_field_next(sec, sizeof(sec) - 1, &pos, &f));
	ck_assert(msg_field_find(sec, sizeof(sec) - 1, "subject", &f));
	ck_assert(!msg_field_find(sec, sizeof(sec) - 1, "To", &f));
}
END_TEST

/* ---- the pipe ---------------------------------------------------------------------- */

struct tag {
	char c;
};

static int tag_feed(void *st, const char *p, size_t n, msg_emit_fn emit, void *ctx)
{
	struct tag *t = st;
	int rc = emit(ctx, &t->c, 1);
	return rc < 0 ? rc : emit(ctx, p, n);
}

static int tag_finish(void *st, msg_emit_fn emit, void *ctx)
{
	struct tag *t = st;
	char end[2] = { '/', t->c };
	return emit(ctx, end, 2);
}

static void tag_free(void *st)
{
	free(st);
}

static const struct msg_stage_ops tag_ops = { "tag", tag_feed, tag_finish, tag_free };

START_TEST(test_pipe_order)
{
	struct buf out;
	buf_init(&out);
	struct msg_pipe *p = msg_pipe_new(sink_count, &out);
	struct tag *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	a->c = 'a';
	b->c = 'b';
	msg_pipe_add(p, &tag_ops, a);
	msg_pipe_add(p, &tag_ops, b);
	msg_pipe_feed(p, "x", 1);
	msg_pipe_finish(p);
	/* a's output goes through b; a's finish output too, before b's. */
	ck_assert_str_eq(out.data, "bab" "x" "b/a" "/b");
	msg_pipe_free(p);
	buf_free(&out);
}
END_TEST

/* ---- MIME ---------------------------------------------------------------------------- */

struct found {
	char msgs[4][128];
	int depth[4];
	int n;
};

static void on_msg(void *ctx, const char *m, size_t len, int depth)
{
	struct found *f = ctx;
	if (f->n < 4) {
		snprintf(f->msgs[f->n], sizeof(f->msgs[0]), "%.*s", (int)len, m);
		f->depth[f->n++] = depth;
	}
}

static void walk(const char *entity, struct found *f)
{
	memset(f, 0, sizeof(*f));
	size_t hl, off, len = strlen(entity);
	msg_header_split(entity, len, &hl, &off);
	msg_mime_walk(entity, hl, entity + off, len - off, "text/plain", 0, 8, on_msg, f);
}

START_TEST(test_mime_walk)
{
	struct found f;
	walk("Content-Type: multipart/report; report-type=feedback-report;\r\n"
	     " boundary=\"b1\"\r\n\r\n"
	     "--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
	     "--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: one\r\n\r\nx\r\n"
	     "--b1\r\nContent-Type: application/octet-stream; name=\"fwd.eml\"\r\n"
	     "Content-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogdHdvDQoNCnk=\r\n"
	     "--b1--\r\nepilogue\r\n", &f);
	ck_assert_int_eq(f.n, 2);
	ck_assert_str_eq(f.msgs[0], "Subject: one\r\n\r\nx");
	ck_assert_str_eq(f.msgs[1], "Subject: two\r\n\r\ny");
	ck_assert_int_eq(f.depth[0], 2);
	/* No close delimiter: the last part counts; a digest's default is a message. */
	walk("Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: three\r\n", &f);
	ck_assert_int_eq(f.n, 1);
	ck_assert_str_eq(f.msgs[0], "Subject: three\r\n");
	/* quoted-printable, and a plain text body encloses nothing */
	walk("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
	     "Subject: f=C3=BCr=\r\n four\r\n", &f);
	ck_assert_int_eq(f.n, 1);
	ck_assert_str_eq(f.msgs[0], "Subject: f\xc3\xbcr four\r\n");
	walk("Content-Type: text/plain\r\n\r\nSubject: not enclosed\r\n", &f);
	ck_assert_int_eq(f.n, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("msg");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_split);
	tcase_add_test(tc, test_collector_agrees_with_split);
	tcase_add_test(tc, test_collector_cap);
	tcase_add_test(tc, test_fields);
	tcase_add_test(tc, test_pipe_order);
	tcase_add_test(tc, test_mime_walk);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
