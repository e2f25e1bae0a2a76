#!/usr/bin/env python3
"""Per-request counts that do not depend on the machine's load: system calls, instructions and
allocations of this tool per HTTP request, before (a git revision) and after, side by side.
Called by `scripts/bench --counts` (which builds both binaries); standard library only.

Method. For each binary, scenario and counter, the tool is started under the counter twice, against
the same php-fpm, and driven by a load of C keep-alive connections that each send R requests one
after the other (GET /fcgi-ping, coalescing on, no cache): once with R = R1 and once with R = R2.
The difference of the two totals, divided by C x (R2 - R1), is the cost of one request in a
connection that is already open: start-up, connection set-up and shutdown cancel out.

Counters:
- system calls: `strace -f -c` (every thread: the server's, the reactor helper's, the log writer's);
- user-space instructions: `valgrind --tool=callgrind` (all threads); kernel instructions through
  `perf stat -e instructions:k` where the machine has performance counters (`n/a` otherwise);
- allocations: `valgrind --tool=dhat` (blocks and bytes allocated).

Under strace and valgrind the tool runs several times slower than natively, so at c1000 coalescing
shares probes among more waiters than it would at full speed: compare c1000 figures between
revisions, not with the wall-clock benchmark.
"""

import argparse
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the same php-fpm, process and cleanup helpers as the benchmark)

SCENARIOS = {  # name: (connections, requests per connection in the short and the long run)
    "c1": (1, 200, 1200),
    "c1000": (1000, 2, 6),
    # a new connection per request, one at a time, `Connection: close`: as the kubelet probes
    "close": (1, 200, 1200),
}
REQUEST = b"GET /fcgi-ping HTTP/1.1\r\nHost: bench\r\n\r\n"
CLOSING_REQUEST = b"GET /fcgi-ping HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
LOAD_DEADLINE = 300.0  # seconds for one load under a counter


def say(msg):
    print(f"counts: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# the load: C keep-alive connections, R sequential requests each

def drive(port, conns, per_conn):
    """Sends `per_conn` requests on each of `conns` connections (one in flight per connection);
    returns the number of 200 answers. Raises on a non-200 answer, a close or the deadline."""
    sel = selectors.DefaultSelector()
    state = {}
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setblocking(False)
        state[s] = {"left": per_conn, "buf": b""}
        s.send(REQUEST)
        sel.register(s, selectors.EVENT_READ)
    ok = 0
    end = time.monotonic() + LOAD_DEADLINE
    while state:
        if time.monotonic() > end:
            raise bench.BenchError(f"load of {conns}x{per_conn} requests not done within {LOAD_DEADLINE:.0f} s")
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            st = state[s]
            chunk = s.recv(65536)
            if not chunk:
                raise bench.BenchError("the server closed a keep-alive connection during the load")
            st["buf"] += chunk
            while True:
                head_end = st["buf"].find(b"\r\n\r\n")
                if head_end < 0:
                    break
                head = st["buf"][:head_end].decode("latin-1")
                m = re.search(r"(?im)^content-length:\s*(\d+)", head)
                length = int(m.group(1)) if m else 0
                total = head_end + 4 + length
                if len(st["buf"]) < total:
                    break
                status = head.split(" ", 2)[1]
                if status != "200":
                    raise bench.BenchError(f"an answer was {head.splitlines()[0]!r}, not 200")
                st["buf"] = st["buf"][total:]
                ok += 1
                st["left"] -= 1
                if st["left"] > 0:
                    s.send(REQUEST)
            if st["left"] == 0:
                sel.unregister(s)
                s.close()
                del state[s]
    return ok


def drive_closing(port, count):
    """`count` requests, each on a new connection that the server closes after its answer."""
    ok = 0
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(CLOSING_REQUEST)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            if not data.startswith(b"HTTP/1.1 200 "):
                raise bench.BenchError(f"an answer was {data[:40]!r}, not 200")
            ok += 1
    return ok


# ------------------------------------------------------------------------------------------------
# one counted run

def counted_run(counter, binary, fpm_port, tmp, conns, per_conn, tag, closing=False):
    """Starts `binary` under `counter`, waits until it serves, drives the load, stops it with
    SIGTERM; returns the counter's totals as a dict."""
    port = bench.free_port()
    out = os.path.join(tmp, f"{tag}.out")
    log = os.path.join(tmp, f"{tag}.log")
    env = dict(os.environ, SERVER=f"127.0.0.1:{port}", DESTINATION="127.0.0.1",
               DESTINATION_PORT=str(fpm_port), RUST_LOG="warn", MAX_CONNECTIONS="2048",
               CLIENT_TIMEOUT="60s", TIMEOUT="30s")
    for var in ("COALESCE", "CACHE_TTL"):
        env.pop(var, None)
    if counter == "syscalls":
        argv = ["strace", "-f", "-c", "-o", out, binary]
    elif counter == "instructions":
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary]
    elif counter == "kernel":
        argv = ["perf", "stat", "-x,", "-e", "instructions:k", "-o", out, binary]
    else:
        argv = ["valgrind", "--tool=dhat", f"--dhat-out-file={out}", binary]
    with open(log, "w") as lf:
        proc = bench.spawn(argv, env=env, stdout=lf, stderr=lf)
    bench.wait_until(f"{tag}: port {port}", lambda: bench.port_open(port), 120.0, proc, log)
    served = drive_closing(port, per_conn) if closing else drive(port, conns, per_conn)
    if served != conns * per_conn:
        raise bench.BenchError(f"{tag}: {served} of {conns * per_conn} requests answered")
    # strace and perf run the tool as their child: the tool gets the signal, and they report when
    # it has exited; valgrind runs it in its own process.
    targets = [p for p in bench.tree(proc.pid) if p != proc.pid] if counter in ("syscalls", "kernel") else [proc.pid]
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        raise bench.BenchError(f"{tag}: did not exit within 120 s of SIGTERM\n{bench.tail(log)}")
    if proc in bench._children:
        bench._children.remove(proc)
    return parse_counter(counter, out, log, tag)


def parse_counter(counter, out, log, tag):
    text = bench.read_file(out if counter != "instructions" and counter != "allocations" else log)
    if counter == "syscalls":
        # strace -c: the last line is "100.00 ... total" with the call count in the 4th column
        for line in text.splitlines():
            fields = line.split()
            if fields and fields[-1] == "total":
                return {"calls": int(fields[3])}
    elif counter == "instructions":
        m = re.findall(r"Collected : (\d+)", text)
        if m:
            return {"instructions": int(m[-1])}
    elif counter == "allocations":
        m = re.search(r"Total:\s+([\d,]+) bytes in ([\d,]+) blocks", text)
        if m:
            return {"bytes": int(m.group(1).replace(",", "")), "blocks": int(m.group(2).replace(",", ""))}
    elif counter == "kernel":
        for line in text.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2].startswith("instructions"):
                if fields[0].strip().isdigit():
                    return {"instructions": int(fields[0])}
                return {"instructions": None}
    raise bench.BenchError(f"{tag}: no {counter} figure in {out if counter == 'syscalls' else log}\n{bench.tail(log)}")


# System calls vary from run to run, more on a busy machine: async-io's helper thread takes the
# reactor from the main thread when the main thread is late (a futex hand-over and a reactor round
# more). Their figure is the median of this many pairs of runs, with the spread printed beside it;
# run it on a quiet machine. Instructions and allocations are the same at every run: one pair.
SYSCALL_PAIRS = 5


def per_request(counter, binary, fpm_port, tmp, scenario, label):
    conns, short, long_ = SCENARIOS[scenario]
    extra = conns * (long_ - short)
    estimates = []
    for pair in range(SYSCALL_PAIRS if counter == "syscalls" else 1):
        runs = []
        for per_conn in (short, long_):
            tag = f"{label}-{scenario}-{counter}-{per_conn}-{pair}"
            runs.append(counted_run(counter, binary, fpm_port, tmp, conns, per_conn, tag, scenario == "close"))
        estimates.append({key: None if runs[0][key] is None or runs[1][key] is None
                          else (runs[1][key] - runs[0][key]) / extra for key in runs[0]})
    out = {}
    for key in estimates[0]:
        values = sorted(e[key] for e in estimates if e[key] is not None)
        out[key] = values[len(values) // 2] if len(values) == len(estimates) else None
        if len(values) > 1:
            out[key + "_spread"] = (values[0], values[-1])
    return out


def perf_works():
    try:
        r = subprocess.run(["perf", "stat", "-x,", "-e", "instructions:k", "true"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and "not supported" not in r.stderr and "<not" not in r.stderr


def fmt(v, digits=1):
    return "n/a" if v is None else f"{v:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench --counts", description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default="c1,close,c1000")
    ap.add_argument("--counters", default="syscalls,instructions,allocations",
                    help="which counts: syscalls, instructions (user, and kernel where perf can), allocations")
    ap.add_argument("--parse-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}")
    if args.parse_only:
        return 0
    binaries = [("after", os.environ["COUNTS_AFTER"])]
    if os.environ.get("COUNTS_BEFORE"):
        binaries.insert(0, (f"before ({os.environ.get('COUNTS_BEFORE_REV', '?')})", os.environ["COUNTS_BEFORE"]))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, bench._on_signal)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))

    counters = [c for c in ("syscalls", "instructions", "allocations") if c in args.counters.split(",")]
    if "instructions" in counters:
        if perf_works():
            counters.insert(counters.index("instructions") + 1, "kernel")
        else:
            say("perf has no instruction counters on this machine: kernel instructions are n/a")
    tmp = tempfile.mkdtemp(prefix="fcgi-counts-")
    results = {}
    t0 = time.monotonic()
    try:
        _fpm, fpm_port, _bin, version = bench.start_php_fpm(tmp)
        say(f"php-fpm ready on 127.0.0.1:{fpm_port} ({version})")
        for scenario in scenarios:
            for label, binary in binaries:
                row = {}
                for counter in counters:
                    say(f"{label} {scenario}: {counter}")
                    row[counter] = per_request(counter, binary, fpm_port, tmp, scenario, label.split()[0])
                results[(scenario, label)] = row
    except bench.BenchError as e:
        say(f"error: {e}\n  logs kept in {tmp}")
        return 1
    finally:
        bench.cleanup()

    labels = [label for label, _ in binaries]
    print(f"\nper HTTP request (GET /fcgi-ping, coalescing on; c1 and c1000 keep-alive, close a new "
          f"connection per request); measured in {time.monotonic() - t0:.0f} s")
    header = ["scenario", "figure"] + labels + (["after/before"] if len(labels) == 2 else [])
    rows = []
    for scenario in scenarios:
        for name, counter, key in [("system calls", "syscalls", "calls"),
                                   ("user instructions", "instructions", "instructions"),
                                   ("kernel instructions", "kernel", "instructions"),
                                   ("allocations", "allocations", "blocks"),
                                   ("bytes allocated", "allocations", "bytes")]:
            vals = [results[(scenario, label)].get(counter, {}).get(key) for label in labels]
            spreads = [results[(scenario, label)].get(counter, {}).get(key + "_spread") for label in labels]
            row = [scenario, name] + [fmt(v) + (f" ({sp[0]:.1f}-{sp[1]:.1f})" if sp else "")
                                      for v, sp in zip(vals, spreads)]
            if len(vals) == 2:
                row.append("n/a" if None in vals or not vals[0] else f"{vals[1] / vals[0]:.2f}")
            rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths]] + rows:
        print("  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
