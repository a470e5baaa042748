# weft-gdb.py: gdb support for weft programs (after Go's runtime-gdb.py).
#
#   (gdb) source tools/weft-gdb.py
#   (gdb) info weft-tasks          every unfinished task: id, name, state,
#                                  what it waits on, the worker it last ran on
#   (gdb) weft-bt ID               backtrace of task ID (a suspended coroutine:
#                                  walked from its saved context; a running one:
#                                  its worker thread's backtrace)
#   (gdb) weft-bt                  backtraces of every suspended coroutine
#
# Works on a live process (stopped under gdb, or attached with gdb -p) and on
# a core file (gdb prog core): it only reads memory.  No register is written
# and no frame is switched, so it never disturbs the inferior; the one
# exception, a running task's backtrace, selects that task's worker thread
# (as `thread N` would) and restores the previously selected thread.
#
# What it reads (runtime/internal.h; libweft must have debug info, which the
# default RelWithDebInfo build has):
#   g_rt (runtime/runtime.c)   the running runtime, NULL when none
#   g_rt->slabs                the task registry: slabs of WEFT__SLAB_TASKS
#                              task slots, linked by ->next
#   slot.seq                   0: never used, or zeroed by the trimmer (free)
#   slot.state                 -1 free, 0 ready, 1 running, 2 waiting,
#                              3 blocking, 4 done
#   slot.sp, slot.stack        a switched-out coroutine's saved stack pointer
#                              and its stack [lo, lo + size)
# The saved context (runtime/arch/*/switch.S): on x86_64 the saved frame
# pointer (rbp) is at sp+48 and the resume address at sp+56; on aarch64 x29
# at sp+80 and x30 at sp+88.  From there the frame-pointer chain is followed
# ([fp] = caller's fp, [fp+8] = return address), inside the coroutine's stack
# only and strictly upwards, so a torn or odd stack gives a short trace, never
# an error.  weft is built with -fno-omit-frame-pointer; build your own code
# so too, or frames of your functions may be skipped.

import gdb

STATE_NAMES = {0: "ready", 1: "running", 2: "waiting", 3: "blocking", 4: "done"}
STATE_FREE = -1
STATE_RUNNING = 1
STATE_WAITING = 2
STATE_BLOCKING = 3
STATE_DONE = 4
FD_WAITS = ("read fd", "write fd", "poll fd")
MAX_FRAMES = 64
UNREADABLE = ("    its stack [0x%x, 0x%x) cannot be read here.  In a core file written by\n"
              "    gdb's gcore, stacks with MADV_GUARD_INSTALL guard pages (Linux 6.13+) are\n"
              "    left out: use the kernel's core dump, or run with WEFT_GUARD=mprotect.\n")


class WeftError(Exception):
    pass


def _arch_offsets():
    """(offset of the saved fp, offset of the resume pc) at a saved sp."""
    try:
        name = gdb.selected_inferior().architecture().name()
    except (gdb.error, AttributeError, RuntimeError):
        name = gdb.selected_frame().architecture().name()
    if "aarch64" in name:
        return 80, 88
    if "x86-64" in name or "x86_64" in name:
        return 48, 56
    raise WeftError("weft-gdb: no context layout for architecture %s" % name)


def _runtime():
    """The weft__runtime the process runs (a gdb.Value of the struct)."""
    sym = None
    try:
        syms = gdb.lookup_static_symbols("g_rt")
    except AttributeError:  # gdb < 10
        s = gdb.lookup_static_symbol("g_rt")
        syms = [s] if s else []
    for s in syms:
        if "weft__runtime" in str(s.type):
            sym = s
            break
    if sym is None:
        raise WeftError("weft-gdb: g_rt not found: is libweft loaded, with debug info (-g)?")
    rt = sym.value()
    if int(rt) == 0:
        raise WeftError("weft-gdb: no weft runtime runs (g_rt is NULL)")
    return rt.dereference()


def _read_word(addr):
    mem = gdb.selected_inferior().read_memory(addr, 8)
    return int.from_bytes(bytes(mem), "little")


def _string(val):
    try:
        if int(val) == 0:
            return None
        return val.string()
    except (gdb.error, gdb.MemoryError, ValueError):
        return None


def _tasks(rt):
    """Every unfinished task slot of the registry (gdb.Values)."""
    slab = rt["slabs"]
    seen = 0
    while int(slab) != 0 and seen < 1 << 22:
        s = slab.dereference()
        slots = s["t"]
        lo, hi = slots.type.range()
        for i in range(lo, hi + 1):
            t = slots[i]
            # seq 0: never used, or zeroed by the trimmer (registry.c)
            if int(t["seq"]) == 0:
                continue
            st = int(t["state"])
            if st in (STATE_FREE, STATE_DONE):
                continue
            yield t
        slab = s["next"]
        seen += 1


def _info(t):
    st = int(t["state"])
    name = None
    try:
        name = t["name"].string()
    except (gdb.error, UnicodeDecodeError):
        pass
    wait = None
    if st == STATE_WAITING:
        wait = _string(t["wait"])
        if wait in FD_WAITS:
            wait = "%s %d" % (wait, int(t["wait_fd"]))
    return {
        "id": int(t["id"]),
        "name": name or None,
        "state": st,
        "state_name": STATE_NAMES.get(st, "?%d" % st),
        "wait": wait,
        "worker": int(t["last_worker"]),
    }


def _find(rt, tid):
    for t in _tasks(rt):
        if int(t["id"]) == tid:
            return t
    return None


def _describe(pc, is_return):
    """'function (file:line)' for a code address; for return addresses the
    call instruction's line (pc - 1)."""
    look = pc - 1 if is_return and pc > 0 else pc
    try:
        block = gdb.block_for_pc(look)
    except RuntimeError:
        block = None
    # The innermost function, then each one it is inlined into, out to the
    # real one: "f [inlined into g, into h]" (h holds the code).
    names = []
    while block is not None:
        if block.function is not None:
            names.append(block.function.print_name)
        block = block.superblock
    inner = names[0] if names else None
    if len(names) > 1 and names[-1] != inner:
        name = "%s [inlined into %s]" % (inner, ", into ".join(names[1:]))
    elif inner is not None:
        name = inner
    else:
        # No debug info there: the nearest symbol, as gdb shows it.
        try:
            name = gdb.format_address(pc)
            # "0x... <sym+off>" or "0x... <sym+off> in lib": keep the symbol part
            if "<" in name and ">" in name:
                name = name[name.index("<") + 1:name.rindex(">")]
            else:
                name = "??"
        except (AttributeError, gdb.error):
            name = "??"
    where = ""
    sal = gdb.find_pc_line(look)
    if sal.symtab is not None and sal.line:
        where = " at %s:%d" % (sal.symtab.filename, sal.line)
    else:
        solib = gdb.solib_name(pc)
        if solib:
            where = " from %s" % solib
    return "%s%s" % (name, where)


def _coroutine_frames(t):
    """Resume address then return addresses of a switched-out coroutine."""
    sp = int(t["sp"])
    stack = t["stack"]
    if sp == 0 or int(stack) == 0:
        return None
    lo = int(stack["lo"])
    hi = lo + int(stack["size"])
    if not lo <= sp < hi:
        return None
    fp_off, pc_off = _arch_offsets()
    pcs = []
    try:
        pc = _read_word(sp + pc_off)
        fp = _read_word(sp + fp_off)
        while pc and len(pcs) < MAX_FRAMES:
            pcs.append(pc)
            if fp < lo or fp + 16 > hi or fp % 8:
                break
            nxt = _read_word(fp)
            pc = _read_word(fp + 8)
            if nxt <= fp:
                break
            fp = nxt
    except gdb.MemoryError:
        if not pcs:
            raise WeftError(UNREADABLE % (lo, hi))
    if not pcs:
        raise WeftError(UNREADABLE % (lo, hi))
    return pcs


def _header(i):
    s = "task %d" % i["id"]
    if i["name"]:
        s += " '%s'" % i["name"]
    s += " [%s" % i["state_name"]
    if i["wait"]:
        s += ", %s" % i["wait"]
    if i["worker"] >= 0:
        s += ", worker %d" % i["worker"]
    return s + "]"


def _worker_thread(rt, index):
    """The gdb thread of worker index, or None."""
    try:
        w = rt["workers"][index].dereference()
        handle = int(w["thread"])
    except (gdb.error, gdb.MemoryError):
        return None
    for th in gdb.selected_inferior().threads():
        try:
            h = int.from_bytes(bytes(th.handle()), "little")
        except (AttributeError, gdb.error, TypeError):
            continue
        if h == handle:
            return th
    return None


def _bt_one(rt, t):
    i = _info(t)
    gdb.write(_header(i) + ":\n")
    st = i["state"]
    if st == STATE_RUNNING:
        th = _worker_thread(rt, i["worker"]) if i["worker"] >= 0 else None
        if th is None:
            gdb.write("    running on worker %d: see its thread's backtrace "
                      "(thread apply all bt)\n" % i["worker"])
            return
        prev = gdb.selected_thread()
        gdb.write("    running: the backtrace of its worker's thread (gdb thread %d)\n" % th.num)
        try:
            th.switch()
            gdb.execute("bt", to_string=False)
        finally:
            if prev is not None and prev.is_valid():
                prev.switch()
        return
    if st == STATE_BLOCKING:
        gdb.write("    runs on a blocking-pool thread (thread apply all bt)\n")
        return
    if int(t["stack"]) == 0 or int(t["sp"]) == 0:
        gdb.write("    not started yet (no stack)\n")
        return
    try:
        pcs = _coroutine_frames(t)
    except WeftError as e:
        gdb.write(str(e))
        return
    if not pcs:
        gdb.write("    its saved stack pointer is outside its stack (resumed meanwhile?)\n")
        return
    for n, pc in enumerate(pcs):
        gdb.write("    #%-2d 0x%016x in %s\n" % (n, pc, _describe(pc, True)))


class InfoWeftTasks(gdb.Command):
    """List every unfinished weft task: id, name, state, what it waits on
(with the descriptor for "read fd" / "write fd" / "poll fd"), and the
worker it last ran on (-1: none yet).
Usage: info weft-tasks"""

    def __init__(self):
        super().__init__("info weft-tasks", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        try:
            rt = _runtime()
            rows = [_info(t) for t in _tasks(rt)]
        except WeftError as e:
            raise gdb.GdbError(str(e))
        rows.sort(key=lambda r: r["id"])
        gdb.write("weft: %d workers, %d unfinished tasks\n" % (int(rt["nworkers"]), len(rows)))
        gdb.write("%10s  %-24s %-9s %-20s %s\n" % ("ID", "NAME", "STATE", "WAIT", "WORKER"))
        for r in rows:
            gdb.write("%10d  %-24s %-9s %-20s %d\n" % (
                r["id"], r["name"] or "-", r["state_name"], r["wait"] or "-", r["worker"]))


class WeftBt(gdb.Command):
    """Backtrace of a weft task.
Usage: weft-bt ID    the task with this id (see info weft-tasks)
       weft-bt       every suspended coroutine
A suspended coroutine's frames are walked from its saved context through
its frame pointers; a running task's are its worker thread's."""

    def __init__(self):
        super().__init__("weft-bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        arg = arg.strip()
        try:
            rt = _runtime()
            if arg:
                try:
                    tid = int(gdb.parse_and_eval(arg))
                except gdb.error:
                    raise gdb.GdbError("weft-bt: %s is not a task id" % arg)
                t = _find(rt, tid)
                if t is None:
                    raise gdb.GdbError("weft-bt: no unfinished task with id %d" % tid)
                _bt_one(rt, t)
                return
            for t in sorted(_tasks(rt), key=lambda x: int(x["id"])):
                if int(t["state"]) in (STATE_RUNNING, STATE_BLOCKING):
                    continue
                _bt_one(rt, t)
                gdb.write("\n")
        except WeftError as e:
            raise gdb.GdbError(str(e))


InfoWeftTasks()
WeftBt()
gdb.write("weft-gdb: loaded: info weft-tasks, weft-bt [ID]\n")
