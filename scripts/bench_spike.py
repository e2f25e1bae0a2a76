#!/usr/bin/env python3
"""The spike benchmark: what each liveness probe does to a php-fpm under a load spike. Called by
scripts/bench-spike (which builds the tool); standard library only, with scripts/bench.py's process
and FastCGI helpers.

For each probe, a fresh php-fpm (4 static workers, TCP on loopback, `pm.status_path`) is loaded by
24 clients asking back to back for a PHP page that sleeps 400 ms, for 15 s, while a kubelet-like
loop watches it: one probe a second, killed at 1 s, php-fpm restarted (SIGTERM, as a container
restart) after 3 failures in a row. A request is lost when it was sent and got no complete answer
(php-fpm killed under it); a connection refused while php-fpm restarts is retried, not counted.
"""

import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (scripts/bench.py: spawn, stop, FastCGI records, php-fpm lookup)

WORKERS = 4
CLIENTS = 24
SLEEP_MS = 400
PERIOD = 1.0  # the kubelet's periodSeconds
PROBE_TIMEOUT = 1.0  # timeoutSeconds: an exec probe is killed then
FAILURES = 3  # failureThreshold


def say(msg):
    print(f"bench-spike: {msg}", file=sys.stderr, flush=True)


class PhpFpm:
    """php-fpm with WORKERS static workers on a fixed port (so that a restart listens where the
    probes and clients look), and a status lane when `lane_port` is set."""

    def __init__(self, tmp, docroot, lane_port=None):
        self.dir = os.path.join(tmp, "php-fpm")
        os.makedirs(self.dir, exist_ok=True)
        self.port = bench.free_port()
        self.lane_port = lane_port
        self.binary = bench.find_php_fpm()
        self.conf = os.path.join(self.dir, "php-fpm.conf")
        root = os.geteuid() == 0
        lane = f"pm.status_listen = 127.0.0.1:{lane_port}\n" if lane_port else ""
        with open(self.conf, "w") as f:
            f.write(f"""[global]
pid = {self.dir}/php-fpm.pid
error_log = {self.dir}/error.log
log_level = warning
daemonize = no

[spike]
{"user = root" if root else ""}
{"group = root" if root else ""}
listen = 127.0.0.1:{self.port}
listen.backlog = 511
pm = static
pm.max_children = {WORKERS}
ping.path = /fpm-ping
pm.status_path = /fpm-status
{lane}chdir = {docroot}
""")
        self.argv = [self.binary] + (["-R"] if root else []) + ["-F", "-y", self.conf, "-p", self.dir]
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.dir, "stderr.log"), "a")
        self.proc = bench.spawn(self.argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        # Listening, with every worker up (a ping would wait behind the load after a restart).
        def ready():
            return bench.port_open(self.port) and len(bench.tree(self.proc.pid)) >= WORKERS + 1

        bench.wait_until("php-fpm", ready, bench.START_DEADLINE, self.proc,
                         os.path.join(self.dir, "error.log"))

    def restart(self):
        """As a container restart: SIGTERM (php-fpm ends at once, its requests with it), then
        start again."""
        bench.stop(self.proc)
        self.start()


def sleep_request(script):
    params = b"".join(bench._fcgi_nv(k, v) for k, v in [
        ("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", "/sleep.php"), ("SCRIPT_FILENAME", script),
        ("REQUEST_URI", f"/sleep.php?ms={SLEEP_MS}"), ("QUERY_STRING", f"ms={SLEEP_MS}"),
        ("SERVER_PROTOCOL", "HTTP/1.1"), ("GATEWAY_INTERFACE", "CGI/1.1"),
    ])
    return (bench._fcgi_record(1, struct.pack(">HB5x", 1, 0)) + bench._fcgi_record(4, params)
            + bench._fcgi_record(4, b"") + bench._fcgi_record(5, b""))


def answered(sock):
    """Whether php-fpm sent FCGI_END_REQUEST on `sock`."""
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        buf += chunk
        while len(buf) >= 8:
            _, rtype, _, clen, plen = struct.unpack(">BBHHB", buf[:7])
            if len(buf) < 8 + clen + plen:
                break
            buf = buf[8 + clen + plen:]
            if rtype == 3:
                return True


class Load:
    """CLIENTS threads asking back to back until stopped; counts answered and lost requests."""

    def __init__(self, port, script):
        self.port, self.request = port, sleep_request(script)
        self.answered = self.lost = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def client(self):
        while not self.done.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                time.sleep(0.05)  # php-fpm restarting: retried, not sent
                continue
            try:
                with sock:
                    sock.settimeout(120)
                    sock.sendall(self.request)
                    ok = answered(sock)
            except OSError:
                ok = False
            with self.lock:
                if ok:
                    self.answered += 1
                else:
                    self.lost += 1

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(timeout=130)


def http_probe(port, path):
    def probe():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=PROBE_TIMEOUT) as r:
                return r.status == 200
        except OSError:
            return False
    return probe


def exec_probe(argv, env):
    def probe():
        try:
            done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=PROBE_TIMEOUT)
            return done.returncode == 0
        except subprocess.TimeoutExpired:
            return False  # killed at the timeout, as the kubelet does
    return probe


def watch(fpm, probe, until):
    """The kubelet's loop until `until`: returns (restarts, probes, failed probes)."""
    restarts = probes = failed = streak = 0
    tick = time.monotonic()
    while tick < until:
        ok = probe()
        probes += 1
        if ok:
            streak = 0
        else:
            failed += 1
            streak += 1
            if streak >= FAILURES:
                say(f"  {FAILURES} failures in a row at {PROBE_TIMEOUT:.0f}s: restarting php-fpm")
                fpm.restart()
                restarts += 1
                streak = 0
        tick += PERIOD
        time.sleep(max(0.0, tick - time.monotonic()))
    return restarts, probes, failed


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench-spike", description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of load per probe (default 15)")
    ap.add_argument("--only", default="", help="comma-separated row keys: script,ping,live,check,check-lane,drop-in")
    args = ap.parse_args()
    tool = os.environ.get("SPIKE_TOOL")
    if not tool:
        ap.error("SPIKE_TOOL is not set: run scripts/bench-spike, not scripts/bench_spike.py")
    try:
        bench._libc = __import__("ctypes").CDLL(None, use_errno=True)
    except OSError:
        bench._libc = None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, bench._on_signal)

    tmp = tempfile.mkdtemp(prefix="fcgi-spike-")
    docroot = os.path.join(tmp, "docroot")
    os.makedirs(docroot)
    script = os.path.join(docroot, "sleep.php")
    with open(script, "w") as f:
        f.write("<?php usleep((int)$_GET['ms'] * 1000); echo 'slept';\n")
    dropin_dir = os.path.join(tmp, "bin")
    os.makedirs(dropin_dir)
    os.symlink(tool, os.path.join(dropin_dir, "php-fpm-healthcheck"))
    lane_known = b"--status-listen" in subprocess.run([tool, "--help"], capture_output=True).stdout
    upstream = os.environ.get("SPIKE_UPSTREAM_SCRIPT", "")
    cgi_fcgi = subprocess.run(["sh", "-c", "command -v cgi-fcgi"], capture_output=True).returncode == 0

    # (key, label, kind, needs a lane)
    rows = [
        ("script", "php-fpm-healthcheck (the script)", "script", False),
        ("ping", "our `/fcgi-ping`", "http:/fcgi-ping", False),
        ("drop-in", "our drop-in (`php-fpm-healthcheck` by argv[0])", "drop-in", False),
        ("live", "our `/fcgi-live`", "http:/fcgi-live", False),
        ("check", "our `check --live` (no lane)", "check", False),
        ("check-lane", "our `check --live` with `STATUS_LISTEN`", "check", True),
    ]
    only = [k for k in args.only.split(",") if k]
    results = []
    try:
        for key, label, kind, lane in rows:
            if only and key not in only:
                continue
            if kind == "script" and not (upstream and cgi_fcgi):
                why = "cgi-fcgi is not installed" if not cgi_fcgi else "SPIKE_UPSTREAM_SCRIPT is not set"
                say(f"{label}: skipped ({why})")
                results.append((label, None, why))
                continue
            if lane and not lane_known:
                say(f"{label}: skipped (this build has no STATUS_LISTEN)")
                results.append((label, None, "this build has no STATUS_LISTEN"))
                continue
            say(f"{label}: {CLIENTS} clients x {SLEEP_MS} ms pages on {WORKERS} workers, {args.duration:.0f} s")
            fpm = PhpFpm(tmp, docroot, lane_port=bench.free_port() if lane else None)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("SPIKE_", "FCGI_"))}
            env.update(DESTINATION="127.0.0.1", DESTINATION_PORT=str(fpm.port))
            if lane:
                env["STATUS_LISTEN"] = f"127.0.0.1:{fpm.lane_port}"
            server = None
            if kind.startswith("http:"):
                port = bench.free_port()
                server = bench.spawn([tool], env=dict(env, SERVER=f"127.0.0.1:{port}", RUST_LOG="warn"))
                bench.wait_until("fastcgi-healthcheck", lambda: bench.port_open(port), bench.START_DEADLINE, server)
                probe = http_probe(port, kind[len("http:"):])
            elif kind == "check":
                probe = exec_probe([tool, "check", "--live"], env)
            else:
                fcgi = dict(env, FCGI_CONNECT=f"127.0.0.1:{fpm.port}", FCGI_STATUS_PATH="/fpm-status")
                argv = [upstream] if kind == "script" else [os.path.join(dropin_dir, "php-fpm-healthcheck")]
                probe = exec_probe(argv, fcgi)
            load = Load(fpm.port, script)
            restarts, probes, failed = watch(fpm, probe, time.monotonic() + args.duration)
            load.stop()
            say(f"  {restarts} restarts, {load.lost} requests lost, {load.answered} answered, "
                f"{failed} of {probes} probes failed")
            results.append((label, (restarts, load.lost, load.answered, failed, probes), None))
            if server is not None:
                bench.stop(server)
            bench.stop(fpm.proc)
    finally:
        bench.cleanup()
        subprocess.run(["rm", "-rf", tmp])
    version = subprocess.run([bench.find_php_fpm(), "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    print(f"\n{time.strftime('%Y-%m-%d')}: {version[0] if version else 'php-fpm'}, {WORKERS} static workers, "
          f"{CLIENTS} clients back to back on a {SLEEP_MS} ms page for {args.duration:.0f} s; a probe a second, "
          f"killed at {PROBE_TIMEOUT:.0f} s, php-fpm restarted after {FAILURES} failures in a row.\n")
    print("| liveness probe | restarts | requests lost | requests answered | probes failed |")
    print("| --- | --- | --- | --- | --- |")
    for label, figures, why in results:
        if figures is None:
            print(f"| {label} | skipped: {why} | | | |")
        else:
            restarts, lost, ok, failed, probes = figures
            print(f"| {label} | {restarts} | {lost} | {ok} | {failed} of {probes} |")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bench.BenchError as e:
        say(f"error: {e}")
        sys.exit(1)
