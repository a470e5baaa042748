#!/usr/bin/env python3
"""weft-trace-plot.py: a WEFT_TRACE file as a PNG timeline, with gnuplot.

    tools/weft-trace-plot.py TRACE.json OUT.png [--start MS] [--length MS]
                             [--width PX] [--height PX]

For a quick look without a browser (Perfetto or chrome://tracing show the
same file interactively).  One row per worker, and one for the blocking pool
when it did work:
  - a box per task run, coloured by task name (the name written inside when
    the box is wide enough); the key lists the names;
  - "park" slices as thin grey bars (the worker waited in its poller);
  - wake-ups as arrows from the waker's row and time to the wakee's next
    run (dark red between workers, light grey on one worker);
  - steals as small triangles under the thief's row.
--start and --length (milliseconds from the first event) cut a window out
of a long trace.  Needs gnuplot (Debian: gnuplot-nox) with the pngcairo
terminal.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
           "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939",
           "#8c6d31", "#843c39", "#7b4173", "#3182bd"]
PARK_COLOUR = "#c8c8c8"


def gp_str(s):
    """A gnuplot double-quoted string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("png")
    ap.add_argument("--start", type=float, default=None, help="window start, ms")
    ap.add_argument("--length", type=float, default=None, help="window length, ms")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=0)
    a = ap.parse_args()

    if not shutil.which("gnuplot"):
        sys.exit("weft-trace-plot: gnuplot not found (Debian: apt-get install gnuplot-nox)")
    with open(a.trace) as f:
        doc = json.load(f)
    events = doc["traceEvents"] if isinstance(doc, dict) else doc

    names = {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            names[e["tid"]] = e["args"]["name"]
    timed = [e for e in events if "ts" in e]
    if not timed:
        sys.exit("weft-trace-plot: no events in %s" % a.trace)
    t0 = 0.0   # weft's timestamps count from the start of weft_run
    start = a.start if a.start is not None else 0.0
    end = start + a.length if a.length is not None else \
        max(e["ts"] + e.get("dur", 0) for e in timed) / 1000.0

    def ms(us):
        return (us - t0) / 1000.0

    def visible(lo, hi):
        return hi >= start and lo <= end

    # Rows: workers top down, then the blocking pool if it has slices.
    tids = sorted(t for t in names if t != 1000)
    if any(e.get("tid") == 1000 and e.get("ph") == "X" and
           visible(ms(e["ts"]), ms(e["ts"] + e["dur"])) for e in timed):
        tids.append(1000)
    row = {t: len(tids) - 1 - i for i, t in enumerate(tids)}

    colour = {}
    boxes, labels, arrows_x, arrows_in, steals = [], [], [], [], []
    flow_start = {}
    for e in timed:
        if e.get("ph") == "s" and e.get("cat") == "wake":
            flow_start[e["id"]] = e
    span = max(end - start, 1e-6)
    for e in timed:
        tid = e.get("tid")
        if tid not in row:
            continue
        y = row[tid]
        if e.get("ph") == "X":
            lo, hi = ms(e["ts"]), ms(e["ts"] + e["dur"])
            if not visible(lo, hi):
                continue
            lo, hi = max(lo, start), min(hi, end)
            if e.get("cat") == "park":
                boxes.append(((lo + hi) / 2, y, (hi - lo) / 2, 0.08, PARK_COLOUR))
                continue
            name = e.get("name", "task")
            if name not in colour:
                colour[name] = PALETTE[len(colour) % len(PALETTE)]
            boxes.append(((lo + hi) / 2, y, max((hi - lo) / 2, span / 4000), 0.32,
                          colour[name]))
            if (hi - lo) > span * 0.045:
                labels.append(((lo + hi) / 2, y, name))
        elif e.get("ph") == "f" and e.get("cat") == "wake":
            s = flow_start.get(e["id"])
            if not s or s.get("tid") not in row:
                continue
            x0, x1 = ms(s["ts"]), ms(e["ts"])
            if not visible(min(x0, x1), max(x0, x1)):
                continue
            y0, y1 = row[s["tid"]], y
            if y0 != y1:
                arrows_x.append((x0, y0 + (0.34 if y1 > y0 else -0.34), x1 - x0,
                                 (y1 - y0) - (0.68 if y1 > y0 else -0.68)))
            else:
                arrows_in.append((x0, y0 + 0.42, x1 - x0, 0))
        elif e.get("ph") == "i" and e.get("cat") == "steal":
            x = ms(e["ts"])
            if start <= x <= end:
                steals.append((x, y - 0.45))

    tmp = tempfile.mkdtemp(prefix="weft-trace-plot.")
    try:
        def write(name, rows, fmt):
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                for r in rows:
                    f.write(fmt % r + "\n")
                if not rows:
                    f.write("# none\n")
            return path

        fb = write("boxes.dat", [(x, y, dx, dy, int(c[1:], 16)) for x, y, dx, dy, c in boxes],
                   "%.6f %d %.6f %.3f %d")
        fx = write("arrows_x.dat", arrows_x, "%.6f %.3f %.6f %.3f")
        fi = write("arrows_in.dat", arrows_in, "%.6f %.3f %.6f %.3f")
        fs = write("steals.dat", steals, "%.6f %.3f")
        height = a.height or (170 + 95 * len(tids))
        gp = [
            "set terminal pngcairo size %d,%d font 'sans,10' noenhanced" % (a.width, height),
            "set output %s" % gp_str(a.png),
            "set title %s" % gp_str("WEFT_TRACE: %s (%.1f ms)" % (os.path.basename(a.trace), end - start)),
            "set xlabel 'ms since the runtime started'",
            "set xrange [%.6f:%.6f]" % (start, end),
            "set yrange [-0.7:%.2f]" % (len(tids) - 0.3),
            "set ytics (%s)" % ", ".join("%s %d" % (gp_str(names.get(t, str(t))), row[t]) for t in tids),
            "set grid xtics lc rgb '#e8e8e8'",
            "set key outside right top vertical Left reverse samplen 1.5 spacing 1.1",
            "set style fill solid 1.0 noborder",
            "unset colorbox",
        ]
        for i, (x, y, text) in enumerate(labels, 1):
            gp.append("set label %d %s at %.6f,%d center front tc rgb 'white' font 'sans,8'"
                      % (i, gp_str(text), x, y))
        plots = [
            "%s using 1:2:3:4:5 with boxxyerror lc rgb variable notitle" % gp_str(fb),
            "%s using 1:2:3:4 with vectors head filled size screen 0.006,20 lw 0.6 "
            "lc rgb '#b0b0b0' notitle" % gp_str(fi),
            "%s using 1:2:3:4 with vectors head filled size screen 0.008,20 lw 1.1 "
            "lc rgb '#8b0000' title 'wake-up'" % gp_str(fx),
            "%s using 1:2 with points pt 9 ps 1.0 lc rgb '#000000' title 'steal'" % gp_str(fs),
            "keyentry with boxes fc rgb '%s' title 'park'" % PARK_COLOUR,
        ]
        for name, c in colour.items():
            plots.append("keyentry with boxes fc rgb '%s' title %s" % (c, gp_str(name)))
        gp.append("plot " + ", \\\n     ".join(plots))
        script = os.path.join(tmp, "plot.gp")
        with open(script, "w") as f:
            f.write("\n".join(gp) + "\n")
        r = subprocess.run(["gnuplot", script], capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            sys.exit("weft-trace-plot: gnuplot failed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("weft-trace-plot: %s: %d rows, %d run slices, %d wake-ups between workers"
          % (a.png, len(tids), sum(1 for b in boxes if b[4] != PARK_COLOUR), len(arrows_x)))


if __name__ == "__main__":
    main()
