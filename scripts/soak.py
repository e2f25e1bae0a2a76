#!/usr/bin/env python3
"""Fault-injection soak of fastcgi-healthcheck; started by scripts/soak (see there for the options).

Loopback and Unix sockets only. Every loop is bounded in count or time; the run stops by itself.
"""

import argparse
import array
import bisect
import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

mono = time.monotonic

TIMEOUT_MS = 500
CLIENT_LIMIT = TIMEOUT_MS / 1000 + 1.0  # a probe must be answered within TIMEOUT + 1 s
GRACE = 1.0  # state changes race with probes: answers this close to a transition may be either
WORKERS = 4
OK = "ok"
# client-side failures, stored as negative status codes
CLIENT_ERRORS = {-1: "empty_reply", -2: "reset", -3: "client_timeout", -4: "connect_error",
                 -5: "malformed_reply", -6: "other_error"}

REQUEST = b"GET /fcgi-ping HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: soak\r\n\r\n"


class SoakError(Exception):
    pass


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


# --- options ---------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="scripts/soak", add_help=True)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--short", action="store_true")
    mode.add_argument("--long", action="store_true")
    p.add_argument("--seconds", type=float)
    p.add_argument("--probes", type=int)
    p.add_argument("--rate", type=float)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--hold", type=float, default=3.0, help="seconds each fault lasts")
    p.add_argument("--gap", type=float, default=3.0, help="healthy seconds between faults")
    p.add_argument("--keep-tmp", action="store_true")
    p.add_argument("--binary", default="target/release/fastcgi-healthcheck")
    p.add_argument("--parse-only", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.mode = "long" if a.long else "short"
    if a.seconds is None:
        a.seconds = 900.0 if a.long else 90.0
    if a.probes is None:
        a.probes = 1_000_000 if a.long else 0
    if a.rate is None:
        a.rate = 5000.0 if a.long else 2000.0
    if not 20 <= a.seconds <= 86400:
        p.error("--seconds must be 20..86400")
    if not 1 <= a.conns <= 500:
        p.error("--conns must be 1..500")
    if not 1 <= a.rate <= 50000:
        p.error("--rate must be 1..50000")
    if a.probes < 0:
        p.error("--probes must be >= 0")
    if not (0.5 <= a.hold <= 60 and 2 * GRACE <= a.gap <= 60):
        p.error("--hold must be 0.5..60 and --gap 2..60")
    return a


# --- processes -------------------------------------------------------------------------------------

def children_of(pid):
    kids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid and fields[0] != b"Z":
            kids.append(int(name))
    return kids


def kill_quiet(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def reap(pids, limit=2.0):
    """Reap orphaned php-fpm workers re-parented to us (we are a child subreaper) so none stay zombies."""
    end = mono() + limit
    left = set(pids)
    while left and mono() < end:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid  # not ours (init reaps it) or already gone
            if done:
                left.discard(pid)
        if left:
            time.sleep(0.01)


def become_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except OSError:
        pass


def fcgi_ping(path, timeout=1.0):
    """One FastCGI request to php-fpm's ping path over the Unix socket; True when it answers pong."""
    def record(rtype, content):
        return struct.pack(">BBHHBB", 1, rtype, 1, len(content), 0, 0) + content

    def pair(k, v):
        return bytes([len(k), len(v)]) + k + v

    params = b"".join(pair(k, v) for k, v in [
        (b"SCRIPT_NAME", b"/fpm-ping"), (b"SCRIPT_FILENAME", b"/fpm-ping"),
        (b"REQUEST_URI", b"/fpm-ping"), (b"DOCUMENT_URI", b"/fpm-ping"),
        (b"REQUEST_METHOD", b"GET"), (b"QUERY_STRING", b""), (b"SERVER_PROTOCOL", b"HTTP/1.1")])
    req = (record(1, struct.pack(">HB5x", 1, 0)) + record(4, params) + record(4, b"")
           + record(5, b""))
    end = mono() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(req)
            data = b""
            stdout = b""
            while mono() < end and len(data) < 1 << 16:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
                while len(data) >= 8:
                    _, rtype, _, clen, pad, _ = struct.unpack(">BBHHBB", data[:8])
                    if len(data) < 8 + clen + pad:
                        break
                    content = data[8:8 + clen]
                    data = data[8 + clen + pad:]
                    if rtype == 6:
                        stdout += content
                    elif rtype == 3:
                        return b"pong" in stdout
            return False
    except OSError:
        return False


class PhpFpm:
    def __init__(self, binary, tmp):
        self.binary = binary
        self.dir = tmp
        self.sock = os.path.join(tmp, "fpm.sock")
        self.conf = os.path.join(tmp, "php-fpm.conf")
        self.log = os.path.join(tmp, "php-fpm.log")
        self.proc = None
        with open(self.conf, "w") as f:
            f.write(f"""[global]
pid = {tmp}/php-fpm.pid
error_log = {self.log}
daemonize = no

[www]
listen = {self.sock}
listen.mode = 0666
pm = static
pm.max_children = {WORKERS}
ping.path = /fpm-ping
ping.response = pong
pm.status_path = /fpm-status
""")

    def ready_count(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read().count("ready to handle connections")
        except OSError:
            return 0

    def start(self):
        before = self.ready_count()
        self.proc = subprocess.Popen(
            [self.binary, "-R", "-F", "-y", self.conf, "-p", self.dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.await_ready(before)

    def await_ready(self, before, limit=10.0):
        """php-fpm logged one more 'ready', has all its workers, and answers a FastCGI ping."""
        end = mono() + limit
        while mono() < end:
            if self.proc.poll() is not None:
                raise SoakError(f"php-fpm exited ({self.proc.returncode}); log: {self.log}")
            if (self.ready_count() > before and len(children_of(self.proc.pid)) == WORKERS
                    and fcgi_ping(self.sock)):
                return
            time.sleep(0.02)
        raise SoakError(f"php-fpm not ready within {limit:.0f} s; log: {self.log}")

    def workers(self):
        return children_of(self.proc.pid) if self.proc else []

    def kill(self):
        """SIGKILL master and workers (master frozen first, so it cannot fork replacements)."""
        if not self.proc or self.proc.poll() is not None:
            self.proc = None
            return
        master = self.proc.pid
        kill_quiet(master, signal.SIGSTOP)
        kids = children_of(master)
        for pid in kids:
            kill_quiet(pid, signal.SIGKILL)
        kill_quiet(master, signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            raise SoakError("php-fpm master survived SIGKILL for 5 s")
        reap(kids)
        self.proc = None

    def reload(self):
        before = self.ready_count()
        kill_quiet(self.proc.pid, signal.SIGUSR2)
        return before


class GarbagePeer:
    """Listens on the socket path instead of php-fpm; reads each FastCGI request, answers garbage."""
    GARBAGE = b"GARBAGE\xff\x00\x13\x37 this is not FastCGI\r\n" * 4

    def __init__(self, path):
        self.path = path
        self.stop = threading.Event()
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(path)
        self.lsock.listen(128)
        self.lsock.settimeout(0.1)
        self.conns = 0
        self.handlers = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns += 1
            t = threading.Thread(target=self.handle, args=(conn,), daemon=True)
            t.start()
            self.handlers = [h for h in self.handlers if h.is_alive()] + [t]

    def handle(self, conn):
        end = mono() + 1.0
        try:
            conn.settimeout(0.5)
            data = b""
            done = False
            while not done and mono() < end and len(data) < 1 << 16:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
                pos = 0
                while len(data) - pos >= 8:  # whole request read when the empty STDIN record arrived
                    _, rtype, _, clen, pad, _ = struct.unpack(">BBHHBB", data[pos:pos + 8])
                    if len(data) - pos < 8 + clen + pad:
                        break
                    if rtype == 5 and clen == 0:
                        done = True
                    pos += 8 + clen + pad
            conn.sendall(self.GARBAGE)
            conn.shutdown(socket.SHUT_WR)
            while mono() < end and conn.recv(4096):
                pass
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.lsock.close()
        for h in self.handlers:
            h.join(1.5)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# --- probing ---------------------------------------------------------------------------------------

class Probes:
    """Per-connection compact records: send time, answer time, status (negative: client error), reason."""

    def __init__(self, n):
        self.send = [array.array("d") for _ in range(n)]
        self.ans = [array.array("d") for _ in range(n)]
        self.code = [array.array("h") for _ in range(n)]
        self.reason = [array.array("H") for _ in range(n)]
        self.reasons = []
        self.reason_ids = {}
        self.lock = threading.Lock()

    def reason_id(self, word):
        rid = self.reason_ids.get(word)
        if rid is None:
            with self.lock:
                rid = self.reason_ids.get(word)
                if rid is None:
                    if len(self.reasons) >= 60000:
                        word = "(too many reasons)"
                        return self.reason_ids.setdefault(word, 0)
                    rid = len(self.reasons)
                    self.reasons.append(word)
                    self.reason_ids[word] = rid
        return rid

    def count(self):
        return sum(len(a) for a in self.send)


def recv_more(sock, buf, deadline, eof):
    """`buf` with the next bytes from `sock`, waiting at most until `deadline`; EOFError(`eof`)
    when the peer closes."""
    left = deadline - mono()
    if left <= 0:
        raise socket.timeout()
    sock.settimeout(left)
    chunk = sock.recv(65536)
    if not chunk:
        raise EOFError(eof)
    return buf + chunk


def read_response(sock, buf, deadline):
    """One HTTP response from a keep-alive connection. Returns (status, reason word, keep_alive, buf)."""
    while b"\r\n\r\n" not in buf:
        buf = recv_more(sock, buf, deadline, "empty" if not buf else "partial")
        if len(buf) > 1 << 16:
            raise ValueError("head too large")
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    length = None
    keep = True
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"connection" and v.strip().lower() == b"close":
            keep = False
    if length is None or length > 1 << 16:
        raise ValueError("no or huge Content-Length")
    while len(buf) < length:
        buf = recv_more(sock, buf, deadline, "partial")
    body, buf = buf[:length], buf[length:]
    word = body.split(None, 1)[0].decode("ascii", "replace").rstrip(":") if body.strip() else ""
    return status, word[:40], keep, buf


def prober(idx, n, rate, port, probes, stop, t0, errors):
    period = n / rate
    next_t = t0 + period * idx / n
    a_send, a_ans, a_code, a_reason = probes.send[idx], probes.ans[idx], probes.code[idx], probes.reason[idx]
    sock = None
    buf = b""
    ok_id = probes.reason_id(OK)
    while not stop.is_set():
        now = mono()
        if next_t > now:
            time.sleep(min(next_t - now, 0.2))
            continue
        if now - next_t > period:  # fell behind (a slow answer): skip the missed slots, no burst
            next_t = now
        next_t += period
        t_send = mono()
        code, word = 0, ""
        try:
            if sock is None:
                buf = b""
                sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_LIMIT)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(REQUEST)
            code, word, keep, buf = read_response(sock, buf, t_send + CLIENT_LIMIT)
            if not keep:
                sock.close()
                sock = None
        except socket.timeout:
            code = -3
        except ConnectionResetError:
            code = -2
        except EOFError as e:
            code = -1 if str(e) == "empty" else -5
        except ValueError:
            code = -5
        except ConnectionRefusedError:
            code = -4
        except OSError as e:
            code = -6
            word = type(e).__name__
        if code < 0:
            if len(errors) < 1000:
                errors.append((t_send, idx, code, word))
            if sock is not None:
                sock.close()
            sock = None
        t_ans = mono()
        a_send.append(t_send)
        a_ans.append(t_ans)
        a_code.append(code)
        a_reason.append(ok_id if word == OK else probes.reason_id(word or CLIENT_ERRORS.get(code, "")))
    if sock is not None:
        sock.close()


def http_body(port, path, timeout=2.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        end = mono() + timeout
        while mono() < end and len(data) < 1 << 20:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b" ", 2)[1].decode() if head else "", body.decode("utf-8", "replace")


def result_of(series):
    """'name{probe="ping",result="timeout"}' -> 'timeout'"""
    return series.split('result="', 1)[-1].split('"', 1)[0]


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


def http_get(port, path, timeout=1.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status, word, _, _ = read_response(s, b"", mono() + timeout)
        return status, word


# --- the tool's resources ------------------------------------------------------------------------------

def tool_sample(pid):
    rss = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Sampler:
    def __init__(self, pid):
        self.pid = pid
        self.samples = []  # (t, rss KiB, fds)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(0.25):
            try:
                rss, fds = tool_sample(self.pid)
            except OSError:
                return
            self.samples.append((mono(), rss, fds))


# --- the run ---------------------------------------------------------------------------------------

# allowed reasons per fault phase (ok = 200)
KILL = {"connect_refused", "connect_failed", "closed_early"}
STOP = {"timeout", "fcgi_overloaded"}
RELOAD = {OK, "closed_early", "connect_refused"}
RM = {"connect_failed"}
GARBAGE = {"protocol_error"}


class Run:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="fcgi-soak-")
        self.fpm = None
        self.tool = None
        self.tool_log = None
        self.peer = None
        self.stopped_workers = []
        self.stop = threading.Event()
        self.threads = []
        self.intervals = []  # (start, end, label, allowed set, fault id)
        self.checkpoints = []  # (t, rss, fds)
        self.failures = []
        self.notes = []
        self.fault_counts = {}

    # ---- lifecycle
    def php_fpm_binary(self):
        if os.environ.get("PHP_FPM"):
            return os.environ["PHP_FPM"]
        found = sorted(n for n in os.listdir("/usr/sbin") if n.startswith("php-fpm"))
        if not found:
            raise SoakError("php-fpm not found (apt-get install php-fpm, or PHP_FPM=/path)")
        return "/usr/sbin/" + found[-1]

    def start_tool(self):
        for _ in range(5):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            env = dict(os.environ, DESTINATION=self.fpm.sock, SERVER=f"127.0.0.1:{port}",
                       TIMEOUT=f"{TIMEOUT_MS}ms", RUST_LOG="warn")
            self.tool_log = open(os.path.join(self.tmp, "tool.log"), "ab")
            self.tool = subprocess.Popen([self.args.binary], env=env, stdin=subprocess.DEVNULL,
                                         stdout=self.tool_log, stderr=self.tool_log,
                                         start_new_session=True)
            end = mono() + 10
            while mono() < end and self.tool.poll() is None:
                try:
                    if http_get(port, "/healthz")[0] == 200:
                        self.port = port
                        return
                except (OSError, ValueError, EOFError):
                    pass
                time.sleep(0.02)
            if self.tool.poll() is None:
                raise SoakError("the tool did not answer /healthz within 10 s")
            self.tool = None  # port taken meanwhile: try another
        raise SoakError("the tool did not start (see tool.log)")

    def cleanup(self):
        self.stop.set()
        for t in self.threads:
            t.join(CLIENT_LIMIT + 1)
        if self.peer:
            self.peer.close()
            self.peer = None
        if self.fpm and self.fpm.proc:
            for pid in self.stopped_workers:
                kill_quiet(pid, signal.SIGCONT)
            self.fpm.kill()
        if self.tool and self.tool.poll() is None:
            self.tool.kill()
            self.tool.wait(5)

    # ---- faults
    def phase(self, label, allowed, fault_id, action, hold):
        """Runs action (which makes the state of this phase), then waits hold seconds; records the interval
        from before the action to the end of the hold."""
        t0 = mono()
        action()
        if hold > 0:
            self.sleep(hold)
        self.intervals.append((t0, mono(), label, frozenset(allowed), fault_id))

    def sleep(self, seconds):
        end = mono() + seconds
        while mono() < end:
            if self.tool.poll() is not None:
                raise SoakError(f"the tool exited ({self.tool.returncode}) during the run; see tool.log")
            time.sleep(min(0.05, max(0, end - mono())))

    def fault(self, kind, fid):
        hold = self.args.hold
        fpm = self.fpm
        if kind == "kill":
            self.phase("kill", KILL, fid, fpm.kill, hold)
            self.phase("kill/restart", KILL | {OK}, fid, fpm.start, 0)
        elif kind == "stop":
            workers = fpm.workers()  # found before the phase starts: the /proc scan takes a while
            if len(workers) != WORKERS:
                raise SoakError(f"found {len(workers)} php-fpm workers, not {WORKERS}")

            def stop():
                self.stopped_workers = workers
                for pid in workers:
                    kill_quiet(pid, signal.SIGSTOP)

            def cont():
                for pid in self.stopped_workers:
                    kill_quiet(pid, signal.SIGCONT)
                self.stopped_workers = []
                end = mono() + 5
                while not fcgi_ping(fpm.sock) and mono() < end:
                    time.sleep(0.02)
            self.phase("stop", STOP, fid, stop, hold)
            self.phase("stop/cont", STOP | {OK}, fid, cont, 0)
        elif kind == "reload":
            # the reload is its own recovery: the interval lasts until php-fpm is ready again
            def reload():
                before = fpm.reload()
                fpm.await_ready(before)
            self.phase("reload", RELOAD, fid, reload, 0)
            self.sleep(max(0.0, hold - GRACE))
        elif kind == "rm_live":
            self.phase("rm_live", RM, fid, lambda: os.unlink(fpm.sock), hold)

            def restart():
                fpm.kill()
                fpm.start()
            self.phase("rm_live/restart", RM | {OK, "connect_refused"}, fid, restart, 0)
        elif kind == "rm_down":
            self.phase("rm_down/kill", KILL, fid, fpm.kill, 0.3)
            self.phase("rm_down", RM, fid, lambda: os.unlink(fpm.sock), hold)
            self.phase("rm_down/start", RM | {OK, "connect_refused"}, fid, fpm.start, 0)
        elif kind == "garbage":
            def swap():
                fpm.kill()
                try:
                    os.unlink(fpm.sock)
                except FileNotFoundError:
                    pass
                self.peer = GarbagePeer(fpm.sock)
            self.phase("garbage/swap", KILL | {OK}, fid, swap, 0)
            self.phase("garbage", GARBAGE, fid, lambda: None, hold)

            def back():
                self.peer.close()
                self.notes.append(f"garbage peer #{fid} served {self.peer.conns} FastCGI connections")
                self.peer = None
                fpm.start()
            self.phase("garbage/restore", GARBAGE | {OK, "connect_failed", "connect_refused", "closed_early"},
                       fid, back, 0)
        else:
            raise AssertionError(kind)

    def checkpoint(self):
        rss, fds = tool_sample(self.tool.pid)
        self.checkpoints.append((mono(), rss, fds))
        return rss, fds

    def run(self):
        a = self.args
        become_subreaper()
        self.fpm = PhpFpm(self.php_fpm_binary(), self.tmp)
        self.fpm.start()
        self.start_tool()
        log(f"php-fpm {self.fpm.proc.pid} on {self.fpm.sock}; tool {self.tool.pid} on 127.0.0.1:{self.port}; "
            f"{a.mode} mode, {a.seconds:.0f} s limit, {a.rate:.0f} probes/s over {a.conns} connections")
        t_start = mono()
        deadline = t_start + a.seconds
        self.probes = Probes(a.conns)
        self.errors = []
        for i in range(a.conns):
            t = threading.Thread(target=prober, daemon=True,
                                 args=(i, a.conns, a.rate, self.port, self.probes, self.stop, t_start,
                                       self.errors))
            t.start()
            self.threads.append(t)
        self.sampler = Sampler(self.tool.pid)
        self.sleep(5.0)  # warm-up: every connection open, a steady state
        start = self.checkpoint()
        self.t_measure = mono()
        kinds = ["kill", "stop", "reload", "rm_live", "garbage", "rm_down"]
        quiet_end = 5.0
        fid = 0
        while True:
            budget = a.gap + a.hold + 3.0 + quiet_end
            if mono() + budget > deadline:
                break
            if a.mode == "long" and a.probes and self.probes.count() >= a.probes:
                break
            self.sleep(a.gap)
            self.checkpoint()
            kind = kinds[fid % len(kinds)]
            self.fault_counts[kind] = self.fault_counts.get(kind, 0) + 1
            self.fault(kind, fid)
            fid += 1
            if fid % len(kinds) == 0:
                done = self.probes.count()
                log(f"{mono() - t_start:.0f} s: {fid} faults, {done} probes")
        self.sleep(max(quiet_end, a.gap))
        end = self.checkpoint()
        self.stop.set()
        for t in self.threads:
            t.join(CLIENT_LIMIT + 1)
        self.sampler.stop.set()
        t_end = mono()
        self.t_start, self.t_end = t_start, t_end
        if a.mode == "long" and a.probes and self.probes.count() < a.probes:
            self.notes.append(f"time limit reached before {a.probes} probes")
        # the tool's own counters: every /fcgi-ping answer is a FastCGI probe or shared one; no connection left
        time.sleep(0.5)
        try:
            status, body = http_body(self.port, "/metrics")
            self.metrics = parse_metrics(body) if status == "200" else None
            if status != "200":
                self.failures.append(f"/metrics answered {status!r} at the end")
        except OSError as e:
            self.metrics = None
            self.failures.append(f"/metrics failed at the end: {e}")
        # the tool must still serve, and stop cleanly on SIGTERM
        status, _ = http_get(self.port, "/healthz")
        if status != 200:
            self.failures.append(f"/healthz answered {status} at the end")
        self.tool.send_signal(signal.SIGTERM)
        try:
            rc = self.tool.wait(TIMEOUT_MS / 1000 + 3)
            if rc != 0:
                self.failures.append(f"the tool exited {rc} on SIGTERM, not 0")
        except subprocess.TimeoutExpired:
            self.failures.append("the tool did not exit within TIMEOUT + 3 s of SIGTERM")
        return start, end

    # ---- verdict
    def analyse(self, start, end):
        a = self.args
        P = self.probes
        ivs = sorted(self.intervals)
        starts = [iv[0] for iv in ivs]
        # fault blocks: consecutive phases of one fault merged
        blocks = {}
        for s, e, _, _, fid in ivs:
            b = blocks.get(fid)
            blocks[fid] = (min(s, b[0]), max(e, b[1])) if b else (s, e)
        ok_id = P.reason_ids.get(OK)
        table = {}  # state label -> {answer: count}
        latency = {}  # state label -> list sample
        unexpected = []
        n_unexpected = 0
        ok_lag = {}  # fault label -> latest send time (after the fault began) that still got 200
        tolerated = []  # failure answers in healthy time, allowed by the grace window
        in_grace = {}  # state label -> probes within GRACE of a transition
        grace_answers = {}  # (label, answer) -> of those, count
        total = 0
        client_errors = {}
        max_lat = 0.0
        for c in range(len(P.send)):
            S, A, C, R = P.send[c], P.ans[c], P.code[c], P.reason[c]
            for k in range(len(S)):
                ts, ta, code, rid = S[k], A[k], C[k], R[k]
                total += 1
                word = P.reasons[rid]
                lat = ta - ts
                if lat > max_lat:
                    max_lat = lat
                # the state at send time, for the table
                j = bisect.bisect_right(starts, ts) - 1
                label = "healthy"
                if j >= 0 and ivs[j][0] <= ts <= ivs[j][1]:
                    label = ivs[j][2]
                    if code == 200 and OK not in ivs[j][3] and ta <= ivs[j][1]:
                        ok_lag[label] = max(ok_lag.get(label, 0.0), ts - ivs[j][0])
                answer = "200 ok" if code == 200 and rid == ok_id else (
                    f"{code} {word}" if code > 0 else f"CLIENT {CLIENT_ERRORS[code]}")
                row = table.setdefault(label, {})
                row[answer] = row.get(answer, 0) + 1
                lst = latency.get(label)
                if lst is None:
                    lst = latency[label] = array.array("f")
                lst.append(lat)
                if code < 0:
                    client_errors[answer] = client_errors.get(answer, 0) + 1
                # allowed answers: union over every state overlapping [send - grace, answer + grace]
                lo, hi = ts - GRACE, ta + GRACE
                allowed = set()
                covered = False
                j = max(0, bisect.bisect_right(starts, lo) - 1)
                while j < len(ivs) and ivs[j][0] <= hi:
                    s, e, _, allow, fid = ivs[j]
                    if e >= lo:
                        allowed |= allow
                        bs, be = blocks[fid]
                        if bs <= lo and hi <= be:
                            covered = True
                    j += 1
                if not covered:
                    allowed.add(OK)
                # strict: the whole window lies in one state (no transition within GRACE)
                j = bisect.bisect_right(starts, ts) - 1
                if j >= 0 and ivs[j][0] <= lo and hi <= ivs[j][1]:
                    strict = True
                elif label == "healthy":
                    k2 = bisect.bisect_right(starts, hi)
                    strict = (j < 0 or ivs[j][1] < lo) and (k2 == j + 1)
                else:
                    strict = False
                if not strict:
                    in_grace[label] = in_grace.get(label, 0) + 1
                    key = (label, answer)
                    grace_answers[key] = grace_answers.get(key, 0) + 1
                fail_status_ok = code == 503 and word in allowed and word != OK
                good = (code == 200 and word == OK and OK in allowed) or fail_status_ok
                if good and label == "healthy" and code != 200 and len(tolerated) < 15:
                    jj = bisect.bisect_right(starts, ts) - 1
                    prev = ivs[jj] if jj >= 0 else None
                    nxt = ivs[jj + 1] if jj + 1 < len(ivs) else None
                    near = min((iv for iv in (prev, nxt) if iv),
                               key=lambda iv: min(abs(ts - iv[0]), abs(ts - iv[1]), abs(ta - iv[0]),
                                                  abs(ta - iv[1])))
                    edge, what = ((near[0], "began") if min(abs(ts - near[0]), abs(ta - near[0]))
                                  <= min(abs(ts - near[1]), abs(ta - near[1])) else (near[1], "ended"))
                    tolerated.append((ts - self.t_start, answer, lat,
                                      f"sent {(ts - edge) * 1000:+.0f} ms, answered {(ta - edge) * 1000:+.0f} ms "
                                      f"from when {near[2]} {what}"))
                if not good or lat > CLIENT_LIMIT:
                    n_unexpected += 1
                    if len(unexpected) < 40:
                        unexpected.append((ts - self.t_start, label, answer, lat, sorted(allowed)))
        elapsed = self.t_end - self.t_start
        print()
        print("=" * 100)
        print(f"fastcgi-healthcheck soak, {a.mode} mode: {elapsed:.1f} s, {total} probes, "
              f"{total / elapsed:.0f} probes/s over {a.conns} keep-alive connections "
              f"(target {a.rate:.0f}/s), TIMEOUT {TIMEOUT_MS} ms, grace {GRACE:.1f} s")
        print("faults injected: " + ", ".join(f"{k} x{v}" for k, v in self.fault_counts.items())
              + f" ({sum(self.fault_counts.values())} in all, {a.hold:.1f} s each, {a.gap:.1f} s apart)")
        print()
        print(f"{'state at send time':<20} {'probes':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  "
              f"answers (in brackets: how many of them within {GRACE:.0f} s of a transition)")
        order = ["healthy"] + sorted(k for k in table if k != "healthy")
        for label in order:
            if label not in table:
                continue
            row = table[label]
            lats = sorted(latency[label])
            p50 = lats[len(lats) // 2] * 1000
            p99 = lats[min(len(lats) - 1, int(len(lats) * 0.99))] * 1000
            answers = ", ".join(f"{k}: {v}" + (f" [{grace_answers[(label, k)]}]" if (label, k) in grace_answers
                                                else "")
                                for k, v in sorted(row.items(), key=lambda kv: -kv[1]))
            print(f"{label:<20} {sum(row.values()):>9} {p50:>7.1f} {p99:>7.1f} {lats[-1] * 1000:>7.1f}  {answers}")
        if ok_lag:
            print("last 200 answered within a fault, sent this long after it began: "
                  + ", ".join(f"{k} +{v * 1000:.0f} ms" for k, v in sorted(ok_lag.items())))
        print()
        # resources
        samples = self.sampler.samples
        peak_rss = max([s[1] for s in samples] + [start[0], end[0]])
        peak_fds = max([s[2] for s in samples] + [start[1], end[1]])
        print(f"tool resources     {'start':>10} {'peak':>10} {'end':>10}   (start after warm-up, "
              f"end after the last fault; {len(samples)} samples)")
        print(f"  VmRSS KiB        {start[0]:>10} {peak_rss:>10} {end[0]:>10}")
        print(f"  open fds         {start[1]:>10} {peak_fds:>10} {end[1]:>10}")
        rss_tol = max(start[0] * 0.10, 512)
        if abs(end[0] - start[0]) > rss_tol:
            self.failures.append(f"RSS end {end[0]} KiB vs start {start[0]} KiB: more than "
                                 f"{rss_tol:.0f} KiB apart")
        fd_tol = max(start[1] * 0.10, 2)
        if abs(end[1] - start[1]) > fd_tol:
            self.failures.append(f"open fds end {end[1]} vs start {start[1]}: more than {fd_tol:.0f} apart")
        # trend: least-squares slope over the checkpoints (steady healthy moments before each fault)
        cps = [c for c in self.checkpoints if c[0] >= self.t_measure]
        if len(cps) >= 4:
            for idx, name, tol in ((1, "RSS KiB", rss_tol), (2, "fds", fd_tol)):
                xs = [c[0] for c in cps]
                ys = [c[idx] for c in cps]
                mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
                sxx = sum((x - mx) ** 2 for x in xs)
                slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
                growth = slope * (xs[-1] - xs[0])
                print(f"  trend {name:<8}   {growth:+.0f} over the run ({len(cps)} checkpoints: "
                      f"{' '.join(str(y) for y in ys[:12])}{' ...' if len(ys) > 12 else ''})")
                if growth > tol:
                    self.failures.append(f"{name} grows: +{growth:.0f} over the run (tolerance {tol:.0f})")
        else:
            self.notes.append("too few checkpoints for a trend")
        print()
        # the tool's counters against ours
        m = getattr(self, "metrics", None)
        if m is not None:
            probes = {k: v for k, v in m.items() if k.startswith('fastcgi_healthcheck_probes_total{probe="ping"')}
            shared = sum(v for k, v in m.items()
                         if k.startswith('fastcgi_healthcheck_coalesced_total{probe="ping"'))
            fcgi = sum(probes.values())
            answered = total - sum(client_errors.values())
            print(f"tool's /metrics: {fcgi:.0f} FastCGI ping probes + {shared:.0f} shared = {fcgi + shared:.0f} "
                  f"answers (we got {answered}); open connections {m.get('fastcgi_healthcheck_open_connections')}"
                  f" (1: this scrape)")
            print("  FastCGI probes by result: " + ", ".join(
                result_of(k) + f": {v:.0f}" for k, v in sorted(probes.items(), key=lambda kv: -kv[1])))
            if fcgi + shared != answered:
                self.failures.append(f"the tool counted {fcgi + shared:.0f} /fcgi-ping answers, we got {answered}")
            if m.get("fastcgi_healthcheck_open_connections") != 1:
                self.failures.append("open connections at the end: "
                                     f"{m.get('fastcgi_healthcheck_open_connections')}, not 1")
            print()
        # verdicts
        if client_errors:
            self.failures.append("probes without a proper HTTP answer: "
                                 + ", ".join(f"{k}: {v}" for k, v in client_errors.items()))
        if max_lat > CLIENT_LIMIT:
            self.failures.append(f"slowest answer {max_lat * 1000:.0f} ms > TIMEOUT + 1 s")
        if n_unexpected:
            self.failures.append(f"{n_unexpected} answers not allowed for the state at that moment")
            print(f"unexpected answers ({n_unexpected}; first {len(unexpected)}):")
            for t, label, answer, lat, allowed in unexpected:
                print(f"  t={t:8.3f} s  state {label:<16} {answer:<28} {lat * 1000:7.1f} ms  "
                      f"allowed: {'/'.join(allowed)}")
            print()
        if tolerated:
            print("failure answers in healthy time near a transition (allowed by the grace window; first 15):")
            for t, answer, lat, where in tolerated:
                print(f"  t={t:8.3f} s  {answer:<22} {lat * 1000:6.1f} ms  {where}")
            print()
        for t, idx, code, word in self.errors[:10]:
            print(f"  client error t={t - self.t_start:.3f} s conn {idx}: {CLIENT_ERRORS[code]} {word}")
        for kind in ("kill", "stop", "reload", "rm_live", "rm_down", "garbage"):
            if not self.fault_counts.get(kind):
                self.failures.append(f"fault {kind} never injected (run longer)")
        try:
            with open(os.path.join(self.tmp, "tool.log"), errors="replace") as f:
                lines = f.read().splitlines()
            bad = [l for l in lines if "panic" in l.lower() or l.startswith("ERROR")]
            print(f"tool log: {len(lines)} lines (warn lines are throttled to 10/s); "
                  f"{len(bad)} panic/ERROR lines")
            for l in bad[:5]:
                print("  " + l[:200])
            if bad:
                self.failures.append("panic or ERROR lines in the tool's log")
        except OSError:
            pass
        for n in self.notes:
            if n.startswith("garbage peer"):
                continue
            print(f"note: {n}")
        peers = [n for n in self.notes if n.startswith("garbage peer")]
        if peers:
            print("note: " + "; ".join(peers))
        print()
        if self.failures:
            print("FAIL:")
            for f in self.failures:
                print(f"  - {f}")
        else:
            print("PASS: every probe answered, every answer right for its moment, RSS and fds steady")
        print("=" * 100)
        return not self.failures


def main(argv):
    args = parse_args(argv)
    if args.parse_only:
        return 0

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    run = Run(args)
    passed = False
    interrupted = False
    try:
        start, end = run.run()
        # signals during the analysis still clean up (nothing left running but us)
        passed = run.analyse(start, end)
    except KeyboardInterrupt as e:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log(f"interrupted ({e}); stopping everything it started")
        interrupted = True
    except SoakError as e:
        log(f"error: {e}")
    except Exception:  # a bug of this script: still clean up, and fail
        traceback.print_exc()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        run.cleanup()
        if (passed or interrupted) and not args.keep_tmp:
            shutil.rmtree(run.tmp, ignore_errors=True)
        else:
            log(f"kept {run.tmp} (php-fpm.log, tool.log, php-fpm.conf)")
    if interrupted:
        return 130
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
