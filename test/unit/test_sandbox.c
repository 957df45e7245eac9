/* Unit tests for the sandbox: each case runs in a child that installs the
 * real filter and then does one thing; what the daemon does every day
 * goes on, what it never does kills the child with SIGSYS, and threads
 * that ran before the filter are filtered too. */
#include "server/sandbox.h"
#include "common/common.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define ASAN_BUILD 1
#endif

/* Runs fn in a child behind the filter; returns its wait status. */
static int in_sandbox(bool seccomp, int (*fn)(void))
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char err[256];
		if (sandbox_no_new_privs(err, sizeof(err)) < 0 ||
		    sandbox_apply(seccomp, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			_exit(100);
		}
		_exit(fn());
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

static void ck_exit(int status, int code)
{
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == code,
	              "status %#x, wanted exit %d", status, code);
}

static void ck_killed(int status)
{
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS,
	              "status %#x, wanted death by SIGSYS", status);
}

/* What the daemon does: files, a socket, a thread. */
static void *thread_work(void *arg)
{
	return arg;
}

/* From the kernel's side (prctl(PR_GET_NO_NEW_PRIVS) is not on the list:
 * the daemon never asks). */
static bool no_new_privs(void)
{
	char line[256];
	bool set = false;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "NoNewPrivs:", 11) == 0)
			set = atoi(line + 11) == 1;
	fclose(f);
	return set;
}

static int daily_work(void)
{
	char path[] = "/tmp/sandbox-test-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, "x", 1) != 1 || fdatasync(fd) < 0 || unlink(path) < 0)
		return 1;
	close(fd);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return 2;
	close(s);
	static int marker;
	pthread_t t;
	void *out;
	if (pthread_create(&t, NULL, thread_work, &marker) != 0 || pthread_join(t, &out) != 0 ||
	    out != &marker)
		return 3;
	return no_new_privs() ? 0 : 4;
}

START_TEST(test_daily_work_goes_on)
{
	ck_exit(in_sandbox(true, daily_work), 0);
}
END_TEST

static int run_program(void)
{
	char *argv[] = { "/bin/true", NULL };
	execv(argv[0], argv);
	return 1;
}

START_TEST(test_exec_kills)
{
#ifdef ASAN_BUILD
	/* The sanitizer's symbolizer is a program of its own. */
	return;
#endif
	ck_killed(in_sandbox(true, run_program));
}
END_TEST

static int make_process(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	return 1;
}

START_TEST(test_fork_kills)
{
#ifdef ASAN_BUILD
	return;   /* the leak checker clones a tracer */
#endif
	ck_killed(in_sandbox(true, make_process));
}
END_TEST

static int packet_socket(void)
{
	(void)socket(AF_PACKET, SOCK_RAW, 0);
	return 1;
}

START_TEST(test_other_socket_family_kills)
{
	ck_killed(in_sandbox(true, packet_socket));
}
END_TEST

/* A thread made before the filter (the spool's, the relay's) is filtered
 * as well: it tries a forbidden call once the main thread has installed
 * the filter. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void *early_thread(void *arg)
{
	pthread_mutex_lock(&gate_mu);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	(void)socket(AF_PACKET, SOCK_RAW, 0);
	return NULL;
}

START_TEST(test_threads_made_before_are_filtered)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char err[256];
		pthread_t t;
		if (sandbox_no_new_privs(err, sizeof(err)) < 0 ||
		    pthread_create(&t, NULL, early_thread, NULL) != 0 ||
		    sandbox_apply(true, err, sizeof(err)) < 0)
			_exit(100);
		pthread_mutex_lock(&gate_mu);
		gate_open = true;
		pthread_cond_signal(&gate_cv);
		pthread_mutex_unlock(&gate_mu);
		pthread_join(t, NULL);
		_exit(0);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_killed(status);
}
END_TEST

static int exec_allowed(void)
{
	if (!no_new_privs())
		return 4;
	return run_program();
}

START_TEST(test_switched_off)
{
	/* /bin/true runs, and its status is the child's. */
	ck_exit(in_sandbox(false, exec_allowed), 0);
}
END_TEST

int main(void)
{
	log_open("test_sandbox", false, LOG_LEVEL_ERR);
	Suite *s = suite_create("sandbox");
	TCase *tc = tcase_create("filter");
	tcase_add_test(tc, test_daily_work_goes_on);
	tcase_add_test(tc, test_exec_kills);
	tcase_add_test(tc, test_fork_kills);
	tcase_add_test(tc, test_other_socket_family_kills);
	tcase_add_test(tc, test_threads_made_before_are_filtered);
	tcase_add_test(tc, test_switched_off);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
