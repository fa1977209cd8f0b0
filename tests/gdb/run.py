#!/usr/bin/env python3
"""tools/gdb/coil.py in gdb -batch, on the program tests/gdb/parked.c.

  run.py live GDB PROGRAM COIL_PY   gdb runs the program to its breakpoint
                                    (stop_here) and looks at the live process
  run.py core GDB PROGRAM COIL_PY   the program aborts in stop_here and the
                                    kernel writes a core file into a temporary
                                    directory; gdb looks at that core
  run.py group GDB PROGRAM COIL_PY  live, the program running a group of two
                                    schedulers (one more tasklet parked on the
                                    second)

Both check that `coil tasklets` lists the program's tasklets with their
states (live: first that it says there is no scheduler before coil_run), that `coil bt ID` shows each parked one's frames in order from where
it parked out to coil__ctx_start (and the running one's, through its
thread), and the commands' errors.

Where the kernel's core_pattern pipes cores to a program (systemd-coredump,
apport) or writes them elsewhere than the current directory, or no core
appears (a sanitizer that turns core dumps off), the core is made with gdb's
gcore from the live process stopped at the same place instead, and the test
says so on its output.

Exit status: 0 passed, 1 failed, 77 skipped (no gdb, or a gdb without Python,
or a libcoil without debug information, or a core that only gcore could make
and gcore could not save the tasklet stacks in: see make_core_with_gcore).
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

SKIP = 77
START = r"coil(__|\.)ctx_start"


def gdb_batch(gdb, args, timeout=120):
    cmd = [gdb, "-batch", "-nx"] + args
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")


def commands(coil_py, group=False):
    """The commands under test, each section after a marker line."""
    ex = ["-ex", "source " + coil_py]
    if group:
        todo = [("tasklets", "coil tasklets"), ("bt2", "coil bt 2"), ("bt5", "coil bt 5"),
                ("bt1", "coil bt 1")]
    else:
        todo = [("tasklets", "coil tasklets"), ("bt2", "coil bt 2"),
                ("bt3", "coil bt 3"), ("bt4", "coil bt 4"), ("bt5", "coil bt 5"),
                ("bt1", "coil bt 1"),
                ("missing", "coil bt 99"), ("usage", "coil bt"),
                ("usage2", "coil bt two"), ("extra", "coil tasklets now")]
    for name, cmd in todo:
        ex += ["-ex", "echo ==%s==\\n" % name, "-ex", cmd]
    ex += ["-ex", "echo ==end==\\n"]
    return ex


def sections(out):
    parts = {}
    for m in re.finditer(r"^==(\w+)==\n(.*?)(?=^==\w+==\n)", out, re.S | re.M):
        parts[m.group(1)] = m.group(2)
    return parts


failures = []


def expect(cond, what, text):
    if not cond:
        failures.append("%s; got:\n%s" % (what, text))


def frames_in_order(text, names):
    """Whether the frame lines of text name each of names, in this order.
    A name is a regular expression: gdb (13) names coil__ctx_start
    "coil.ctx_start" when clang assembled it (the label's debug entry)."""
    at = 0
    lines = [l for l in text.splitlines() if l.startswith("#")]
    for name in names:
        # "#N  0xADDR in NAME ..." or, for gdb's own frame 0, "#0  NAME (...)".
        pat = r"(^#\d+\s+| in )%s( |$)" % name
        while at < len(lines) and not re.search(pat, lines[at]):
            at += 1
        if at == len(lines):
            return False
        at += 1
    return True


def check(out):
    s = sections(out)
    t = s.get("tasklets", "")
    expect(re.search(r"^scheduler 0x[0-9a-f]+(, gdb thread \d+)?:$", t, re.M),
           "coil tasklets: a scheduler line", t)
    for line in ['  tasklet 1 "main": running', '  tasklet 2 "sleeper": waiting on sleep',
                 '  tasklet 3 "receiver": waiting on chan recv',
                 '  tasklet 4 "joiner": waiting on join of tasklet 2',
                 '  tasklet 5 "unstarted": runnable']:
        expect(line + "\n" in t, "coil tasklets: the line %r" % line, t)
    b = s.get("bt2", "")
    expect(b.startswith('tasklet 2 "sleeper": waiting on sleep\n'), "coil bt 2: its title", b)
    expect(frames_in_order(b, ["coil_sleep_until", "sleeper_in_here", "tasklet_entry",
                               START]),
           "coil bt 2: coil_sleep_until, sleeper_in_here, tasklet_entry, coil__ctx_start", b)
    expect(re.search(r" in sleeper_in_here at \S*parked\.c:\d+$", b, re.M),
           "coil bt 2: sleeper_in_here with its source line", b)
    expect(b.rstrip().splitlines()[-1:] and re.search(" in " + START, b.rstrip().splitlines()[-1]),
           "coil bt 2: the walk ends at coil__ctx_start", b)
    b = s.get("bt3", "")
    expect(frames_in_order(b, ["receiver_in_here", "receiver_outer", "tasklet_entry",
                               START]),
           "coil bt 3: receiver_in_here, receiver_outer, tasklet_entry, coil__ctx_start", b)
    b = s.get("bt4", "")
    expect(frames_in_order(b, ["coil_join", "joiner", "tasklet_entry", START]),
           "coil bt 4: coil_join, joiner, tasklet_entry, coil__ctx_start", b)
    b = s.get("bt5", "")
    expect(b == 'tasklet 5 "unstarted": runnable\n(not started yet: no frames)\n',
           "coil bt 5: not started", b)
    b = s.get("bt1", "")
    expect(re.search(r"^running: the stack of gdb thread \d+$", b, re.M),
           "coil bt 1: running, on which thread", b)
    expect(frames_in_order(b, ["stop_here", "start", "tasklet_entry", START]),
           "coil bt 1: its thread's frames", b)
    expect(s.get("missing", "") == "coil: no tasklet 99 in any running scheduler\n",
           "coil bt 99: the error", s.get("missing", ""))
    usage = "usage: coil bt ID (a tasklet id, as coil tasklets lists)\n"
    expect(s.get("usage", "") == usage, "coil bt: the usage error", s.get("usage", ""))
    expect(s.get("usage2", "") == usage, "coil bt two: the usage error", s.get("usage2", ""))
    expect(s.get("extra", "") == "coil tasklets: takes no argument\n",
           "coil tasklets now: the error", s.get("extra", ""))


def check_group(out):
    """Two schedulers on two threads: remote (2) parked on the second, main
    (1) running and receiver (5) parked on the first (ids of a group of two
    alternate between its schedulers)."""
    s = sections(out)
    t = s.get("tasklets", "")
    m1 = re.search(r'^scheduler 0x[0-9a-f]+ \(1 of 2\), gdb thread (\d+):\n'
                   r'  tasklet 2 "remote": waiting on sleep\n', t, re.M)
    m0 = re.search(r'^scheduler 0x[0-9a-f]+ \(0 of 2\), gdb thread (\d+):\n'
                   r'  tasklet 1 "main": running\n'
                   r'  tasklet 3 "sleeper": waiting on sleep\n'
                   r'  tasklet 5 "receiver": waiting on chan recv\n'
                   r'  tasklet 7 "joiner": waiting on join of tasklet 3\n'
                   r'  tasklet 9 "unstarted": runnable\n', t, re.M)
    expect(m1 and m0, "coil tasklets: both schedulers, each with its tasklets", t)
    if m1 and m0:
        expect(m1.group(1) != m0.group(1), "coil tasklets: two threads", t)
    b = s.get("bt2", "")
    expect(frames_in_order(b, ["coil_sleep_until", "remote_in_here", "tasklet_entry", START]),
           "coil bt 2: remote_in_here, on the second scheduler", b)
    b = s.get("bt5", "")
    expect(frames_in_order(b, ["receiver_in_here", "receiver_outer", "tasklet_entry", START]),
           "coil bt 5: receiver_in_here, receiver_outer", b)
    b = s.get("bt1", "")
    expect(m0 and ("running: the stack of gdb thread %s\n" % m0.group(1)) in b,
           "coil bt 1: running, on the first scheduler's thread", b)
    expect(frames_in_order(b, ["stop_here", "start", "tasklet_entry", START]),
           "coil bt 1: its thread's frames", b)


def live_args(program, ex, *args):
    return (["-ex", "break stop_here", "-ex", "run"] + ex + ["-ex", "kill", "--args", program]
            + list(args))


class CannotGcore(Exception):
    pass


def make_core_with_gcore(gdb, program, path):
    rc, out = gdb_batch(gdb, ["-ex", "break stop_here", "-ex", "run", "-ex",
                              "gcore " + path, "-ex", "kill", "--args", program])
    if not os.path.exists(path):
        print(out)
        sys.exit("gcore made no core file")
    # gdb (13) saves a mapping by reading it whole: a tasklet stack whose
    # guard is a guard region inside its mapping (MADV_GUARD_INSTALL, Linux
    # 6.13+, see src/unix/stack.c) fails that read, and the core then holds
    # no tasklet stack at all. The kernel's own core dumps skip the guard.
    if "Memory read failed for corefile section" in out:
        print(out)
        raise CannotGcore("gcore could not save every mapping (above): the tasklet stacks "
                          "are not in its core")


def make_core(gdb, program, tmp):
    """A core of the program stopped in stop_here, in tmp; its path."""
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    if pattern.startswith("|") or "/" in pattern:
        print("core_pattern is %r, not a file in the current directory: the core is made "
              "with gdb's gcore instead" % pattern)
        path = os.path.join(tmp, "gcore")
        make_core_with_gcore(gdb, program, path)
        return path
    env = dict(os.environ)
    # ASan turns core dumps off by default on 64-bit (its shadow memory is
    # excluded from them either way: use_madv_dontdump).
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":disable_coredump=0"
    p = subprocess.run([program, "core"], cwd=tmp, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60, env=env)
    out = p.stdout.decode(errors="replace")
    if p.returncode != -signal.SIGABRT:
        sys.exit("the program did not abort (status %d):\n%s" % (p.returncode, out))
    cores = [c for c in glob.glob(os.path.join(tmp, "*")) if os.path.isfile(c)]
    if len(cores) != 1:
        print("the kernel wrote no core file (core_pattern %r; found %r): the core is made "
              "with gdb's gcore instead" % (pattern, cores))
        path = os.path.join(tmp, "gcore")
        make_core_with_gcore(gdb, program, path)
        return path
    return cores[0]


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("live", "core", "group"):
        sys.exit(__doc__)
    mode, gdb, program, coil_py = sys.argv[1:]
    program = os.path.abspath(program)
    coil_py = os.path.abspath(coil_py)
    gdb = shutil.which(gdb)
    if not gdb:
        print("no gdb: skipped")
        return SKIP
    rc, out = gdb_batch(gdb, ["-ex", "python print('coil-py-' + 'ok')"])
    if "coil-py-ok" not in out:
        print("this gdb has no Python: skipped\n" + out)
        return SKIP
    # At the breakpoint: a libcoil.so is loaded only once the program runs.
    rc, out = gdb_batch(gdb, ["-ex", "break stop_here", "-ex", "run", "-ex",
                              "ptype struct coil__tasklet", "-ex", "kill", "--args", program])
    if "No struct type named" in out:
        print("libcoil has no debug information (build with -g): skipped\n" + out)
        return SKIP
    if mode == "live":
        # First at main, before coil_run: no scheduler yet.
        early = ["-ex", "source " + coil_py, "-ex", "break main", "-ex", "run",
                 "-ex", "echo ==early==\\n", "-ex", "coil tasklets",
                 "-ex", "echo ==earlybt==\\n", "-ex", "coil bt 1",
                 "-ex", "echo ==earlyend==\\n", "-ex", "break stop_here", "-ex", "continue"]
        rc, out = gdb_batch(gdb, early + commands(coil_py) + ["-ex", "kill", "--args", program])
        s = sections(out)
        expect(s.get("early") == "coil: no running scheduler\n",
               "coil tasklets before coil_run: no scheduler", s.get("early"))
        expect(s.get("earlybt") == "coil: no tasklet 1 in any running scheduler\n",
               "coil bt 1 before coil_run: the error", s.get("earlybt"))
    elif mode == "group":
        rc, out = gdb_batch(gdb, live_args(program, commands(coil_py, True), "group"))
        print(out)
        check_group(out)
        for f in failures:
            print("FAILED: " + f)
        return 1 if failures else 0
    else:
        with tempfile.TemporaryDirectory(prefix="coil-gdb-") as tmp:
            try:
                core = make_core(gdb, program, tmp)
            except CannotGcore as e:
                print("%s: skipped" % e)
                return SKIP
            rc, out = gdb_batch(gdb, commands(coil_py) + [program, core])
    print(out)
    check(out)
    for f in failures:
        print("FAILED: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
