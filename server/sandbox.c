/*
 * sandbox.c - the system call allowlist of the running daemon. The process
 * that parses network input also holds the TLS private keys, so once
 * start-up is over it should be able to do no more than its work: files in
 * the directories it already has, sockets to its downstream and DNS
 * servers, its threads. No exec, no fork, no ptrace, no mount, no
 * new privileges (PR_SET_NO_NEW_PRIVS), no socket families beyond
 * UNIX, IP and route netlink, no ioctl beyond what libc and libuv ask.
 * The list was found by running the whole test suite under the filter.
 *
 * A call outside the list kills the process (SCMP_ACT_KILL_PROCESS) rather
 * than fail with EPERM: a missed call shows at once (the kernel logs
 * "audit: type=1326 ... syscall=N"), and code that should not be running
 * gets no second try, where EPERM would let it probe call after call in
 * a process that holds the keys. Acknowledged mail is already on disk, so
 * a killed gate loses none, and the unit restarts it.
 *
 * Builds with AddressSanitizer also allow what its runtime needs (the leak
 * checker stops the world with a ptrace()ing clone at exit): any clone,
 * ptrace, wait4, any prctl, getdents, getppid. They are for tests, never
 * for a gate.
 *
 * Ownership: the filter context lives only inside sandbox_apply().
 */
#include "config.h"
#include "server/sandbox.h"
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_ASAN 1
#endif
#endif

/* Allowed whatever their arguments. Names, not numbers: a name this
 * architecture lacks (open on arm64) is skipped. */
static const char *const allowed[] = {
	/* descriptors */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"preadv2", "pwritev2", "lseek", "close", "dup", "dup2", "dup3", "fcntl", "flock",
	"fsync", "fdatasync", "sync_file_range", "syncfs", "ftruncate", "fallocate",
	/* files: the spool, the Maildir, the trace store, a reload's files */
	"open", "openat", "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs",
	"access", "faccessat", "faccessat2", "readlink", "readlinkat", "getcwd", "getdents64",
	"mkdir", "mkdirat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "link",
	"linkat", "fchmod", "fchown", "umask",
	/* memory */
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise",
	/* signals */
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall",
	/* threads (clone itself is below) */
	"futex", "set_robust_list", "get_robust_list", "rseq", "exit", "exit_group",
	"sched_yield", "sched_getaffinity", "getpid", "gettid", "set_tid_address", "membarrier",
	/* time */
	"clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep", "clock_nanosleep",
	/* event loops */
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd2",
	"pipe2", "poll", "ppoll", "select", "pselect6",
	/* sockets (socket itself is below) */
	"connect", "accept", "accept4", "bind", "listen", "getsockname", "getpeername",
	"setsockopt", "getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
	"recvmmsg", "shutdown",
	/* who we are, what we may use */
	"getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid", "getresgid",
	"getrandom", "uname", "sysinfo", "prlimit64", "getrlimit", "getrusage",
};

/* Answered "not implemented", so that the library falls back to a call we
 * can check: glibc's pthread_create to clone (whose flags a filter can
 * see, unlike clone3's, which sit behind a pointer); libuv to its thread
 * pool instead of io_uring. */
static const char *const not_implemented[] = { "clone3", "io_uring_setup" };

#ifdef SANDBOX_ASAN
/* LeakSanitizer's StopTheWorld at exit: a clone without CLONE_THREAD
 * that lists /proc/self/task (getdents), watches its parent and
 * ptrace()s every thread while the parent waits for it. Without any one
 * of them the tracer dies and the daemon hangs at exit. (GCC's runtime
 * symbolizes in-process: no exec for its reports.) */
static const char *const allowed_asan[] = {
	"clone", "ptrace", "wait4", "prctl", "getdents", "getppid",
};
#endif

static int rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned nargs,
                const struct scmp_arg_cmp *args, unsigned *count)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR)
		return 0;
	int rc = seccomp_rule_add_array(ctx, action, nr, nargs, args);
	if (rc == 0)
		(*count)++;
	return rc;
}

static int rules(scmp_filter_ctx ctx, unsigned *count)
{
	int rc = 0;
	for (size_t i = 0; i < ARRAY_LEN(allowed) && rc == 0; i++)
		rc = rule(ctx, SCMP_ACT_ALLOW, allowed[i], 0, NULL, count);
	for (size_t i = 0; i < ARRAY_LEN(not_implemented) && rc == 0; i++)
		rc = rule(ctx, SCMP_ACT_ERRNO(ENOSYS), not_implemented[i], 0, NULL, count);
#ifdef SANDBOX_ASAN
	for (size_t i = 0; i < ARRAY_LEN(allowed_asan) && rc == 0; i++)
		rc = rule(ctx, SCMP_ACT_ALLOW, allowed_asan[i], 0, NULL, count);
#else
	/* Threads, never processes. */
	const struct scmp_arg_cmp thread[] = {
		SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD),
	};
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "clone", 1, thread, count);
	/* pthread_setname_np() for ourselves, and nothing else of prctl. */
	static const int prctls[] = { PR_SET_NAME, PR_GET_NAME };
	for (size_t i = 0; i < ARRAY_LEN(prctls) && rc == 0; i++) {
		const struct scmp_arg_cmp op[] = { SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)prctls[i]) };
		rc = rule(ctx, SCMP_ACT_ALLOW, "prctl", 1, op, count);
	}
	/* abort() and raise() signal their own thread: of this process only. */
	const struct scmp_arg_cmp self[] = { SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()) };
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "tgkill", 1, self, count);
#endif
	/* Sockets: UNIX (lmtp:unix, syslog), IPv4, IPv6, and route netlink for
	 * getaddrinfo's address checks. */
	static const int domains[] = { AF_UNIX, AF_INET, AF_INET6 };
	for (size_t i = 0; i < ARRAY_LEN(domains) && rc == 0; i++) {
		const struct scmp_arg_cmp dom[] = { SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)domains[i]) };
		rc = rule(ctx, SCMP_ACT_ALLOW, "socket", 1, dom, count);
	}
	const struct scmp_arg_cmp route[] = {
		SCMP_A0(SCMP_CMP_EQ, AF_NETLINK), SCMP_A2(SCMP_CMP_EQ, NETLINK_ROUTE),
	};
	if (rc == 0)
		rc = rule(ctx, SCMP_ACT_ALLOW, "socket", 2, route, count);
	/* isatty() (stdio, SQLite), and libuv's non-blocking and close-on-exec
	 * switches. */
	static const unsigned long ioctls[] = { TCGETS, FIONBIO, FIOCLEX, FIONCLEX, FIONREAD };
	for (size_t i = 0; i < ARRAY_LEN(ioctls) && rc == 0; i++) {
		const struct scmp_arg_cmp req[] = { SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)ioctls[i]) };
		rc = rule(ctx, SCMP_ACT_ALLOW, "ioctl", 1, req, count);
	}
	return rc;
}

int sandbox_no_new_privs(char *err, size_t errlen)
{
	/* Nothing the daemon does needs to gain privileges, and with the bit
	 * set no setuid program it could somehow start would give it any. The
	 * bit is per thread and inherited, hence before the first thread. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
		return -1;
	}
	return 0;
}

int sandbox_apply(bool seccomp, char *err, size_t errlen)
{
	if (!seccomp) {
		log_warn("event=sandbox seccomp=off no_new_privs=yes"
		         " note=\"sandbox { seccomp = false }: no system call filter\"");
		return 0;
	}
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (!ctx) {
		snprintf(err, errlen, "seccomp_init failed");
		return -1;
	}
	unsigned count = 0;
	int rc = rules(ctx, &count);
	/* The spool, trace store and relay threads run already: the filter
	 * goes into all of them at once, or into none. */
	if (rc == 0)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc != 0) {
		snprintf(err, errlen, "cannot install the system call filter: %s (set sandbox {"
		         " seccomp = false } to run without it)", strerror(rc < 0 ? -rc : rc));
		return -1;
	}
	log_info("event=sandbox seccomp=on action=kill_process rules=%u no_new_privs=yes"
	         " threads=all%s", count,
#ifdef SANDBOX_ASAN
	         " note=\"AddressSanitizer build: its runtime's calls allowed too\""
#else
	         ""
#endif
	);
	return 0;
}
