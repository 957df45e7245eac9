#!/usr/bin/python3
"""procstat.py - CPU time and memory of a server's whole process tree.

    procstat.py cpu ROOTPID [--exclude COMM]...
        seconds of CPU (user + system) used so far by ROOTPID and every live
        descendant, plus what their exited children used (cutime + cstime,
        counted once the parent has reaped them: Postfix's master reaps its
        smtpd, cleanup and smtp processes, so their CPU stays in the sum).
    procstat.py mem ROOTPID [--exclude COMM]...
        "rss_kib pss_kib nprocs" summed over the same processes, from
        /proc/PID/smaps_rollup.

--exclude leaves out processes by name (and what they reaped), e.g. Postfix's
postlogd, which stands in for the syslog daemon that production Postfix
would log to.
"""
import os
import sys

CLK = os.sysconf("SC_CLK_TCK")


def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17
    return {"comm": comm, "ppid": int(rest[1]), "utime": int(rest[11]), "stime": int(rest[12]),
            "cutime": int(rest[13]), "cstime": int(rest[14])}


def tree(root, exclude):
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = stat(int(d))
            if st:
                procs[int(d)] = st
    children = {}
    for pid, st in procs.items():
        children.setdefault(st["ppid"], []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid not in procs:
            continue
        if procs[pid]["comm"] not in exclude:
            out.append((pid, procs[pid]))
        todo.extend(children.get(pid, []))
    return out


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("cpu", "mem"):
        sys.exit(__doc__)
    what, root = sys.argv[1], int(sys.argv[2])
    exclude = set()
    args = sys.argv[3:]
    while args:
        if args[0] == "--exclude" and len(args) > 1:
            exclude.add(args[1])
            args = args[2:]
        else:
            sys.exit(__doc__)
    procs = tree(root, exclude)
    if what == "cpu":
        ticks = sum(st["utime"] + st["stime"] + st["cutime"] + st["cstime"] for _, st in procs)
        print(f"{ticks / CLK:.2f}")
        return
    rss = pss = n = 0
    for pid, _ in procs:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            n += 1
        except OSError:
            pass
    print(rss, pss, n)


if __name__ == "__main__":
    main()
