#!/usr/bin/env python3
"""Side-by-side benchmark: this tool, nginx and the original tool, all bridging GET /fcgi-ping to one
php-fpm on loopback. Called by scripts/bench (which installs and builds what is needed); standard
library only.

For each (server variant, scenario) wrk runs against the server; meanwhile /proc is read for the CPU
time of the server and of php-fpm (every process of each tree), the server's peak RSS (VmHWM, reset
before the run through clear_refs) and its thread count. The tables show medians over --runs and
ratios to nginx and to the original tool in the same scenario.
"""

import argparse
import ctypes
import glob
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

SCENARIOS = {  # name: (connections, wrk threads)
    "c1": (1, 1),
    "c50": (50, 2),
    "c1000": (1000, 2),
}
WRK_TIMEOUT = "5s"
START_DEADLINE = 15.0  # seconds for a server or php-fpm to become ready
SETTLE_DEADLINE = 10.0  # seconds for php-fpm and the server to go idle between runs
FPM_WORKERS = 4

WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH-RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d p50=%d p90=%d p99=%d max=%d mean=%.1f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def say(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ------------------------------------------------------------------------------------------------
# processes we start, and their cleanup

_children = []  # Popen objects, each the leader of its own process group
_libc = None


def _set_pdeathsig():
    # Runs in the child between fork and exec: if this script dies (even by SIGKILL), the child's
    # leader gets SIGKILL; the normal path is cleanup() below.
    try:
        if _libc is not None:
            _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(argv, *, env=None, stdout=None, stderr=None):
    p = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=stderr if stderr is not None else subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_set_pdeathsig,
    )
    _children.append(p)
    return p


def stop(p, grace=5.0):
    """SIGTERM the process group, then SIGKILL what is left of it after `grace` seconds."""
    if p.poll() is not None and p not in _children:
        return  # stopped before: its group id may belong to someone else by now
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(p.pid, sig)  # the group: nginx and php-fpm workers too
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            # the leader is gone; workers it left behind in its group go now
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        break
    if p in _children:
        _children.remove(p)


def cleanup():
    # Servers first (they talk to php-fpm), php-fpm last: reverse start order.
    for p in reversed(list(_children)):
        stop(p)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# ------------------------------------------------------------------------------------------------
# /proc

def read_file(path):
    with open(path) as f:
        return f.read()


def proc_stat(pid):
    """(ppid, utime+stime ticks) or None when the process is gone."""
    try:
        s = read_file(f"/proc/{pid}/stat")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = s[s.rfind(")") + 2:].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15
    return int(rest[1]), int(rest[11]) + int(rest[12])


def proc_status(pid):
    try:
        text = read_file(f"/proc/{pid}/status")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def kb(status, key):
    v = status.get(key, "0 kB").split()
    return int(v[0]) if v else 0


def tree(root):
    """root and all its descendants that are alive now."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = proc_stat(int(d))
        if st:
            children.setdefault(st[0], []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if proc_stat(pid) is None:
            continue
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pids):
    out = {}
    for pid in pids:
        st = proc_stat(pid)
        if st:
            out[pid] = st[1]
    return out


def cpu_delta_s(before, after):
    ticks = sum(t - before.get(pid, 0) for pid, t in after.items())
    return ticks / CLK_TCK


def machine_busy():
    fields = [int(x) for x in read_file("/proc/stat").splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields), idle


# ------------------------------------------------------------------------------------------------
# network helpers (loopback only)

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_get(port, path="/fcgi-ping", timeout=3.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read(4096)
    finally:
        c.close()


def _fcgi_nv(name, value):
    def ln(n):
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    n, v = name.encode(), value.encode()
    return ln(len(n)) + ln(len(v)) + n + v


def _fcgi_record(rtype, content, req_id=1):
    pad = (8 - len(content) % 8) % 8
    return struct.pack(">BBHHBx", 1, rtype, req_id, len(content), pad) + content + b"\0" * pad


def fcgi_get(port, script, timeout=2.0):
    """One FastCGI GET of `script` (php-fpm's ping or status path); returns stdout bytes."""
    params = b"".join(_fcgi_nv(k, v) for k, v in [
        ("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", script), ("SCRIPT_FILENAME", script),
        ("REQUEST_URI", script), ("DOCUMENT_URI", script), ("QUERY_STRING", ""),
        ("SERVER_PROTOCOL", "HTTP/1.1"), ("GATEWAY_INTERFACE", "CGI/1.1"),
    ])
    msg = (_fcgi_record(1, struct.pack(">HB5x", 1, 0)) + _fcgi_record(4, params) + _fcgi_record(4, b"")
           + _fcgi_record(5, b""))
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(msg)
        buf, out = b"", b""
        while len(buf) < 1 << 20:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 8:
                _, rtype, _, clen, plen = struct.unpack(">BBHHB", buf[:7])
                if len(buf) < 8 + clen + plen:
                    break
                content, buf = buf[8:8 + clen], buf[8 + clen + plen:]
                if rtype == 6:
                    out += content
                elif rtype == 3:
                    return out
        raise BenchError(f"php-fpm on 127.0.0.1:{port} closed without FCGI_END_REQUEST for {script}")


def fpm_status(port):
    text = fcgi_get(port, "/fpm-status").decode("utf-8", "replace")
    _, _, body = text.partition("\r\n\r\n")
    out = {}
    for line in body.splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = v.strip()
    return out


# ------------------------------------------------------------------------------------------------
# php-fpm and the servers

class Server:
    def __init__(self, name, kind, start_fn):
        self.name = name  # row label, e.g. "ours coalesce"
        self.kind = kind  # ours | nginx | original
        self.start_fn = start_fn
        self.proc = None
        self.port = None
        self.log = None
        self.idle = None
        self.fresh = False  # started and not measured yet
        self.deaths = 0
        self.scenarios = None  # None: every scenario; else only these

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pids(self):
        return tree(self.proc.pid) if self.alive() else []


def tail(path, n=15):
    try:
        lines = read_file(path).splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in lines[-n:]) or "    (empty)"


def log_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


_TS = re.compile(r"^\S*\d{4}[-/]\d\d[-/]\d\d[T ]?[\d:.]*Z?\s*|^\[[^\]]*\d\d:\d\d[^\]]*\]\s*")


_FRAME = re.compile(r"^(\d+: |at /|at \S+\.rs:)")


def log_kinds(path, offset, limit=4 << 20):
    """Lines appended to `path` since `offset`, grouped by shape (timestamps dropped, numbers as N):
    {shape: count}."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(limit)
    except OSError:
        return {}
    kinds = {}
    for line in data.decode("utf-8", "replace").splitlines():
        line = _TS.sub("", line.strip())
        if not line or _FRAME.match(line):  # backtrace frames: the panic line says what happened
            continue
        line = re.sub(r"\[\w+(::\w+)+\]\s*", "", line)  # [crate::module]
        line = re.sub(r"\[?\b[\d.]+\.\d+\]?:\d+|\b\d+\.\d+\.\d+\.\d+\b", "ADDR", line)
        shape = re.sub(r"\d+", "N", re.sub(r"\s+", " ", line))[:140]
        kinds[shape] = kinds.get(shape, 0) + 1
    return kinds


def wait_until(what, pred, deadline_s, proc=None, log=None):
    end = time.monotonic() + deadline_s
    delay = 0.01
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what}: exited with status {proc.returncode} while starting\n"
                             f"  log {log}:\n{tail(log) if log else ''}")
        try:
            if pred():
                return
        except (OSError, BenchError, http.client.HTTPException):
            pass
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    raise BenchError(f"{what}: not ready within {deadline_s:.0f} s\n  log {log}:\n{tail(log) if log else ''}")


def find_php_fpm():
    explicit = os.environ.get("PHP_FPM")
    if explicit:
        return explicit
    cands = sorted(glob.glob("/usr/sbin/php-fpm*"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p)] or [0])
    if not cands:
        raise BenchError("no /usr/sbin/php-fpm*: apt-get install php-fpm, or set PHP_FPM=/path/to/php-fpm")
    return cands[-1]


def start_php_fpm(tmp):
    d = os.path.join(tmp, "php-fpm")
    os.makedirs(d, exist_ok=True)
    port = free_port()
    root = os.geteuid() == 0
    conf = os.path.join(d, "php-fpm.conf")
    with open(conf, "w") as f:
        f.write(f"""[global]
pid = {d}/php-fpm.pid
error_log = {d}/error.log
log_level = warning
daemonize = no

[bench]
{"user = root" if root else ""}
{"group = root" if root else ""}
listen = 127.0.0.1:{port}
listen.backlog = 511
pm = static
pm.max_children = {FPM_WORKERS}
pm.max_requests = 0
ping.path = /fpm-ping
ping.response = pong
pm.status_path = /fpm-status
catch_workers_output = no
""")
    binary = find_php_fpm()
    argv = [binary] + (["-R"] if root else []) + ["-F", "-y", conf, "-p", d]
    log = os.path.join(d, "stderr.log")
    with open(log, "w") as lf:
        p = spawn(argv, stdout=lf, stderr=subprocess.STDOUT)

    def ready():
        return b"pong" in fcgi_get(port, "/fpm-ping", timeout=1.0) and len(tree(p.pid)) >= FPM_WORKERS + 1

    wait_until(f"php-fpm ({binary})", ready, START_DEADLINE, p, os.path.join(d, "error.log"))
    version = subprocess.run([binary, "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    return p, port, binary, (version[0] if version else "?")


def start_ours(tmp, fpm_port, coalesce, binary=None):
    def start(srv):
        srv.port = free_port()
        env = dict(os.environ, SERVER=f"127.0.0.1:{srv.port}", DESTINATION="127.0.0.1",
                   DESTINATION_PORT=str(fpm_port), RUST_LOG="warn", RUST_BACKTRACE="0")
        env.pop("COALESCE", None)
        env.pop("CACHE_TTL", None)
        if not coalesce:
            env["COALESCE"] = "off"
        srv.log = os.path.join(tmp, f"{srv.name.replace(' ', '-')}.log")
        with open(srv.log, "a") as lf:
            srv.proc = spawn([binary or os.environ["BENCH_OURS"]], env=env, stdout=lf, stderr=lf)
    return start


def start_floor(tmp, fpm_port):
    """scripts/floor.c: eight blocking system calls per probe, one connection at a time."""
    def start(srv):
        srv.port = free_port()
        srv.log = os.path.join(tmp, "floor.log")
        with open(srv.log, "a") as lf:
            srv.proc = spawn([os.environ["BENCH_FLOOR"], str(srv.port), str(fpm_port)], stdout=lf, stderr=lf)
    return start


def start_original(tmp, fpm_port):
    def start(srv):
        srv.port = free_port()
        env = dict(os.environ, SERVER=f"127.0.0.1:{srv.port}", DESTINATION="127.0.0.1",
                   DESTINATION_PORT=str(fpm_port), PING_PATH="/fpm-ping", PING_RESPONSE="pong",
                   RUST_LOG="warn", RUST_BACKTRACE="0")
        srv.log = os.path.join(tmp, "original.log")
        with open(srv.log, "a") as lf:
            srv.proc = spawn([os.environ["BENCH_ORIGINAL"]], env=env, stdout=lf, stderr=lf)
    return start


def start_nginx(tmp, fpm_port, nofile):
    def start(srv):
        srv.port = free_port()
        d = os.path.join(tmp, "nginx")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        temps = "\n".join(f"    {k}_temp_path {d}/{k}_temp;" for k in
                          ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(conf, "w") as f:
            f.write(f"""{"user root;" if os.geteuid() == 0 else ""}
worker_processes auto;
worker_rlimit_nofile {nofile};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temps}
    server {{
        listen 127.0.0.1:{srv.port};
        location = /fcgi-ping {{
            fastcgi_pass 127.0.0.1:{fpm_port};
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_NAME /fpm-ping;
            fastcgi_param SCRIPT_FILENAME /fpm-ping;
            fastcgi_param REQUEST_URI /fpm-ping;
        }}
    }}
}}
""")
        srv.log = os.path.join(d, "error.log")
        with open(os.path.join(d, "stderr.log"), "a") as lf:
            srv.proc = spawn([os.environ["BENCH_NGINX"], "-c", conf, "-p", d, "-e", srv.log,
                              "-g", "daemon off;"], stdout=lf, stderr=lf)
    return start


def launch(srv):
    srv.start_fn(srv)
    port = srv.port
    wait_until(f"{srv.name}: port 127.0.0.1:{port}", lambda: port_open(port), START_DEADLINE, srv.proc, srv.log)
    if srv.kind == "nginx":  # master + workers up
        wait_until(f"{srv.name}: workers", lambda: len(srv.pids()) >= 2, START_DEADLINE, srv.proc, srv.log)
    status, body = http_get(port)
    if status != 200:
        raise BenchError(f"{srv.name}: first GET /fcgi-ping answered {status} {body[:200]!r}, not 200\n"
                         f"  log {srv.log}:\n{tail(srv.log)}")


def idle_snapshot(srv):
    pids = srv.pids()
    sts = [proc_status(p) for p in pids]
    pss = 0
    for p in pids:
        try:
            pss += kb(dict((k, v.strip()) for k, _, v in (l.partition(":") for l in
                           read_file(f"/proc/{p}/smaps_rollup").splitlines())), "Pss")
        except OSError:
            pass
    names = sorted({read_file(t + "/comm").strip() for p in pids for t in glob.glob(f"/proc/{p}/task/*")
                    if os.path.exists(t + "/comm")})
    return {"rss_kb": sum(kb(s, "VmRSS") for s in sts), "anon_kb": sum(kb(s, "RssAnon") for s in sts),
            "pss_kb": pss, "thread_names": names, "processes": len(pids),
            "threads": sum(int(s.get("Threads", "0")) for s in sts)}


# ------------------------------------------------------------------------------------------------
# one measurement

def half_open(port):
    """Connections to 127.0.0.1:`port` still in SYN-RECV (state 03 in /proc/net/tcp*)."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = read_file(path).splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 3 and cols[3] == "03" and cols[1].rsplit(":", 1)[-1] == f"{port:04X}":
                n += 1
    return n


def settle(srv, fpm_port, fpm_proc):
    """Poll until, for half a second in a row, php-fpm has no queue and no busy worker but the one
    answering, no half-open connection waits at its listener, and neither the server's nor
    php-fpm's CPU time moves; bounded by SETTLE_DEADLINE.

    The half-open ones matter: a server that flooded php-fpm (the original tool at 1,000
    connections) leaves hundreds of SYN-RECV entries behind for a few seconds, and while they are
    there new connections to php-fpm stall for up to seconds (SYN-ACK retransmissions; seen as
    probes timing out "while reading the answer, 0 bytes received" in whichever server runs next)."""
    end = time.monotonic() + SETTLE_DEADLINE
    last, quiet = None, 0
    while time.monotonic() < end:
        if fpm_proc.poll() is not None:
            raise BenchError(f"php-fpm exited with status {fpm_proc.returncode}")
        try:
            st = fpm_status(fpm_port)
            fpm_idle = st.get("listen queue") == "0" and st.get("active processes") == "1"
        except (OSError, BenchError):
            fpm_idle = False
        ticks = (sum(cpu_ticks(srv.pids()).values()), sum(cpu_ticks(tree(fpm_proc.pid)).values()))
        # php-fpm's own status answers may cost a tick now and then
        still = last is not None and ticks[0] == last[0] and ticks[1] - last[1] <= 1
        quiet = quiet + 1 if fpm_idle and still and half_open(fpm_port) == 0 else 0
        if quiet >= 5:
            return True
        last = ticks
        time.sleep(0.1)
    return False


class Sampler(threading.Thread):
    def __init__(self, root_pid):
        super().__init__(daemon=True)
        self.root = root_pid
        self.stop_evt = threading.Event()
        self.max_threads = 0
        self.max_rss_kb = 0
        self.max_processes = 0

    def run(self):
        pids, refreshed = tree(self.root), time.monotonic()
        while not self.stop_evt.is_set():
            if time.monotonic() - refreshed > 0.5:
                pids, refreshed = tree(self.root), time.monotonic()
            sts = [proc_status(p) for p in pids]
            self.max_threads = max(self.max_threads, sum(int(s.get("Threads", "0")) for s in sts))
            self.max_rss_kb = max(self.max_rss_kb, sum(kb(s, "VmRSS") for s in sts))
            self.max_processes = max(self.max_processes, len([s for s in sts if s]))
            self.stop_evt.wait(0.05)


def parse_wrk(out):
    m = re.search(r"^BENCH-RESULT (.*)$", out, re.M)
    if not m:
        raise BenchError(f"no BENCH-RESULT line in wrk output:\n{out[-2000:]}")
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    r["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    return r


def measure(srv, scenario, duration_s, fpm_port, fpm_proc, tmp):
    conns, threads = SCENARIOS[scenario]
    settled = settle(srv, fpm_port, fpm_proc)
    spids = srv.pids()
    for pid in spids:  # reset VmHWM to the current RSS
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError as e:
            say(f"warning: cannot reset VmHWM of {srv.name} pid {pid}: {e}")
    rss_before = sum(kb(proc_status(p), "VmRSS") for p in spids)
    fpm_before_status = fpm_status(fpm_port)
    fpm_pids = tree(fpm_proc.pid)
    s_before, f_before = cpu_ticks(spids), cpu_ticks(fpm_pids)
    m_before = machine_busy()
    fpm_log = os.path.join(tmp, "php-fpm", "error.log")
    slog_at, flog_at = log_size(srv.log), log_size(fpm_log)
    lua = os.path.join(tmp, "done.lua")
    argv = [os.environ["BENCH_WRK"], f"-t{threads}", f"-c{conns}", f"-d{duration_s}s", "--timeout", WRK_TIMEOUT,
            "--latency", "-s", lua, f"http://127.0.0.1:{srv.port}/fcgi-ping"]
    out_path = os.path.join(tmp, "wrk.out")
    with open(out_path, "w") as of:
        wrk = spawn(argv, stdout=of, stderr=subprocess.STDOUT)
    sampler = Sampler(srv.proc.pid)
    sampler.start()
    try:
        wrk.wait(timeout=duration_s + 30)
    except subprocess.TimeoutExpired:
        say(f"warning: wrk did not finish within {duration_s + 30} s; stopping it")
    finally:
        sampler.stop_evt.set()
        sampler.join(timeout=5)
        stop(wrk)
    s_after, f_after = cpu_ticks(srv.pids() or spids), cpu_ticks(tree(fpm_proc.pid) or fpm_pids)
    m_after = machine_busy()
    hwm = sum(kb(proc_status(p), "VmHWM") for p in srv.pids())
    out = read_file(out_path)
    w = parse_wrk(out)
    # probes still in flight when wrk stopped finish (or time out) now; their log lines and FastCGI
    # requests belong to this run (php-fpm's status page would wait behind them anyway)
    settle(srv, fpm_port, fpm_proc)
    accepted = None
    for _ in range(3):
        try:
            st = fpm_status(fpm_port)
            # every status request counts as one accepted connection: the one before the run and the
            # settle polls are excluded by reading the counter right before and right after
            accepted = int(st["accepted conn"]) - int(fpm_before_status["accepted conn"]) - 1
            break
        except (OSError, BenchError, KeyError, ValueError):
            time.sleep(0.2)
    server_log, fpm_log_kinds = log_kinds(srv.log, slog_at), log_kinds(fpm_log, flog_at)
    req = int(w["requests"])
    dur = w["duration_us"] / 1e6 or duration_s
    scpu, fcpu = cpu_delta_s(s_before, s_after), cpu_delta_s(f_before, f_after)
    total, idle = m_after[0] - m_before[0], m_after[1] - m_before[1]
    return {
        "server": srv.name, "kind": srv.kind, "scenario": scenario, "connections": conns, "wrk_threads": threads,
        "requests": req, "duration_s": round(dur, 3), "rps": req / dur if dur else 0.0,
        "p50_us": w["p50"], "p90_us": w["p90"], "p99_us": w["p99"], "max_us": w["max"], "mean_us": w["mean"],
        "non2xx": w["non2xx"], "status_errors": int(w["status"]),
        "err_connect": int(w["connect"]), "err_read": int(w["read"]), "err_write": int(w["write"]),
        "err_timeout": int(w["timeout"]),
        "sock_errors": int(w["connect"] + w["read"] + w["write"] + w["timeout"]),
        "server_cpu_s": scpu, "fpm_cpu_s": fcpu,
        "server_cpu_us_per_probe": scpu * 1e6 / req if req else None,
        "fpm_cpu_us_per_probe": fcpu * 1e6 / req if req else None,
        "fpm_requests": accepted,
        "fpm_requests_per_probe": accepted / req if (req and accepted is not None) else None,
        "rss_before_kb": rss_before, "peak_rss_kb": hwm or sampler.max_rss_kb, "sampled_max_rss_kb": sampler.max_rss_kb,
        "max_threads": sampler.max_threads, "max_processes": sampler.max_processes,
        "server_alive_after": srv.alive(),
        "machine_busy_pct": round(100.0 * (total - idle) / total, 1) if total else None,
        "settled_before": settled,
        "server_log": server_log, "fpm_log": fpm_log_kinds,
        "wrk_output": out,
    }


# ------------------------------------------------------------------------------------------------
# reporting

NUMERIC = ["rps", "p50_us", "p99_us", "non2xx", "sock_errors", "server_cpu_us_per_probe",
           "fpm_cpu_us_per_probe", "fpm_requests_per_probe", "peak_rss_kb", "max_threads"]


def median_row(rows):
    out = dict(rows[0])
    out["runs"] = len(rows)
    for k in NUMERIC + ["requests", "err_connect", "err_read", "err_write", "err_timeout", "p90_us", "max_us",
                        "server_cpu_s", "fpm_cpu_s", "machine_busy_pct"]:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = statistics.median(vals) if vals else None
    out["server_alive_after"] = all(r["server_alive_after"] for r in rows)
    out.pop("wrk_output", None)
    return out


def f_lat(us):
    if us is None:
        return "-"
    if us < 1000:
        return f"{us:.0f}us"
    if us < 1e6:
        return f"{us / 1000:.3g}ms"
    return f"{us / 1e6:.3g}s"


def f_num(v, digits=0):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def f_mb(kb_):
    return "-" if kb_ is None else f"{kb_ / 1024:.1f}"


def ratio(a, b):
    if a is None or b is None:
        return "-"
    if b == 0:
        return "-" if a == 0 else "inf"
    return f"{a / b:.2f}x"


def table(headers, rows, align):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    def fmt(cells):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)).rstrip()
    lines = [fmt(headers), fmt(["-" * w for w in widths])]
    for r in rows:
        lines.append(fmt(r) if r else "")
    return "\n".join(lines)


def log_notes(results, servers, scenarios):
    """Lines the server and php-fpm logged during the runs, by shape: they say what the non-2xx
    answers and socket errors were."""
    lines = []
    for sc in scenarios:
        for s in servers:
            rows = [r for r in results if r["server"] == s.name and r["scenario"] == sc]
            for src in ("server_log", "fpm_log"):
                kinds = {}
                for r in rows:
                    for k, n in r[src].items():
                        kinds[k] = kinds.get(k, 0) + n
                for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:3]:
                    who = "php-fpm" if src == "fpm_log" else "log"
                    lines.append(f"  {s.name} {sc} {who}: {n:,}x {k}")
    return lines


def report(medians, servers, scenarios, sizes, idle, meta, results):
    order = [s.name for s in servers]
    by = {(m["server"], m["scenario"]): m for m in medians}
    rows = []
    for sc in scenarios:
        for name in order:
            m = by.get((name, sc))
            if not m:
                continue
            errs = f"{m['sock_errors']:.0f}"
            if m["sock_errors"]:
                errs += f" ({m['err_connect']:.0f}/{m['err_read']:.0f}/{m['err_write']:.0f}/{m['err_timeout']:.0f})"
            rows.append([name, sc, f_num(m["rps"]), f_lat(m["p50_us"]), f_lat(m["p99_us"]), f_num(m["non2xx"]), errs,
                         f_num(m["server_cpu_us_per_probe"], 1), f_num(m["fpm_cpu_us_per_probe"], 1),
                         f_num(m["fpm_requests_per_probe"], 2), f_mb(m["peak_rss_kb"]), f_num(m["max_threads"]),
                         "" if m["server_alive_after"] else "DIED"])
        rows.append(None)
    if rows and rows[-1] is None:
        rows.pop()
    print()
    print(f"fastcgi-healthcheck bench: wrk {meta['duration_s']}s per run, median of {meta['runs']} run(s), "
          f"php-fpm {FPM_WORKERS} static workers, {os.cpu_count()} cores")
    print("req/s, latency, non-2xx, sock errs (connect/read/write/timeout) from wrk; cpu us/probe = CPU time of the "
          "server\n(all processes and threads) / wrk requests, fpm us/probe the same for php-fpm (master + workers); "
          "fpm req/probe = FastCGI\nrequests php-fpm accepted / wrk requests; peak RSS = VmHWM summed over the "
          "server's processes; threads = max seen during the run;\n"
          "every measurement uses a freshly started server process (one probe before the run), all share one php-fpm;\n"
          "floor = scripts/floor.c, c1 only: the eight system calls a bridge must make per probe, blocking, and nothing else")
    print()
    print(table(["server", "scen", "req/s", "p50", "p99", "non-2xx", "sock errs (c/r/w/t)", "cpu us/probe",
                 "fpm us/probe", "fpm req/probe", "peak RSS MB", "threads", ""],
                rows_fill(rows, 13),
                "llrrrrlrrrrrl"))
    # ratios
    rrows = []
    for sc in scenarios:
        for name in order:
            m = by.get((name, sc))
            if not m:
                continue
            first = True
            for base_kind in ("nginx", "original", "floor"):
                base = next((by.get((s.name, sc)) for s in servers if s.kind == base_kind), None)
                if base is None or m["kind"] == base_kind:
                    continue
                rrows.append([name if first else "", sc if first else "", f"vs {base_kind}"]
                             + [ratio(m[k], base[k]) for k in NUMERIC])
                first = False
        rrows.append(None)
    while rrows and rrows[-1] is None:
        rrows.pop()
    if rrows:
        print()
        print("ratios in the same scenario (row / baseline; req/s higher is better, everything else lower is better)")
        print()
        print(table(["server", "scen", "baseline", "req/s", "p50", "p99", "non-2xx", "sock errs", "cpu/probe",
                     "fpm cpu", "fpm req", "peak RSS", "threads"], rows_fill(rrows, 13), "lll" + "r" * 10))
    notes = log_notes(results, servers, scenarios)
    if notes:
        print()
        print("log lines during the measurements (all runs, by shape; numbers shown as N, addresses as ADDR):")
        print("\n".join(n[:158] for n in notes))

    def vs(value, bases):
        out = [f"{ratio(value, b)} {k}" for k, b in bases if b is not None]
        return f" = {', '.join(out)}" if out else ""

    print()
    print("idle RSS (VmRSS summed over the server's processes, after start and one probe; anon = heap and stacks,")
    print("the rest is mapped pages of the binary and shared libraries; PSS splits shared pages):")
    kind_idle = {}
    for s in servers:
        if s.name in idle and s.kind not in kind_idle:
            kind_idle[s.kind] = idle[s.name]["rss_kb"]
    for s in servers:
        i = idle.get(s.name)
        if i:
            bases = [(k, kind_idle.get(k)) for k in ("nginx", "original") if k != s.kind]
            print(f"  {s.name:17} {i['rss_kb'] / 1024:5.1f} MB (anon {i['anon_kb'] / 1024:4.1f} MB, PSS {i['pss_kb'] / 1024:4.1f} MB; "
                  f"{i['processes']} proc, {i['threads']} thr: {','.join(i['thread_names'])}){vs(i['rss_kb'], bases)}")
    print("stripped binary size" + (" (nginx: /usr/sbin/nginx alone, without its shared libraries)"
                                    if "nginx" in sizes else "") + ":")
    for kind in ("ours", "ours rebuilt std", "ours static", "nginx", "original"):
        if kind in sizes:
            bases = [(k, sizes.get(k)) for k in ("nginx", "original") if k != kind]
            print(f"  {kind:17} {sizes[kind] / 1e6:5.2f} MB{vs(sizes[kind], bases)}")


def rows_fill(rows, n):
    return [r if r is not None else [""] * n for r in rows]


# ------------------------------------------------------------------------------------------------

def parse_duration(text):
    m = re.fullmatch(r"(\d+)\s*(s|m|h)?", text.strip())
    if not m or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"duration must be whole seconds like 5s, 30s or 1m, not {text!r}")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def parse_list(allowed):
    def parse(text):
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)} (comma-separated), not {text!r}")
        return items
    return parse


def stripped_size(path, tmp, label):
    copy = os.path.join(tmp, f"strip-{label}")
    shutil.copy(path, copy)
    r = subprocess.run(["strip", copy], capture_output=True, text=True)
    if r.returncode != 0:
        say(f"warning: strip {path} failed: {r.stderr.strip()}")
    return os.path.getsize(copy)


def main():
    global _libc
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=parse_duration, default=5, help="wrk duration per run (default 5s)")
    ap.add_argument("--runs", type=int, default=1, help="repeat each measurement N times, report the median")
    ap.add_argument("--only", type=parse_list(["ours", "nginx", "original", "floor"]),
                    default=["ours", "nginx", "original", "floor"])
    ap.add_argument("--scenarios", type=parse_list(list(SCENARIOS)), default=list(SCENARIOS))
    ap.add_argument("--json", metavar="FILE", help="write raw results and medians as JSON")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs) for inspection")
    ap.add_argument("--parse-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not 1 <= args.runs <= 20:
        ap.error("--runs must be 1 to 20")
    if args.parse_only:  # scripts/bench checks the options before it installs and builds
        return 0
    for var in ("BENCH_OURS", "BENCH_ORIGINAL", "BENCH_WRK", "BENCH_NGINX"):
        if var not in os.environ:
            ap.error(f"{var} is not set: run scripts/bench, not scripts/bench.py")

    try:
        _libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        _libc = None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="fcgi-bench-")
    ok = False
    try:
        with open(os.path.join(tmp, "done.lua"), "w") as f:
            f.write(WRK_LUA)
        fpm_proc, fpm_port, fpm_bin, fpm_version = start_php_fpm(tmp)
        say(f"php-fpm ready on 127.0.0.1:{fpm_port} ({fpm_version}, {FPM_WORKERS} static workers)")

        servers = []
        if "ours" in args.only:
            servers.append(Server("ours coalesce", "ours", start_ours(tmp, fpm_port, True)))
            servers.append(Server("ours no-coalesce", "ours", start_ours(tmp, fpm_port, False)))
        if "nginx" in args.only:
            servers.append(Server("nginx", "nginx", start_nginx(tmp, fpm_port, nofile)))
        if "original" in args.only:
            servers.append(Server("original", "original", start_original(tmp, fpm_port)))
        if "floor" in args.only and os.environ.get("BENCH_FLOOR") and "c1" in args.scenarios:
            floor = Server("floor", "floor", start_floor(tmp, fpm_port))
            floor.scenarios = {"c1"}  # it serves one connection at a time
            servers.append(floor)
        idle = {}
        for srv in servers:
            launch(srv)
            srv.fresh = True
            if srv.kind == "floor":
                continue
            # one probe done; let its lazily allocated memory settle, then read the idle RSS
            idle[srv.name] = idle_snapshot(srv)
            say(f"{srv.name} ready on 127.0.0.1:{srv.port} (pid {srv.proc.pid}, idle RSS "
                f"{idle[srv.name]['rss_kb'] / 1024:.1f} MB, {idle[srv.name]['threads']} threads)")

        # the static build (what containers run) is measured idle only: same code, other linking
        # and so is the glibc-linked build with std rebuilt as for the static ones
        static = os.environ.get("BENCH_OURS_STATIC")
        rebuilt = os.environ.get("BENCH_OURS_REBUILT")
        extra = []
        for name, binary in (("ours rebuilt std", rebuilt), ("ours static", static)):
            if "ours" in args.only and binary:
                srv = Server(name, "ours", start_ours(tmp, fpm_port, True, binary))
                launch(srv)
                idle[srv.name] = idle_snapshot(srv)
                say(f"{srv.name} idle RSS {idle[srv.name]['rss_kb'] / 1024:.1f} MB")
                stop(srv.proc)
                extra.append(srv)

        sizes = {}
        if "ours" in args.only:
            sizes["ours"] = stripped_size(os.environ["BENCH_OURS"], tmp, "ours")
            if rebuilt:
                sizes["ours rebuilt std"] = stripped_size(rebuilt, tmp, "ours-rebuilt")
            if static:
                sizes["ours static"] = stripped_size(static, tmp, "ours-static")
        if "nginx" in args.only:
            sizes["nginx"] = os.path.getsize(os.environ["BENCH_NGINX"])
        if "original" in args.only:
            sizes["original"] = stripped_size(os.environ["BENCH_ORIGINAL"], tmp, "original")

        total = args.runs * sum(1 for sc in args.scenarios for srv in servers
                                if srv.scenarios is None or sc in srv.scenarios)
        say(f"{total} measurements of {args.duration}s each (nofile limit {nofile})")
        results, n = [], 0
        for run in range(args.runs):
            # rotate the server order each run so that none is always measured right after another
            order = servers[run % len(servers):] + servers[:run % len(servers)]
            for sc in args.scenarios:
                for srv in order:
                    if srv.scenarios is not None and sc not in srv.scenarios:
                        continue
                    n += 1
                    # every measurement starts from a fresh server process: memory that an earlier
                    # scenario made it keep (allocators rarely give it back) must not count as this
                    # scenario's peak RSS
                    if not srv.fresh:
                        launch(srv)
                    srv.fresh = False
                    r = measure(srv, sc, args.duration, fpm_port, fpm_proc, tmp)
                    r["run"] = run + 1
                    results.append(r)
                    # stopped right away: a server must not go on working in the background while
                    # the next one is measured (the original tool's FastCGI connects outlive its
                    # clients: php-fpm's listen queue stayed at 130 for a second after wrk stopped)
                    if not srv.alive():
                        srv.deaths += 1
                        say(f"{srv.name} died during the run (status {srv.proc.returncode})\n{tail(srv.log, 8)}")
                    stop(srv.proc)
                    say(f"[{n}/{total}] {srv.name:16} {sc:5} {r['rps']:9,.0f} req/s  p99 {f_lat(r['p99_us']):>7}  "
                        f"non-2xx {r['non2xx']}  sock errs {r['sock_errors']}  "
                        f"cpu {f_num(r['server_cpu_us_per_probe'], 1)} us/probe"
                        + ("" if r["server_alive_after"] else "  SERVER DIED"))

        groups = {}
        for r in results:
            groups.setdefault((r["server"], r["scenario"]), []).append(r)
        medians = [median_row(rows) for rows in groups.values()]
        meta = {"duration_s": args.duration, "runs": args.runs}
        report(medians, servers + extra, args.scenarios, sizes, idle, meta, results)
        elapsed = time.monotonic() - t0
        print(f"\nphp-fpm: {fpm_version}; measured in {elapsed:.0f} s")

        if args.json:
            env = {
                "php_fpm": fpm_bin, "php_fpm_version": fpm_version, "cores": os.cpu_count(), "nofile": nofile,
                "kernel": os.uname().release,
                "nginx_version": subprocess.run([os.environ["BENCH_NGINX"], "-v"], capture_output=True,
                                                text=True).stderr.strip(),
                "wrk": os.environ["BENCH_WRK"], "ours": os.environ["BENCH_OURS"],
                "original": os.environ["BENCH_ORIGINAL"],
            }
            with open(args.json, "w") as f:
                json.dump({"config": {"duration_s": args.duration, "runs": args.runs, "only": args.only,
                                      "scenarios": args.scenarios, "fpm_workers": FPM_WORKERS,
                                      "wrk_timeout": WRK_TIMEOUT},
                           "environment": env, "stripped_binary_bytes": sizes, "idle": idle,
                           "elapsed_s": round(elapsed, 1), "medians": medians, "runs": results}, f, indent=2)
            say(f"raw results written to {args.json}")
        ok = True
    except BenchError as e:
        say(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        ok = True  # nothing to inspect: drop the temp dir
        return 130
    except SystemExit:
        say("terminated; stopping everything")
        ok = True
        raise
    finally:
        cleanup()
        if args.keep_tmp or not ok:
            say(f"configs and logs kept in {tmp}" if args.keep_tmp else f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
