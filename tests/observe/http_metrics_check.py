#!/usr/bin/env python3
"""http_metrics_check.py HTTP_HELLO: examples/http_hello's /metrics.

Starts http_hello on a free port for a few seconds, fetches /metrics twice
and / once, and checks: status 200, the Prometheus content type, every
line a HELP/TYPE comment or a sample of a typed weft_ metric, counters
never going down between the two scrapes, and the hello page unchanged.
"""
import re
import subprocess
import sys
import urllib.request

SAMPLE = re.compile(r'^(weft_[a-z_]+)(\{worker="\d+"\})? (\d+(\.\d+)?)$')


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        assert r.status == 200, r.status
        ctype = r.headers["Content-Type"]
        assert ctype.startswith("text/plain; version=0.0.4"), ctype
        text = r.read().decode()
    types, values = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge"), line
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample: %r" % line
        assert m.group(1) in types, "sample before its TYPE: %r" % line
        values[m.group(1) + (m.group(2) or "")] = (types[m.group(1)], float(m.group(3)))
    return values


def main():
    p = subprocess.Popen([sys.argv[1], "0", "5"], stdout=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline()
        m = re.search(r":(\d+)/", first)
        assert m, "no port in %r" % first
        port = int(m.group(1))
        a = scrape(port)
        b = scrape(port)
        assert "weft_tasks_alive" in a and 'weft_worker_busy_seconds_total{worker="0"}' in a, a
        for k, (kind, v) in a.items():
            if kind == "counter":
                assert b[k][1] >= v, "%s went down: %s -> %s" % (k, v, b[k][1])
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=10) as r:
            assert r.read() == b"Hello, world!"
        print("http_hello /metrics: ok (%d series)" % len(a))
    finally:
        p.terminate()
        p.wait()


if __name__ == "__main__":
    main()
