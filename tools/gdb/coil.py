"""gdb commands for coil's tasklets, in a live process and in a core file.

    (gdb) source tools/gdb/coil.py
    (gdb) coil tasklets        every tasklet of every running scheduler
    (gdb) coil bt ID           the stack of tasklet ID

They read libcoil's own records, so libcoil needs its debug information
(the default build type, RelWithDebInfo, has it; -g otherwise).

The running schedulers are the list coil__registry (src/unix/watchdog.c),
linked by watch.next; each scheduler lists its live tasklets in `all`.

A parked tasklet's registers are on its own stack, where coil__ctx_switch
pushed them (src/arch/switch_x86_64.S, switch_aarch64.S), at ctx.sp. To show
its stack, `coil bt` installs for the duration of the command a frame
unwinder that takes the newest frame of the selected thread and says that
its caller has those saved registers: gdb's own unwinder (DWARF CFI, no frame
pointer assumed) then walks the tasklet's frames from there, up to
coil__ctx_start, whose CFI ends the walk. No register of the process is
written, which is why it works on a core file as on a live process.
"""

import gdb

try:
    from gdb.unwinder import Unwinder, register_unwinder
except ImportError:  # gdb older than 7.10: no Python unwinders
    Unwinder = None

WAIT_NAMES = {
    "COIL__WAIT_SLEEP": "sleep",
    "COIL__WAIT_JOIN": "join",
    "COIL__WAIT_CHAN_SEND": "chan send",
    "COIL__WAIT_CHAN_RECV": "chan recv",
    "COIL__WAIT_CHOOSE": "choose",
    "COIL__WAIT_IO": "io",
    "COIL__WAIT_OFFLOAD": "offload",
    "COIL__WAIT_POLL": "poll",
    "COIL__WAIT_XCALL": "another scheduler",
    "COIL__WAIT_MUTEX": "mutex lock",
    "COIL__WAIT_COND": "cond wait",
    "COIL__WAIT_SEM": "sem acquire",
    "COIL__WAIT_WG": "waitgroup wait",
    "COIL__WAIT_SCOPE": "scope",
    "COIL__WAIT_SIGNAL": "signal wait",
}


def enum_name(type_name, value):
    try:
        for f in gdb.lookup_type(type_name).fields():
            if f.enumval == value:
                return f.name
    except gdb.error:
        pass
    return None


def schedulers():
    """Every scheduler in coil__registry, newest first."""
    try:
        s = gdb.parse_and_eval("coil__registry")
    except gdb.error:
        raise gdb.GdbError(
            "coil: no coil__registry here: is libcoil loaded, with its debug information?"
        )
    while int(s) != 0:
        yield s
        s = s["watch"]["next"]


def tasklets(s):
    """The live tasklets of scheduler s, by id."""
    ttype = gdb.lookup_type("struct coil__tasklet")
    offset = None
    for f in ttype.fields():
        if f.name == "all":
            offset = f.bitpos // 8
    ptr = ttype.pointer()
    link = s["all"]["first"]
    while int(link) != 0:
        yield gdb.Value(int(link) - offset).cast(ptr)
        link = link["next"]


def gdb_thread(pthread):
    """The gdb thread whose pthread_t is pthread (None when not known)."""
    inf = gdb.selected_inferior()
    for th in inf.threads():
        try:
            if int.from_bytes(th.handle(), "little") == pthread:
                return th
        except (gdb.error, AttributeError, TypeError):
            pass
    return None


def sched_title(s):
    title = "scheduler 0x%x" % int(s)
    group = s["group"]
    if int(group) != 0:
        title += " (%d of %d)" % (int(s["index"]), int(group["n"]))
    th = gdb_thread(int(s["watch"]["thread"]))
    if th is not None:
        title += ", gdb thread %d" % th.num
    return title


def describe(t):
    state = enum_name("enum coil__state", int(t["state"])) or "?"
    state = state.replace("COIL__", "").lower()
    line = 'tasklet %d "%s": %s' % (int(t["id"]), t["name"].string(), state)
    if state == "waiting":
        kind = enum_name("enum coil__wait", int(t["wait_kind"]))
        line += " on " + WAIT_NAMES.get(kind, kind or "?")
        if kind == "COIL__WAIT_JOIN":
            joiner = t["wait_obj"].cast(gdb.lookup_type("struct coil__joiner").pointer())
            line += " of tasklet %d" % int(joiner["id"])
    if bool(t["killed"]):
        line += " [killed]"
    return line


def find(tid):
    for s in schedulers():
        for t in tasklets(s):
            if int(t["id"]) == tid:
                return s, t
    raise gdb.GdbError("coil: no tasklet %d in any running scheduler" % tid)


class CoilPrefix(gdb.Command):
    """coil's tasklets: coil tasklets, coil bt ID."""

    def __init__(self):
        super().__init__("coil", gdb.COMMAND_STACK, gdb.COMPLETE_NONE, True)


class CoilTasklets(gdb.Command):
    """List every tasklet of every running scheduler: id, name, state, what it waits on."""

    def __init__(self):
        super().__init__("coil tasklets", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        if arg.strip():
            raise gdb.GdbError("coil tasklets: takes no argument")
        n = 0
        for s in schedulers():
            gdb.write(sched_title(s) + ":\n")
            for t in tasklets(s):
                gdb.write("  " + describe(t) + "\n")
                n += 1
        if n == 0:
            gdb.write("coil: no running scheduler\n")


# The saved registers of a parked context: (name, offset from ctx.sp) and
# the distance from ctx.sp to the stack pointer after the switch returns.
FRAMES = {
    "x86_64": (
        [("r15", 0), ("r14", 8), ("r13", 16), ("r12", 24), ("rbx", 32), ("rbp", 40), ("rip", 48)],
        56,
        "rsp",
    ),
    "aarch64": (
        [("x%d" % (19 + i), 8 * i) for i in range(10)]
        + [("x29", 80), ("x30", 88), ("pc", 88)],
        160,
        "sp",
    ),
}


def arch_frame(arch=None):
    """The layout for arch (a gdb.Architecture), by default the inferior's."""
    if arch is None:
        arch = gdb.selected_inferior().architecture()
    name = arch.name()
    if "x86-64" in name or "x86_64" in name:
        return FRAMES["x86_64"]
    if "aarch64" in name:
        return FRAMES["aarch64"]
    raise gdb.GdbError("coil bt: no parked-frame layout for architecture %s" % name)


class FrameId:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


if Unwinder is not None:

    class ParkedUnwinder(Unwinder):
        """Active only during `coil bt`: the newest frame's caller is the
        parked context whose saved stack pointer is self.sp."""

        def __init__(self):
            super().__init__("coil-parked")
            self.sp = None

        def __call__(self, pending):
            if self.sp is None:
                return None
            if pending.level() != 0:  # gdb 11+ (CoilBt checks)
                return None
            # Nothing here may ask for frames (gdb.selected_frame and the
            # like): gdb is building them, and would recurse.
            saved, size, sp_name = arch_frame(pending.architecture())
            u64 = gdb.lookup_type("unsigned long")
            cur_sp = pending.read_register(sp_name)
            cur_pc = pending.read_register("pc")
            # gdb stops a walk whose caller's frame is "inner" (below) the
            # callee's, a sign of a corrupt stack on one stack; here the
            # caller is on another stack, which may lie below the thread's.
            # The newest frame is not shown, so its id may take the lower of
            # the two stack pointers.
            frame_sp = min(int(cur_sp), self.sp)
            info = pending.create_unwind_info(
                FrameId(gdb.Value(frame_sp).cast(cur_sp.type), cur_pc)
            )
            mem = gdb.selected_inferior()
            for reg, off in saved:
                raw = mem.read_memory(self.sp + off, 8).tobytes()
                val = gdb.Value(int.from_bytes(raw, "little")).cast(u64)
                kind = pending.read_register(reg).type
                info.add_saved_register(reg, val.cast(kind))
            info.add_saved_register(
                sp_name, gdb.Value(self.sp + size).cast(u64).cast(cur_sp.type)
            )
            return info

    PARKED = ParkedUnwinder()
    register_unwinder(None, PARKED, replace=True)
else:
    PARKED = None


def frame_line(i, f):
    name = f.name() or "??"
    pc = f.pc()
    line = "#%-2d 0x%016x in %s" % (i, pc, name)
    sal = f.find_sal()
    if sal.symtab is not None and sal.line:
        line += " at %s:%d" % (sal.symtab.filename, sal.line)
    elif f.type() != gdb.SIGTRAMP_FRAME:
        lib = gdb.solib_name(pc)
        if lib:
            line += " from %s" % lib
    return line


class CoilBt(gdb.Command):
    """Show the stack of tasklet ID: coil bt ID.
A parked tasklet's frames come from the registers it saved at its switch; a
running one's are its thread's (the command says which thread)."""

    def __init__(self):
        super().__init__("coil bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if len(args) != 1 or not args[0].isdigit():
            raise gdb.GdbError("usage: coil bt ID (a tasklet id, as coil tasklets lists)")
        s, t = find(int(args[0]))
        gdb.write(describe(t) + "\n")
        state = enum_name("enum coil__state", int(t["state"]))
        if state == "COIL__RUNNING":
            th = gdb_thread(int(s["watch"]["thread"]))
            if th is None:
                raise gdb.GdbError("coil bt: it is running, on a thread gdb does not match")
            gdb.write("running: the stack of gdb thread %d\n" % th.num)
            was = gdb.selected_thread()
            th.switch()
            try:
                gdb.execute("bt")
            finally:
                was.switch()
            return
        sp = int(t["ctx"]["sp"])
        saved, _, _ = arch_frame()
        start = gdb.parse_and_eval("(unsigned long)&coil__ctx_start")
        raw = gdb.selected_inferior().read_memory(sp + saved[-1][1], 8).tobytes()
        resume = int.from_bytes(raw, "little")
        if resume == int(start):
            gdb.write("(not started yet: no frames)\n")
            return
        if PARKED is None or not hasattr(gdb.PendingFrame, "level"):
            raise gdb.GdbError("coil bt: needs gdb 11 or later (Python frame unwinders that "
                               "know a frame's level)")
        PARKED.sp = sp
        gdb.invalidate_cached_frames()
        try:
            f = gdb.newest_frame().older()  # the newest is the thread's own
            i = 0
            while f is not None and i < 64:
                gdb.write(frame_line(i, f) + "\n")
                f = f.older()
                i += 1
        finally:
            PARKED.sp = None
            gdb.invalidate_cached_frames()


CoilPrefix()
CoilTasklets()
CoilBt()
