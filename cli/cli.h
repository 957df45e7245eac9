/*
 * cli.h - the subcommands of `postern`, the operator's tool. Each takes
 * the arguments from its own name on (argv[0] is the subcommand) and
 * returns the process exit status: 0 done, 1 failed, 2 usage error.
 */
#ifndef POSTERN_CLI_H
#define POSTERN_CLI_H

#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"   /* the build defines it; this is for hand builds */
#endif
#define CLI_SPOOL_DIR LOCALSTATEDIR "/spool/postern"

/* postern queue [-d SPOOLDIR] [--json]: lists the queued messages. */
int cli_queue(int argc, char **argv);

#endif
