/*
 * sandbox.h - confinement of the running daemon: no new privileges, ever,
 * and (unless turned off) a system call allowlist, installed once start-up
 * has bound its sockets, read its keys, dropped privileges and opened the
 * spool and the trace store, before the loops accept.
 *
 * Ownership: nothing is allocated for the caller.
 */
#ifndef POSTERN_SANDBOX_H
#define POSTERN_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

/* Sets PR_SET_NO_NEW_PRIVS for this thread and every thread made after:
 * call it before the first thread. Returns 0, or -1 with err filled. */
int sandbox_no_new_privs(char *err, size_t errlen);

/* With seccomp, loads the allowlist into every thread of the process
 * (threads made later inherit it); a call outside the list kills the
 * whole process (SIGSYS). Logs event=sandbox either way. Returns 0, or -1
 * with err filled. */
int sandbox_apply(bool seccomp, char *err, size_t errlen);

#endif
