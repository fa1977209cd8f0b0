#!/usr/bin/env python3
"""Every code block of docs/guide.md is a test.

  guide.py extract GUIDE OUTDIR     writes OUTDIR/NAME.c for each ```c block and
                                    OUTDIR/blocks.cmake, which tests/CMakeLists.txt
                                    includes to build each one as a program
                                    (coil_guide_NAME) with the tests' own flags
  guide.py run GUIDE BINDIR [--wrap CMD...]
                                    runs each built program and compares what it
                                    prints with the blocks that follow it

A ```c block is followed (after prose, if any) by an ```output block: what the
program writes to stdout, exactly. A ```stderr block after that, if present, is
what it writes to stderr; without one, stderr must be empty. The program must
exit 0 unless its annotation says otherwise. In an expected block:
  {*}        on a line: any text (also none), for values that vary: times,
             ports, ids, addresses;
  ...        a line of its own: any number of lines (also none).

An HTML comment just before a ```c block annotates it:
  <!-- guide-test: name=echo signal="INT@listening" exit=130 -->
  name=N          the program's name (default: block-1, block-2, ...)
  signal="S@M"    send signal S (INT, TERM, QUIT, ...) once stdout has a line
                  containing M; "S@+0.5" 0.5 s after the previous signal was
                  sent (or after the start). Repeat for several, in order.
  exit=N          the exit status expected; exit=INT: killed by that signal
  needs=LIB       linked with pkg-config package LIB; skipped when it is absent
  no-valgrind     not run under --wrap (say why in the guide's source)
  timeout=S       seconds before the program is killed (default 30)

stdout is a pseudo-terminal, as in a user's terminal (line-buffered), and
SIGINT, SIGTERM and SIGQUIT are at their default action in the program (as
when typed at a shell prompt), whatever the runner inherited.
Exit status: 0 when every block passed (skips allowed), 1 otherwise.
"""
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

FENCE = re.compile(r"^```\s*([\w-]*)\s*$")
ANNOTATION = re.compile(r"<!--\s*guide-test:(.*?)-->", re.S)
OPTION = re.compile(r'([\w-]+)(?:=("[^"]*"|\S+))?')


def parse(path):
    """The guide's tests: a list of dicts (name, line, code, options,
    stdout, stderr), in the guide's order."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks = []  # (lang, first line number, text, annotation or None)
    pending = None
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m.group(1):
            lang, start, body = m.group(1), i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append((lang, start, "\n".join(body) + "\n", pending))
            pending = None
        else:
            a = ANNOTATION.search(lines[i])
            if a:  # for the next ```c block (prose may come between)
                pending = a.group(1)
        i += 1
    tests = []
    for lang, line, text, note in blocks:
        if lang == "c":
            opts = {"signal": []}
            for key, val in OPTION.findall(note or ""):
                val = val[1:-1] if val.startswith('"') else val
                if key == "signal":
                    opts["signal"].append(val)
                else:
                    opts[key] = val if val else True
            name = opts.get("name", "block-%d" % (len(tests) + 1))
            if not re.fullmatch(r"[\w-]+", name):
                sys.exit("%s:%d: a block name is letters, digits, - and _: %r" % (path, line, name))
            if any(t["name"] == name for t in tests):
                sys.exit("%s:%d: two blocks are named %s" % (path, line, name))
            tests.append({"name": name, "line": line, "code": text, "opts": opts,
                          "stdout": None, "stderr": None})
        elif lang in ("output", "stderr"):
            if not tests:
                sys.exit("%s:%d: an ```%s block before any ```c block" % (path, line, lang))
            key = "stdout" if lang == "output" else "stderr"
            if tests[-1][key] is not None:
                sys.exit("%s:%d: a second ```%s block for %s" % (path, line, lang, tests[-1]["name"]))
            tests[-1][key] = text
        else:
            sys.exit("%s:%d: a ```%s block: every block of the guide is a test, "
                     "so only c, output and stderr blocks are allowed" % (path, line, lang))
    for t in tests:
        if t["stdout"] is None:
            sys.exit("%s:%d: block %s has no ```output block" % (path, t["line"], t["name"]))
    return tests


def extract(guide, outdir):
    tests = parse(guide)
    os.makedirs(outdir, exist_ok=True)
    cmake = ["# Written by tests/docs/guide.py from %s; do not edit." % guide,
             "set(COIL_GUIDE_BLOCKS %s)" % " ".join(t["name"] for t in tests)]
    for t in tests:
        path = os.path.join(outdir, t["name"] + ".c")
        header = "/* docs/guide.md line %d (written by tests/docs/guide.py) */\n" % t["line"]
        content = header + t["code"]
        old = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        if old != content:  # an unchanged block is not rebuilt
            with open(path, "w", encoding="utf-8") as f:
                f.write(content)
        cmake.append('set(COIL_GUIDE_NEEDS_%s "%s")' % (t["name"], t["opts"].get("needs", "")))
    with open(os.path.join(outdir, "blocks.cmake"), "w", encoding="utf-8") as f:
        f.write("\n".join(cmake) + "\n")


def matches(expected, actual):
    """Whether actual fits expected, line by line, with {*} and ... lines."""
    exp = expected.split("\n")
    act = actual.split("\n")

    def line_ok(e, a):
        parts = [re.escape(p) for p in e.split("{*}")]
        return re.fullmatch(".*".join(parts), a) is not None

    def fit(i, j):
        if i == len(exp):
            return j == len(act)
        if exp[i] == "...":
            return any(fit(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and line_ok(exp[i], act[j]) and fit(i + 1, j + 1)

    return fit(0, 0)


def signum(name):
    name = name.upper()
    return getattr(signal, name if name.startswith("SIG") else "SIG" + name)


def run_one(t, exe, wrap):
    """Runs one block's program; returns (stdout, stderr, status) where status
    is the exit status, or -N for death by signal N."""
    master, slave = pty.openpty()
    # What a user's shell gives a program it starts: these at their default.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(s, signal.SIG_DFL)
    proc = subprocess.Popen(wrap + [exe], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.PIPE, close_fds=True)
    os.close(slave)
    out, err = b"", b""
    pending = list(t["opts"]["signal"])
    last = start = time.monotonic()
    deadline = start + float(t["opts"].get("timeout", 30))
    fds = [master, proc.stderr.fileno()]
    while fds:
        now = time.monotonic()
        if now > deadline:
            proc.kill()
            err += b"\n[guide.py: timed out, killed]\n"
            deadline = float("inf")
        while pending:  # the next signal, when its moment has come
            sig, _, when = pending[0].partition("@")
            text = out.decode("utf-8", "replace").replace("\r\n", "\n")
            if when.startswith("+"):
                due = now >= last + float(when[1:])
            else:
                due = any(when in l for l in text.split("\n")[:-1])  # whole lines only
            if not due:
                break
            proc.send_signal(signum(sig))
            last = time.monotonic()
            pending.pop(0)
        ready, _, _ = select.select(fds, [], [], 0.05)
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the pty's other side is closed
                data = b""
            if not data:
                fds.remove(fd)
            elif fd == master:
                out += data
            else:
                err += data
    os.close(master)
    status = proc.wait()
    if pending:
        err += ("[guide.py: never sent %s]\n" % ", ".join(pending)).encode()
    return (out.decode("utf-8", "replace").replace("\r\n", "\n"),
            err.decode("utf-8", "replace"), status)


def expected_status(opts):
    e = opts.get("exit", "0")
    return int(e) if re.fullmatch(r"-?\d+", e) else -signum(e)


def run(guide, bindir, wrap):
    tests = parse(guide)
    failed = 0
    for t in tests:
        exe = os.path.join(bindir, "coil_guide_" + t["name"])
        where = "docs/guide.md:%d (%s)" % (t["line"], t["name"])
        src = os.path.join(bindir, t["name"] + ".c")
        if wrap and "no-valgrind" in t["opts"]:
            print("skip  %s: not run under %s" % (where, wrap[0]))
            continue
        if not os.path.exists(exe):
            if t["opts"].get("needs"):
                print("skip  %s: built only with %s" % (where, t["opts"]["needs"]))
                continue
            print("FAIL  %s: %s was not built" % (where, exe))
            failed += 1
            continue
        with open(src, encoding="utf-8") as f:
            built = f.read().split("\n", 1)[1]
        if built != t["code"]:
            print("FAIL  %s: the program built differs from the guide's block: rebuild" % where)
            failed += 1
            continue
        out, err, status = run_one(t, exe, wrap)
        want_status = expected_status(t["opts"])
        want_err = t["stderr"] if t["stderr"] is not None else ""
        problems = []
        if status != want_status:
            problems.append("exit status %d, the guide says %d" % (status, want_status))
        if not matches(t["stdout"], out):
            problems.append("stdout differs from the ```output block")
        if not matches(want_err, err):
            problems.append("stderr differs from the %s" %
                            ("```stderr block" if t["stderr"] is not None else "guide (none)"))
        if problems:
            failed += 1
            print("FAIL  %s: %s" % (where, "; ".join(problems)))
            for label, text in (("expected stdout", t["stdout"]), ("stdout", out),
                                ("expected stderr", want_err), ("stderr", err)):
                print("  --- %s:" % label)
                sys.stdout.write("".join("  | " + l + "\n" for l in text.rstrip("\n").split("\n")))
        else:
            print("ok    %s" % where)
    print("guide: %d block(s), %d failed" % (len(tests), failed))
    return 1 if failed else 0


def main(argv):
    if len(argv) >= 4 and argv[1] == "extract":
        extract(argv[2], argv[3])
        return 0
    if len(argv) >= 4 and argv[1] == "run":
        wrap = []
        if len(argv) > 4:
            if argv[4] != "--wrap":
                sys.exit(__doc__)
            wrap = argv[5:]
        return run(argv[2], argv[3], wrap)
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
