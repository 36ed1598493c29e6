#!/usr/bin/env python3
"""UMS Balancer vs HAProxy: the benchmark driver behind Benchmarks/run.sh.

Everything runs on 127.0.0.1. The proxy under test is pinned to CPU 0, the load generator
(wrk / iperf3 client) and the backends (nginx, iperf3 server) to CPU 1. Proxy CPU time comes
from utime+stime in /proc/PID/stat (all threads, including exited ones) read before and after
each run. Every process this script starts is stopped by its PID; every loop has a deadline.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LUA = os.path.join(HERE, "wrk-report.lua")
IDLE_CLIENT = os.path.join(HERE, "idle_client.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROXY_CPU = "0"
# A run during which other processes took more than this many cores is marked noisy.
NOISY_CORES = 0.10
# Before each run, wait for other processes to use less than this (bounded by --quiet-wait).
QUIET_CORES = 0.05
LOAD_CPU = "1"

UMS = "ums-balancer"
HAPROXY = "haproxy"
# The minimal relays of floor-relay.c (--only ...,floor): one per way of moving bytes.
FLOOR_MODES = ("epoll", "uring")
# Turns the relay's splice(2) trial on (see Benchmarks/README.md): "auto" or a byte threshold.
SPLICE_ENV = "UMS_BALANCER_SPLICE"

started_processes = []


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- processes

class Proc:
    """A process we started; stopped by its PID only."""

    def __init__(self, name, argv, stdout=None, stderr=None, cwd=None, env=None):
        self.name = name
        self.argv = argv
        self.out = open(stdout, "ab") if isinstance(stdout, str) else subprocess.DEVNULL
        self.err = open(stderr, "ab") if isinstance(stderr, str) else subprocess.DEVNULL
        self.popen = subprocess.Popen(argv, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL, cwd=cwd,
                                      env=None if env is None else {**os.environ, **env})
        self.pid = self.popen.pid
        started_processes.append(self)

    def alive(self):
        return self.popen.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) did not stop in {timeout}s: SIGKILL")
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        for f in (self.out, self.err):
            if f not in (subprocess.DEVNULL, None):
                f.close()
        if self in started_processes:
            started_processes.remove(self)
        return self.popen.returncode


def stop_all():
    for proc in reversed(list(started_processes)):
        proc.stop(timeout=5)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def http_get(port, timeout=3.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def wait_http(port, proc=None, timeout=20.0):
    wait_port(port, proc, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http_get(port).startswith(b"HTTP/1.1 200"):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no HTTP 200 through 127.0.0.1:{port} after {timeout}s")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def rss_kib(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "RssAnon:", "RssFile:", "VmHWM:")):
                name, value = line.split(":", 1)
                values[name] = int(value.split()[0])
    return values


def pinned(cpu, argv):
    return ["taskset", "-c", cpu] + argv


# ----------------------------------------------------------------------------- backends and proxies

class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="ums-bench-")
        self.binary = args.binary
        self.nginx_port = free_port()
        self.nginx_tls_port = free_port()
        self.iperf_port = free_port()
        hard = resource_hard_limit()
        # Each proxied connection holds two descriptors in the proxy; keep some for listeners, checks, logs.
        self.maxconn = (hard - 200) // 2
        self.idle_count = min(args.idle_connections, (hard - 1000) // 2)
        self.results = {}
        self.quiet_budget = args.quiet_budget

    def path(self, name):
        return os.path.join(self.work, name)

    # -- backends

    def start_backends(self):
        os.makedirs(self.path("nginx"), exist_ok=True)
        # The development PKI: the balancer's and HAProxy's certificate, and the node's (nginx's TLS port).
        certs = self.path("certs")
        subprocess.run(["bash", os.path.join(ROOT, "certs", "generate.sh"), certs], check=True,
                       capture_output=True, timeout=60)
        with open(self.path("certs/balancer-combined.pem"), "w") as combined:
            for name in ("balancer.pem", "balancer.key"):
                with open(self.path(f"certs/{name}")) as part:
                    combined.write(part.read())
        os.chmod(self.path("certs/balancer-combined.pem"), 0o600)
        conf = self.path("nginx/nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
master_process on;
pid {self.path('nginx/nginx.pid')};
error_log {self.path('nginx/error.log')} warn;
events {{ worker_connections 19500; }}
http {{
    access_log off;
    client_body_temp_path {self.path('nginx/body')};
    proxy_temp_path {self.path('nginx/proxy')};
    fastcgi_temp_path {self.path('nginx/fastcgi')};
    uwsgi_temp_path {self.path('nginx/uwsgi')};
    scgi_temp_path {self.path('nginx/scgi')};
    keepalive_timeout 3600s;
    keepalive_requests 100000000;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{self.nginx_port} backlog=4096;
        location / {{ return 200 "hello from the benchmark backend\\n"; }}
    }}
    server {{
        # A UMS Server's 8443 stand-in: TLS 1.3, keep-alive, the same 33-byte answer.
        listen 127.0.0.1:{self.nginx_tls_port} ssl backlog=4096;
        ssl_certificate {self.path('certs/node.pem')};
        ssl_certificate_key {self.path('certs/node.key')};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{ return 200 "hello from the benchmark backend\\n"; }}
    }}
}}
""")
        self.nginx = Proc("nginx", pinned(LOAD_CPU, ["nginx", "-p", self.path("nginx"), "-c", conf]),
                          stderr=self.path("nginx/stderr.log"))
        self.iperf_server = Proc("iperf3-server",
                          pinned(LOAD_CPU, ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(self.iperf_port)]),
                          stdout=self.path("iperf3-server.log"), stderr=self.path("iperf3-server.log"))
        wait_http(self.nginx_port, self.nginx)
        wait_port(self.nginx_tls_port, self.nginx)
        wait_port(self.iperf_port, self.iperf_server)
        log(f"backends: nginx on {self.nginx_port} (TLS {self.nginx_tls_port}), iperf3 on {self.iperf_port}; "
            f"logs in {self.work}")

    # -- ums-balancer

    def ums_config(self, name, http_port, bulk_port, variant=0, https_port=None, sni_port=None):
        path = self.path(f"{name}.yaml")
        interval = "5s" if variant % 2 == 0 else "4s"
        tls_listeners = ""
        if https_port:
            # by-path: TLS ended here, every request routed by its path, node connections kept alive.
            tls_listeners += f"""
  - name: https
    bind: 127.0.0.1:{https_port}
    backend_port: {self.nginx_tls_port}
    class: by-path
    tls: {{ certificate: {self.path('certs/balancer.pem')}, private_key: {self.path('certs/balancer.key')} }}
    backend_tls: {{ verify: none }}
    http: {{ keep_alive_timeout: 1h, max_requests: 1000000 }}"""
        if sni_port:
            # by-sni: TLS passed through, the ClientHello's server name decides.
            tls_listeners += f"""
  - name: sni
    bind: 127.0.0.1:{sni_port}
    backend_port: {self.nginx_tls_port}
    class: by-sni
    sni: {{ console: [ums-console.example.com], default: console }}"""
        with open(path, "w") as f:
            f.write(f"""# written by Benchmarks/bench.py
listeners:
  - {{ name: http, bind: 127.0.0.1:{http_port}, backend_port: {self.nginx_port}, class: device }}
  - {{ name: bulk, bind: 127.0.0.1:{bulk_port}, backend_port: {self.iperf_port}, class: device }}{tls_listeners}
nodes:
  - {{ id: backend, host: 127.0.0.1 }}
health: {{ interval: {interval}, port: {self.nginx_port} }}
timeouts: {{ connect: 3s, idle: 1h }}
threads: 1
shutdown_grace: 1s
""")
        return path

    def start_ums(self, name="ums", log_level="warning", stderr_to_null=False, env=None, tls=False):
        http_port, bulk_port = free_port(), free_port()
        https_port, sni_port = (free_port(), free_port()) if tls else (None, None)
        config = self.ums_config(name, http_port, bulk_port, https_port=https_port, sni_port=sni_port)
        check = subprocess.run([self.binary, "check-config", "--config", config],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"check-config failed: {check.stdout}{check.stderr}")
        pid_file = self.path(f"{name}.pid")
        argv = pinned(PROXY_CPU, [self.binary, "run", "--config", config, "--pid-file", pid_file,
                                  "--log-level", log_level])
        proc = Proc(f"ums-balancer[{name}]", argv, stdout=self.path(f"{name}.out"),
                    stderr=None if stderr_to_null else self.path(f"{name}.err"), env=env)
        proc.config = config
        proc.pid_file = pid_file
        return self.ready(proc, http_port, bulk_port, https_port, sni_port)

    @staticmethod
    def ready(proc, http_port, bulk_port, https_port=None, sni_port=None):
        proc.http_port = http_port
        proc.bulk_port = bulk_port
        proc.https_port = https_port
        proc.sni_port = sni_port
        wait_http(http_port, proc)
        wait_port(bulk_port, proc)
        for port in (https_port, sni_port):
            if port:
                wait_port(port, proc)
        time.sleep(0.3)
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} right after starting")
        return proc

    # -- haproxy

    def haproxy_config(self, name, http_port, bulk_port, splice=False, maxconn=None, https_port=None, sni_port=None):
        maxconn = maxconn or self.maxconn
        tls_sections = ""
        if https_port:
            # What by-path does: TLS ended with `ssl crt`, HTTP (keep-alive both ways, node connections
            # reused: `http-reuse safe` is the default), TLS toward the node, the client's address and
            # scheme forwarded.
            tls_sections += f"""
frontend https
    mode http
    bind 127.0.0.1:{https_port} ssl crt {self.path('certs/balancer-combined.pem')} alpn h2,http/1.1
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    timeout http-keep-alive 1h
    default_backend nodes_https

backend nodes_https
    mode http
    server node 127.0.0.1:{self.nginx_tls_port} ssl verify none check inter 5s
"""
        if sni_port:
            # What by-sni does: TLS passed through, routed by the ClientHello's server name.
            tls_sections += f"""
frontend sni
    mode tcp
    bind 127.0.0.1:{sni_port}
    tcp-request inspect-delay 5s
    tcp-request content accept if {{ req.ssl_hello_type 1 }}
    use_backend nodes_tls if {{ req.ssl_sni -i ums-console.example.com }}
    default_backend nodes_tls

backend nodes_tls
    mode tcp
    server node 127.0.0.1:{self.nginx_tls_port} check inter 5s
"""
        path = self.path(f"{name}.cfg")
        with open(path, "w") as f:
            f.write(f"""# written by Benchmarks/bench.py
global
    nbthread 1
    maxconn {maxconn}
    stats socket {self.path(name + '.sock')} mode 600 level admin expose-fd listeners

defaults
    mode tcp
    maxconn {maxconn}
    timeout connect 3s
    timeout client 1h
    timeout server 1h
{'    option splice-auto' if splice else ''}

frontend http
    bind 127.0.0.1:{http_port}
    default_backend http

frontend bulk
    bind 127.0.0.1:{bulk_port}
    default_backend bulk

backend http
    server backend 127.0.0.1:{self.nginx_port} check inter 5s

backend bulk
    server backend 127.0.0.1:{self.iperf_port}
{tls_sections}""")
        return path

    def start_haproxy(self, name="haproxy", splice=False, master_worker=False, tls=False):
        # Splicing needs pipes (two descriptors each): keep room for them under the descriptor limit.
        http_port, bulk_port = free_port(), free_port()
        https_port, sni_port = (free_port(), free_port()) if tls else (None, None)
        config = self.haproxy_config(name, http_port, bulk_port, splice=splice, maxconn=4000 if splice else None,
                                     https_port=https_port, sni_port=sni_port)
        check = subprocess.run(["haproxy", "-c", "-f", config], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c failed: {check.stdout}{check.stderr}")
        pid_file = self.path(f"{name}.pid")
        argv = ["haproxy", "-db", "-f", config, "-p", pid_file]
        if master_worker:
            argv.insert(1, "-W")
        proc = Proc(name, pinned(PROXY_CPU, argv), stdout=self.path(f"{name}.out"), stderr=self.path(f"{name}.err"))
        proc.config = config
        return self.ready(proc, http_port, bulk_port, https_port, sni_port)

    # -- the floor: minimal relays in C (floor-relay.c), what any user-space relay costs here

    def start_floor(self, mode):
        binary = self.path("floor-relay")
        if not os.path.exists(binary):
            subprocess.run(["cc", "-O2", "-o", binary, os.path.join(HERE, "floor-relay.c"), "-luring"],
                           check=True, capture_output=True, timeout=120)
        port = free_port()
        proc = Proc(f"floor-{mode}", pinned(PROXY_CPU, [binary, mode, str(port), str(self.nginx_port)]),
                    stderr=self.path(f"floor-{mode}.err"))
        wait_http(port, proc)
        proc.http_port = port
        return proc

    # -- load generators

    def wrk(self, port, connections, duration, close, scheme="http"):
        argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s", "-s", LUA]
        if close:
            argv += ["-H", "Connection: close"]
        argv.append(f"{scheme}://127.0.0.1:{port}/")
        done = subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, text=True, timeout=duration + 60)
        for line in done.stdout.splitlines():
            if line.startswith("WRKJSON "):
                result = json.loads(line[len("WRKJSON "):])
                result["requests_per_s"] = result["requests"] * 1e6 / result["duration_us"]
                result["error_total"] = sum(result["errors"].values())
                return result
        raise RuntimeError(f"wrk printed no summary: rc={done.returncode} {done.stdout[-500:]} {done.stderr[-500:]}")

    def iperf(self, port, streams, duration):
        argv = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(duration), "-P", str(streams),
                "-J", "--connect-timeout", "3000"]
        done = subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, text=True, timeout=duration + 60)
        data = json.loads(done.stdout)
        if "error" in data:
            raise RuntimeError(f"iperf3: {data['error']}")
        received = data["end"]["sum_received"]
        return {
            "streams": streams,
            "seconds": received["seconds"],
            "bytes": received["bytes"],
            "gbit_per_s": received["bits_per_second"] / 1e9,
            "retransmits": data["end"].get("sum_sent", {}).get("retransmits"),
        }

    def measured(self, proc, run):
        """Runs `run()` on a quiet machine, adding the proxy's CPU time over it and how much CPU
        processes other than this benchmark's took meanwhile (another build or test run on the
        same two cores skews rates; such runs are marked noisy)."""
        waited = self.wait_quiet()
        machine0, ours0, t0 = machine_ticks(), self.our_ticks(), time.monotonic()
        before = cpu_ticks(proc.pid)
        result = run()
        after = cpu_ticks(proc.pid)
        machine1, ours1, t1 = machine_ticks(), self.our_ticks(), time.monotonic()
        result["proxy_cpu_us"] = (after - before) * 1e6 / CLK_TCK
        result["proxy_rss_kib_after"] = rss_kib(proc.pid).get("VmRSS")
        foreign = (machine1[0] - machine0[0]) - (ours1 - ours0)
        result["foreign_cpu_cores"] = round(max(0, foreign) / CLK_TCK / (t1 - t0), 3)
        result["quiet_wait_s"] = round(waited, 1)
        result["noisy"] = result["foreign_cpu_cores"] > NOISY_CORES
        return result

    def our_pids(self):
        """This benchmark's processes: everything it started and their children (nginx's worker)."""
        roots = {p.pid for p in started_processes if p.alive()}
        pids = set(roots)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid in roots:
                    pids.add(int(entry))
        return pids

    def our_ticks(self):
        total = 0
        for pid in self.our_pids():
            try:
                total += cpu_ticks(pid)
            except OSError:
                pass
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, iperf3 clients: waited children
        mine = resource.getrusage(resource.RUSAGE_SELF)
        return total + (usage.ru_utime + usage.ru_stime + mine.ru_utime + mine.ru_stime) * CLK_TCK

    def wait_quiet(self):
        """Waits (bounded per run and in total) until other processes use under QUIET_CORES of CPU."""
        started = time.monotonic()
        limit = min(self.args.quiet_wait, self.quiet_budget)
        while True:
            machine0, ours0 = machine_ticks(), self.our_ticks()
            time.sleep(1.0)
            machine1, ours1 = machine_ticks(), self.our_ticks()
            foreign = ((machine1[0] - machine0[0]) - (ours1 - ours0)) / CLK_TCK
            waited = time.monotonic() - started
            if foreign < QUIET_CORES or waited >= limit:
                break
            if waited < 1.5:
                log(f"other processes use {foreign:.2f} cores: waiting up to {limit:.0f}s for a quiet machine")
        waited = max(0.0, time.monotonic() - started - 1.0)
        self.quiet_budget = max(0.0, self.quiet_budget - waited)
        return waited


def machine_ticks():
    """(busy, total) clock ticks of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


def resource_hard_limit():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


# ----------------------------------------------------------------------------- scenarios

def rate_scenario(bench, procs, key, close, rounds, duration, connections, port="http_port", scheme="http"):
    """Alternating rounds of one wrk scenario over `procs` (name → Proc), against each proc's `port`."""
    runs = {name: [] for name in procs}
    for name, proc in procs.items():  # warm-up, not recorded
        bench.wrk(getattr(proc, port), connections, bench.args.warmup, close, scheme)
    for r in range(rounds):
        for name, proc in procs.items():
            result = bench.measured(
                proc, lambda: bench.wrk(getattr(proc, port), connections, duration, close, scheme))
            result["round"] = r + 1
            result["proxy_cpu_us_per_request"] = result["proxy_cpu_us"] / max(1, result["requests"])
            runs[name].append(result)
            log(f"{key} round {r + 1} {name}: {result['requests_per_s']:.0f} req/s, "
                f"p99 {result['latency_us']['p99'] / 1000:.2f} ms, "
                f"cpu {result['proxy_cpu_us_per_request']:.2f} us/req, errors {result['error_total']}, "
                f"rss {result['proxy_rss_kib_after'] / 1024:.0f} MiB"
                f"{', NOISY: others used %.2f cores' % result['foreign_cpu_cores'] if result['noisy'] else ''}")
    return runs


def bulk_scenario(bench, procs, rounds, duration):
    runs = {name: {"1": [], "4": []} for name in procs}
    for r in range(rounds):
        for streams in (1, 4):
            for name, proc in procs.items():
                result = bench.measured(proc, lambda: bench.iperf(proc.bulk_port, streams, duration))
                result["round"] = r + 1
                result["proxy_cpu_ms_per_gb"] = result["proxy_cpu_us"] / 1000 / max(1e-9, result["bytes"] / 1e9)
                runs[name][str(streams)].append(result)
                log(f"bulk round {r + 1} {name} P{streams}: {result['gbit_per_s']:.2f} Gbit/s, "
                    f"cpu {result['proxy_cpu_ms_per_gb']:.1f} ms/GB"
                    f"{', NOISY: others used %.2f cores' % result['foreign_cpu_cores'] if result['noisy'] else ''}")
                time.sleep(0.5)
    return runs


def idle_scenario(bench, proc, name):
    """Opens bench.idle_count idle connections through `proc`; RSS per connection; do they all answer?"""
    # One request first so lazily made things (buffers, pools, the first connect) are in the baseline.
    http_get(proc.http_port)
    time.sleep(1)
    before = rss_kib(proc.pid)
    cpu_before = cpu_ticks(proc.pid)
    client = subprocess.Popen(
        pinned(LOAD_CPU, [sys.executable, IDLE_CLIENT, "--port", str(proc.http_port),
                          "--count", str(bench.idle_count), "--timeout", "120"]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        opened = read_tagged(client, "OPENED", 200)
        cpu_after_open = cpu_ticks(proc.pid)
        time.sleep(2)
        after = rss_kib(proc.pid)
        client.stdin.write("check\n")
        client.stdin.flush()
        checked = read_tagged(client, "CHECKED", 200)
        client.wait(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(timeout=10)
    open_count = max(1, opened["open"])
    result = {
        "requested": bench.idle_count,
        "opened": opened,
        "checked": checked,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_per_connection_bytes": (after["VmRSS"] - before["VmRSS"]) * 1024 / open_count,
        "anon_per_connection_bytes": (after.get("RssAnon", 0) - before.get("RssAnon", 0)) * 1024 / open_count,
        "proxy_cpu_us_per_connection_open": (cpu_after_open - cpu_before) * 1e6 / CLK_TCK / open_count,
        "all_answered": checked["answered"] == opened["open"] == bench.idle_count,
    }
    log(f"idle {name}: {opened['open']}/{bench.idle_count} open, "
        f"{result['rss_per_connection_bytes'] / 1024:.2f} KiB/conn, "
        f"{checked['answered']}/{opened['open']} answered afterwards")
    return result


def read_tagged(proc, tag, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"idle client ended before {tag}")
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1:])
    raise RuntimeError(f"idle client: no {tag} within {timeout}s")


def reload_scenario(bench, name, reloads, interval, connections):
    """New-connection load while the proxy reloads `reloads` times; wrk's error counts."""
    warm = 1.5
    duration = int(warm + reloads * interval + 2.5)
    if name == UMS:
        proc = bench.start_ums(name="ums-reload", log_level="notice")
        target = proc.pid
        sig = signal.SIGHUP
    else:
        proc = bench.start_haproxy(name="haproxy-reload", master_worker=True)
        target = proc.pid  # the master
        sig = signal.SIGUSR2
    try:
        argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s", "-s", LUA,
                "-H", "Connection: close", f"http://127.0.0.1:{proc.http_port}/"]
        wrk = subprocess.Popen(pinned(LOAD_CPU, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(warm)
        sent = 0
        for i in range(reloads):
            if name == UMS:
                bench.ums_config("ums-reload", proc.http_port, proc.bulk_port, variant=i + 1)  # a real change each time: the health interval
            os.kill(target, sig)
            sent += 1
            time.sleep(interval)
        out, err = wrk.communicate(timeout=duration + 60)
        result = None
        for line in out.splitlines():
            if line.startswith("WRKJSON "):
                result = json.loads(line[len("WRKJSON "):])
        if result is None:
            raise RuntimeError(f"wrk printed no summary: {out[-500:]} {err[-500:]}")
        result["requests_per_s"] = result["requests"] * 1e6 / result["duration_us"]
        result["error_total"] = sum(result["errors"].values())
        result["reloads_sent"] = sent
        time.sleep(1)
        result["still_serving"] = http_get(proc.http_port).startswith(b"HTTP/1.1 200")
    finally:
        proc.stop()
    with open(bench.path(f"{'ums-reload' if name == UMS else 'haproxy-reload'}.err"), errors="replace") as f:
        text = f.read()
    if name == UMS:
        result["reloads_logged"] = text.count("configuration reloaded")
        result["reload_failures_logged"] = text.count("reload rejected")
    else:
        result["reloads_logged"] = text.count("Reloading HAProxy")
        # Seen with Debian's 2.6.12: a former worker sometimes crashes while exiting after a reload.
        result["former_worker_crashes_logged"] = len(re.findall(r"Former worker \(\d+\) exited with code (?!0 )", text))
    log(f"reload {name}: {result['reloads_sent']} reloads ({result['reloads_logged']} logged), "
        f"{result['requests']} requests, errors {result['errors']}, still serving {result['still_serving']}")
    return result


def syscall_scenario(bench, connections, duration):
    """System calls per proxied connection and per keep-alive request, both proxies: `strace -c -f`
    attached to the proxy over a bounded wrk run (strace slows the proxy down; counts per request
    do not depend on that much, rates and CPU here mean nothing)."""
    if shutil.which("strace") is None:
        raise RuntimeError("the syscalls scenario needs strace (Debian package strace)")
    counts = {"conn": {}, "keepalive": {}}
    for name in (UMS, HAPROXY):
        proc = bench.start_ums(name="ums-strace") if name == UMS else bench.start_haproxy(name="haproxy-strace")
        try:
            for mode, close in (("conn", True), ("keepalive", False)):
                bench.wrk(proc.http_port, connections, 1, close)  # warm-up
                out = bench.path(f"strace-{name}-{mode}.txt")
                tracer = Proc(f"strace[{name}]", ["strace", "-c", "-f", "-p", str(proc.pid), "-o", out],
                              stderr=bench.path(f"strace-{name}-{mode}.err"))
                time.sleep(1.0)  # attached to every thread before the load starts
                result = bench.wrk(proc.http_port, connections, duration, close)
                time.sleep(0.5)
                tracer.stop(sig=signal.SIGINT, timeout=20)
                calls = parse_strace_counts(out)
                requests = max(1, result["requests"])
                per = {call: round(n / requests, 3) for call, (n, _) in calls.items()}
                per["total"] = round(sum(n for n, _ in calls.values()) / requests, 2)
                for call in ("reads", "writes"):  # read+recvfrom, write+sendto: the proxies use different calls
                    per[call] = round(sum(n for c, (n, _) in calls.items() if c in SYSCALL_GROUPS[call]) / requests, 3)
                counts[mode][name] = {"requests": result["requests"], "calls": calls, "per_request": per}
                log(f"syscalls {mode} {name}: {per['total']:.2f} per request over {requests} requests: "
                    + ", ".join(f"{c} {v:.2f}" for c, v in sorted(per.items()) if v >= 0.01 and c != "total"))
        finally:
            proc.stop()
    return counts


SYSCALL_GROUPS = {"reads": {"read", "recvfrom", "recvmsg", "readv"}, "writes": {"write", "sendto", "sendmsg", "writev"}}


def parse_strace_counts(path):
    """{syscall: (calls, errors)} from the table `strace -c` writes."""
    calls = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(fields) >= 5 and fields[-1] not in ("total", "syscall") and fields[3].isdigit():
                errors = int(fields[4]) if len(fields) == 6 else 0
                calls[fields[-1]] = (int(fields[3]), errors)
    return calls


# ----------------------------------------------------------------------------- summary

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def clean(runs):
    """The runs no other process disturbed, or all of them if every run was disturbed."""
    quiet = [r for r in runs if not r.get("noisy")]
    return quiet or runs


def runs_used(runs):
    quiet = sum(1 for r in runs if not r.get("noisy"))
    return f"{quiet}/{len(runs)} undisturbed" + ("" if quiet else " (none: all used)")


def ratios_by_round(by_proxy):
    """ums/HAProxy CPU per request, round by round (each pair ran back to back)."""
    ums, ha = by_proxy.get(UMS, []), by_proxy.get(HAPROXY, [])
    return [round(u["proxy_cpu_us_per_request"] / h["proxy_cpu_us_per_request"], 3)
            for u, h in zip(ums, ha) if h["proxy_cpu_us_per_request"]]


def summarize(results):
    s = {}
    for conc, by_proxy in results["connection_rate"].items():
        for name, runs in by_proxy.items():
            k = f"conn_rate.c{conc}.{name}"
            s[f"{k}.runs"] = runs_used(runs)
            s[f"{k}.cpu_us_first"] = runs[0]["proxy_cpu_us_per_request"] if runs else None
            s[f"{k}.cpu_us_last"] = runs[-1]["proxy_cpu_us_per_request"] if runs else None
            s[f"{k}.errors"] = sum(r["error_total"] for r in runs)
            runs = clean(runs)
            s[f"{k}.rps"] = median([r["requests_per_s"] for r in runs])
            s[f"{k}.p99_ms"] = median([r["latency_us"]["p99"] / 1000 for r in runs])
            s[f"{k}.cpu_us"] = median([r["proxy_cpu_us_per_request"] for r in runs])
        s[f"conn_rate.c{conc}.cpu_ratio_by_round"] = ratios_by_round(by_proxy)
    for name, runs in results.get("connection_rate_access_log", {}).items():
        runs = clean(runs)
        s[f"conn_rate_log.{name}.rps"] = median([r["requests_per_s"] for r in runs])
        s[f"conn_rate_log.{name}.p99_ms"] = median([r["latency_us"]["p99"] / 1000 for r in runs])
        s[f"conn_rate_log.{name}.cpu_us"] = median([r["proxy_cpu_us_per_request"] for r in runs])
    for conc, by_proxy in results["keep_alive"].items():
        for name, runs in by_proxy.items():
            k = f"keep_alive.c{conc}.{name}"
            s[f"{k}.runs"] = runs_used(runs)
            s[f"{k}.errors"] = sum(r["error_total"] for r in runs)
            runs = clean(runs)
            s[f"{k}.rps"] = median([r["requests_per_s"] for r in runs])
            s[f"{k}.p50_ms"] = median([r["latency_us"]["p50"] / 1000 for r in runs])
            s[f"{k}.p99_ms"] = median([r["latency_us"]["p99"] / 1000 for r in runs])
            s[f"{k}.cpu_us"] = median([r["proxy_cpu_us_per_request"] for r in runs])
        s[f"keep_alive.c{conc}.cpu_ratio_by_round"] = ratios_by_round(by_proxy)
    for scenario in ("tls_keep_alive", "tls_connection_rate", "sni_connection_rate"):
        for conc, by_proxy in results.get(scenario, {}).items():
            for name, runs in by_proxy.items():
                k = f"{scenario}.c{conc}.{name}"
                s[f"{k}.runs"] = runs_used(runs)
                s[f"{k}.errors"] = sum(r["error_total"] for r in runs)
                runs = clean(runs)
                s[f"{k}.rps"] = median([r["requests_per_s"] for r in runs])
                s[f"{k}.p99_ms"] = median([r["latency_us"]["p99"] / 1000 for r in runs])
                s[f"{k}.cpu_us"] = median([r["proxy_cpu_us_per_request"] for r in runs])
            s[f"{scenario}.c{conc}.cpu_ratio_by_round"] = ratios_by_round(by_proxy)
    for name, by_streams in results["bulk"].items():
        for streams, runs in by_streams.items():
            runs = clean(runs)
            s[f"bulk{streams}.{name}.gbps"] = median([r["gbit_per_s"] for r in runs])
            s[f"bulk{streams}.{name}.cpu_ms_gb"] = median([r["proxy_cpu_ms_per_gb"] for r in runs])
    for name, by_streams in results.get("splice_trial", {}).items():
        for streams, runs in by_streams.items():
            runs = clean(runs)
            s[f"splice_trial{streams}.{name}.gbps"] = median([r["gbit_per_s"] for r in runs])
            s[f"splice_trial{streams}.{name}.cpu_ms_gb"] = median([r["proxy_cpu_ms_per_gb"] for r in runs])
    for mode, by_proxy in results.get("syscalls", {}).items():
        for name, counted in by_proxy.items():
            for call, per in counted["per_request"].items():
                s[f"syscalls.{mode}.{name}.{call}"] = per
    for name, r in results["idle"].items():
        s[f"idle.{name}.kib"] = r["rss_per_connection_bytes"] / 1024
        s[f"idle.{name}.open"] = r["opened"]["open"]
        s[f"idle.{name}.answered"] = r["checked"]["answered"]
    for name, r in results["reload"].items():
        s[f"reload.{name}.errors"] = r["error_total"]
        s[f"reload.{name}.reloads"] = r["reloads_sent"]
        s[f"reload.{name}.requests"] = r["requests"]
    return s


# The targets of issue 14: proxy CPU per new connection and per keep-alive request at most 0.9x
# HAProxy's (0.8x is the goal), rates no worse than 0.95x, throughput and idle memory as before.
CPU_TARGET = 0.9


def table(summary, concurrencies):
    """Rows: (label, ums, haproxy, better, target ratio or None)."""
    def g(key):
        return summary.get(key)

    rows = []
    for c in concurrencies:
        cr, ka = f"conn_rate.c{c}", f"keep_alive.c{c}"
        rows += [
            (f"-c{c} new connection per request: req/s", g(f"{cr}.ums-balancer.rps"), g(f"{cr}.haproxy.rps"), "higher", 0.95),
            (f"-c{c} new connection per request: p99 latency ms", g(f"{cr}.ums-balancer.p99_ms"), g(f"{cr}.haproxy.p99_ms"), "lower", None),
            (f"-c{c} new connection per request: proxy CPU us/conn", g(f"{cr}.ums-balancer.cpu_us"), g(f"{cr}.haproxy.cpu_us"), "lower", CPU_TARGET),
            (f"  -c{c} first round only (fresh processes): CPU us/conn", g(f"{cr}.ums-balancer.cpu_us_first"), g(f"{cr}.haproxy.cpu_us_first"), "lower", None),
            (f"  -c{c} last round only: CPU us/conn", g(f"{cr}.ums-balancer.cpu_us_last"), g(f"{cr}.haproxy.cpu_us_last"), "lower", None),
        ]
    rows += [
        ("  ums access log on (info) vs HAProxy: req/s", g("conn_rate_log.ums-balancer-info.rps"), g(f"conn_rate.c{concurrencies[-1]}.haproxy.rps"), "higher", None),
        ("  ums access log on (info) vs HAProxy: CPU us/conn", g("conn_rate_log.ums-balancer-info.cpu_us"), g(f"conn_rate.c{concurrencies[-1]}.haproxy.cpu_us"), "lower", None),
        ("  ums info vs ums warning, fresh pair (column 2 = warning): CPU us/conn", g("conn_rate_log.ums-balancer-info.cpu_us"), g("conn_rate_log.ums-balancer-warning.cpu_us"), "lower", None),
    ]
    for c in concurrencies:
        ka = f"keep_alive.c{c}"
        rows += [
            (f"-c{c} keep-alive: req/s", g(f"{ka}.ums-balancer.rps"), g(f"{ka}.haproxy.rps"), "higher", 0.95),
            (f"-c{c} keep-alive: p50 latency ms", g(f"{ka}.ums-balancer.p50_ms"), g(f"{ka}.haproxy.p50_ms"), "lower", None),
            (f"-c{c} keep-alive: p99 latency ms", g(f"{ka}.ums-balancer.p99_ms"), g(f"{ka}.haproxy.p99_ms"), "lower", None),
            (f"-c{c} keep-alive: proxy CPU us/request", g(f"{ka}.ums-balancer.cpu_us"), g(f"{ka}.haproxy.cpu_us"), "lower", CPU_TARGET),
        ] + [
            (f"  -c{c} keep-alive, floor: minimal C relay ({mode}) vs HAProxy: CPU us/request",
             g(f"{ka}.floor-{mode}.cpu_us"), g(f"{ka}.haproxy.cpu_us"), "lower", None)
            for mode in FLOOR_MODES
        ]
    rows += [
        ("bulk, 1 stream: Gbit/s", g("bulk1.ums-balancer.gbps"), g("bulk1.haproxy.gbps"), "higher", 1.0),
        ("bulk, 1 stream: proxy CPU ms/GB", g("bulk1.ums-balancer.cpu_ms_gb"), g("bulk1.haproxy.cpu_ms_gb"), "lower", None),
        ("bulk, 4 streams: Gbit/s", g("bulk4.ums-balancer.gbps"), g("bulk4.haproxy.gbps"), "higher", 1.0),
        ("bulk, 4 streams: proxy CPU ms/GB", g("bulk4.ums-balancer.cpu_ms_gb"), g("bulk4.haproxy.cpu_ms_gb"), "lower", None),
        ("  ref. HAProxy splice-auto, 1 stream: Gbit/s", g("bulk1.ums-balancer.gbps"), g("bulk1.haproxy-splice.gbps"), "higher", None),
        ("  ref. HAProxy splice-auto, 4 streams: Gbit/s", g("bulk4.ums-balancer.gbps"), g("bulk4.haproxy-splice.gbps"), "higher", None),
        ("  ums splice(2) trial vs ums copying, 1 stream: Gbit/s", g("splice_trial1.ums-balancer-splice.gbps"), g("splice_trial1.ums-balancer.gbps"), "higher", None),
        ("  ums splice(2) trial vs ums copying, 1 stream: CPU ms/GB", g("splice_trial1.ums-balancer-splice.cpu_ms_gb"), g("splice_trial1.ums-balancer.cpu_ms_gb"), "lower", None),
        ("  ums splice(2) trial vs ums copying, 4 streams: Gbit/s", g("splice_trial4.ums-balancer-splice.gbps"), g("splice_trial4.ums-balancer.gbps"), "higher", None),
        ("  ums splice(2) trial vs ums copying, 4 streams: CPU ms/GB", g("splice_trial4.ums-balancer-splice.cpu_ms_gb"), g("splice_trial4.ums-balancer.cpu_ms_gb"), "lower", None),
        ("idle: RSS KiB per connection", g("idle.ums-balancer.kib"), g("idle.haproxy.kib"), "lower", 2.0),
        ("idle: connections held", g("idle.ums-balancer.open"), g("idle.haproxy.open"), "higher", None),
        ("idle: still answering afterwards", g("idle.ums-balancer.answered"), g("idle.haproxy.answered"), "higher", None),
        ("reload x20 under load: connection errors", g("reload.ums-balancer.errors"), g("reload.haproxy.errors"), "lower", "zero"),
    ]
    for c in concurrencies:
        tk, tc, sn = f"tls_keep_alive.c{c}", f"tls_connection_rate.c{c}", f"sni_connection_rate.c{c}"
        rows += [
            (f"-c{c} HTTPS keep-alive (by-path vs mode http): req/s", g(f"{tk}.ums-balancer.rps"), g(f"{tk}.haproxy.rps"), "higher", None),
            (f"-c{c} HTTPS keep-alive (by-path vs mode http): p99 latency ms", g(f"{tk}.ums-balancer.p99_ms"), g(f"{tk}.haproxy.p99_ms"), "lower", None),
            (f"-c{c} HTTPS keep-alive (by-path vs mode http): proxy CPU us/request", g(f"{tk}.ums-balancer.cpu_us"), g(f"{tk}.haproxy.cpu_us"), "lower", 1.5),
            (f"-c{c} HTTPS new TLS connection per request: req/s", g(f"{tc}.ums-balancer.rps"), g(f"{tc}.haproxy.rps"), "higher", None),
            (f"-c{c} HTTPS new TLS connection per request: p99 latency ms", g(f"{tc}.ums-balancer.p99_ms"), g(f"{tc}.haproxy.p99_ms"), "lower", None),
            (f"-c{c} HTTPS new TLS connection per request: proxy CPU us/request", g(f"{tc}.ums-balancer.cpu_us"), g(f"{tc}.haproxy.cpu_us"), "lower", 1.5),
            (f"-c{c} TLS by SNI (by-sni vs mode tcp req.ssl_sni), new connection each: req/s", g(f"{sn}.ums-balancer.rps"), g(f"{sn}.haproxy.rps"), "higher", None),
            (f"-c{c} TLS by SNI, new connection each: p99 latency ms", g(f"{sn}.ums-balancer.p99_ms"), g(f"{sn}.haproxy.p99_ms"), "lower", None),
            (f"-c{c} TLS by SNI, new connection each: proxy CPU us/conn", g(f"{sn}.ums-balancer.cpu_us"), g(f"{sn}.haproxy.cpu_us"), "lower", 1.0),
        ]
    for mode in ("conn", "keepalive"):
        for call in ("total", "epoll_wait", "epoll_ctl", "shutdown", "reads", "writes", "splice"):
            key = f"syscalls.{mode}.%s.{call}"
            if g(key % UMS) is not None or g(key % HAPROXY) is not None:
                what = "new connection" if mode == "conn" else "keep-alive request"
                rows.append((f"syscalls per {what}: {call}", g(key % UMS), g(key % HAPROXY), "lower", None))
    # Scenarios not run have no figures: leave their rows out.
    return [row for row in rows if row[1] is not None]


def fmt(value):
    if value is None:
        return "-"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        return f"{int(value)}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(rows, reload_count):
    lines = ["| metric | ums-balancer | HAProxy | ums/HAProxy | better | target | met |",
             "| --- | ---: | ---: | ---: | --- | --- | --- |"]
    for label, ums, ha, better, target in rows:
        label = label.replace("x20", f"x{reload_count}")
        ratio = None
        if ums is not None and ha not in (None, 0):
            ratio = ums / ha
        if target == "zero":
            target_text, met = "0 errors", ("yes" if ums == 0 else "no") if ums is not None else "-"
        elif target is None:
            target_text, met = "", ""
        elif better == "higher":
            target_text = f">= {target:.2f}x"
            met = "-" if ratio is None else ("yes" if ratio >= target else "no")
        else:
            target_text = f"<= {target:.1f}x"
            met = "-" if ratio is None else ("yes" if ratio <= target else "no")
        lines.append(f"| {label} | {fmt(ums)} | {fmt(ha)} | {'-' if ratio is None else f'{ratio:.2f}x'} | "
                     f"{better} is better | {target_text} | {met} |")
    return "\n".join(lines)


def binary_info(binary):
    """What run.sh recorded when it built the binary: commit, uncommitted files in Sources, time."""
    info = {"path": binary}
    try:
        info["mtime"] = datetime.datetime.fromtimestamp(
            os.path.getmtime(binary), datetime.timezone.utc).isoformat(timespec="seconds")
        with open(os.path.join(os.path.dirname(os.path.dirname(binary)), "bench-build-info")) as f:
            commit, dirty, built = (f.read().split() + ["?", "?", "?"])[:3]
        info.update({"built_from_commit": commit, "uncommitted_files_in_sources": dirty, "built_at": built})
        # Another build into the same scratch path after run.sh's: the commit above may not be the binary's.
        built_at = datetime.datetime.strptime(built, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        if os.path.getmtime(binary) > built_at.timestamp() + 60:
            info["build_info_stale"] = True
    except (OSError, ValueError):
        pass
    return info


def machine_info(binary):
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    def version(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout + out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "open_file_hard_limit": resource_hard_limit(),
        "haproxy": version(["haproxy", "-v"]),
        "nginx": version(["nginx", "-v"]),
        "wrk": version(["wrk", "-v"]),
        "iperf3": version(["iperf3", "--version"]),
        "swift": version(["swift", "--version"]),
        "clock_ticks_per_s": CLK_TCK,
        "binary": binary_info(binary),
    }


# ----------------------------------------------------------------------------- main

def direct(bench, results):
    """Straight to nginx: the ceiling of this load generator and backend on this machine."""
    args = bench.args
    only = set(args.only.split(","))
    results["direct"] = {}
    for c in args.connections:
        bench.wait_quiet()
        runs = {}
        if only & {"conn", "keepalive"}:
            runs["connection_rate"] = bench.wrk(bench.nginx_port, c, args.duration, True)
            runs["keep_alive"] = bench.wrk(bench.nginx_port, c, args.duration, False)
        if only & {"tlskeepalive", "tlsconn", "sni"}:
            runs["tls_connection_rate"] = bench.wrk(bench.nginx_tls_port, c, args.duration, True, "https")
            runs["tls_keep_alive"] = bench.wrk(bench.nginx_tls_port, c, args.duration, False, "https")
        results["direct"][str(c)] = runs
        log(f"direct to nginx -c{c}: " + ", ".join(
            f"{key.replace('_', ' ')} {run['requests_per_s']:.0f} req/s" for key, run in runs.items()))


def main():
    parser = argparse.ArgumentParser(description="ums-balancer vs HAProxy 2.6 on loopback")
    parser.add_argument("--binary", required=True)
    parser.add_argument("--rounds", type=int, default=None, help="rounds per proxy for the rate scenarios (default 5, --quick 2)")
    parser.add_argument("--quick", action="store_true", help="1-2 short rounds, fewer idle connections, 5 reloads")
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk run (default 10, --quick 3)")
    parser.add_argument("--bulk-duration", type=int, default=None, help="seconds per iperf3 run (default 8, --quick 3)")
    parser.add_argument("--connections", default="32,50",
                        help="wrk connections, comma-separated: the rate scenarios run at each (default 32,50)")
    parser.add_argument("--idle-connections", type=int, default=None)
    parser.add_argument("--reloads", type=int, default=None)
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="seconds to wait before a run for other processes to go quiet (default 30, --quick 5)")
    parser.add_argument("--quiet-budget", type=float, default=600, help="total seconds of such waiting")
    parser.add_argument("--only", default="conn,keepalive,tlskeepalive,tlsconn,sni,log,bulk,idle,reload",
                        help="comma-separated subset of: conn,keepalive,tlskeepalive,tlsconn,sni,log,bulk,splice,idle,"
                             "reload,syscalls,floor (floor: keep-alive also runs the minimal C relays of "
                             "floor-relay.c, epoll and io_uring, needs cc and liburing; splice: the bulk scenario on a second ums-balancer with the splice(2) "
                             "trial on; syscalls: strace -c counts per connection and request, needs strace)")
    parser.add_argument("--syscall-duration", type=int, default=3, help="seconds of wrk under strace per count")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "latest.json"))
    args = parser.parse_args()
    try:
        args.connections = [int(c) for c in str(args.connections).split(",") if c.strip()]
    except ValueError:
        parser.error(f"--connections: comma-separated numbers, not {args.connections!r}")
    if not args.connections or min(args.connections) < 1:
        parser.error("--connections: at least one positive number")
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.duration = args.duration or (3 if args.quick else 10)
    args.bulk_duration = args.bulk_duration or (3 if args.quick else 8)
    args.warmup = 1 if args.quick else 2
    args.quiet_wait = args.quiet_wait if args.quiet_wait is not None else (5 if args.quick else 30)
    args.idle_connections = args.idle_connections or (2000 if args.quick else 9500)
    args.reloads = args.reloads or (5 if args.quick else 20)
    only = set(args.only.split(","))

    bench = Bench(args)
    results = {"meta": machine_info(args.binary), "settings": {k: v for k, v in vars(args).items()}}
    results["settings"].update({
        "proxy_cpu": PROXY_CPU, "load_cpu": LOAD_CPU, "haproxy_maxconn": bench.maxconn,
        "idle_connections": bench.idle_count,
    })
    t_start = time.monotonic()
    stop_requested = []

    def on_signal(signum, frame):
        stop_requested.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        bench.start_backends()
        if only & {"conn", "keepalive", "tlskeepalive", "tlsconn", "sni"}:
            direct(bench, results)

        rounds_results = {"connection_rate": {}, "keep_alive": {}, "bulk": {}, "idle": {}, "reload": {}}
        results.update(rounds_results)
        tls = bool(only & {"tlskeepalive", "tlsconn", "sni"})
        if only & {"conn", "keepalive", "bulk", "tlskeepalive", "tlsconn", "sni"}:
            ums = bench.start_ums(tls=tls)
            ha = bench.start_haproxy(tls=tls)
            procs = {UMS: ums, HAPROXY: ha}
            floors = {}
            if "floor" in only and "keepalive" in only:
                floors = {f"floor-{mode}": bench.start_floor(mode) for mode in FLOOR_MODES}
            tls_scenarios = (
                ("tlskeepalive", "tls_keep_alive", "https keep-alive", False, "https_port"),
                ("tlsconn", "tls_connection_rate", "https conn-rate", True, "https_port"),
                ("sni", "sni_connection_rate", "sni conn-rate", True, "sni_port"),
            )
            for c in args.connections:
                if "conn" in only:
                    results["connection_rate"][str(c)] = rate_scenario(
                        bench, procs, f"conn-rate -c{c}", True, args.rounds, args.duration, c)
                if "keepalive" in only:
                    results["keep_alive"][str(c)] = rate_scenario(
                        bench, {**procs, **floors}, f"keep-alive -c{c}", False, args.rounds, args.duration, c)
                for option, key, label, close, port in tls_scenarios:
                    if option in only:
                        results.setdefault(key, {})[str(c)] = rate_scenario(
                            bench, procs, f"{label} -c{c}", close, args.rounds, args.duration, c,
                            port=port, scheme="https")
            if "bulk" in only:
                ha_splice_name = "haproxy-splice"
                # The splice instance binds the same ports: run it alone, after the others.
                bulk_rounds = 1 if args.quick else 3
                results["bulk"] = bulk_scenario(bench, procs, bulk_rounds, args.bulk_duration)
            ums.stop()
            ha.stop()
            for floor in floors.values():
                floor.stop()
            if "bulk" in only:
                splice = bench.start_haproxy(name="haproxy-splice", splice=True)
                results["bulk"].update(bulk_scenario(bench, {ha_splice_name: splice}, 1, args.bulk_duration))
                splice.stop()
        if "splice" in only:
            # The splice(2) trial of the relay, against the same build copying (run alone: bulk
            # saturates the proxy's core, so two instances must not overlap).
            plain = bench.start_ums(name="ums-copying")
            spliced = bench.start_ums(name="ums-splice", env={SPLICE_ENV: "auto"})
            trial = bulk_scenario(bench, {UMS: plain, UMS + "-splice": spliced}, 1 if args.quick else 3,
                                  args.bulk_duration)
            results["splice_trial"] = trial
            spliced.stop()
            plain.stop()
        if "syscalls" in only:
            results["syscalls"] = syscall_scenario(bench, max(args.connections), args.syscall_duration)
        if "log" in only:
            # Two fresh instances, same history, alternating: the access log's own cost.
            warning = bench.start_ums(name="ums-warning", log_level="warning")
            info = bench.start_ums(name="ums-info", log_level="info", stderr_to_null=True)
            results["connection_rate_access_log"] = rate_scenario(
                bench, {"ums-balancer-warning": warning, "ums-balancer-info": info}, "conn-rate access-log", True,
                1 if args.quick else 2, args.duration, max(args.connections))
            info.stop()
            warning.stop()
        if "idle" in only:
            for name in (UMS, HAPROXY):
                proc = bench.start_ums(name="ums-idle") if name == UMS else bench.start_haproxy(name="haproxy-idle")
                try:
                    results["idle"][name] = idle_scenario(bench, proc, name)
                finally:
                    proc.stop(timeout=30)
        if "reload" in only:
            for name in (UMS, HAPROXY):
                results["reload"][name] = reload_scenario(bench, name, args.reloads, 0.5, max(args.connections))
    except KeyboardInterrupt:
        log("interrupted: stopping what was started")
        stop_all()
        sys.exit(130)
    finally:
        stop_all()

    results["elapsed_s"] = round(time.monotonic() - t_start, 1)
    try:
        results["summary"] = summarize(results)
        rows = table(results["summary"], args.connections)
        results["table"] = [dict(zip(("metric", "ums", "haproxy", "better", "target"), row)) for row in rows]
        text = render(rows, args.reloads)
    except (KeyError, TypeError, ValueError) as error:
        text = f"(no table: {error!r})"
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2, default=str)
    md = os.path.splitext(args.output)[0] + ".md"
    for c, baseline in results.get("direct", {}).items():
        text += f"\n\nDirect to nginx, no proxy, -c{c} (the ceiling of this load generator and backend): " + ", ".join(
            f"{key.replace('_', ' ')} {run['requests_per_s']:.0f} req/s" for key, run in baseline.items()) + "."
    for key in sorted(k for k in results.get("summary", {}) if k.endswith("cpu_ratio_by_round")):
        text += f"\n\nums/HAProxy CPU per request round by round, {key[:-len('.cpu_ratio_by_round')]}: " + \
            ", ".join(f"{r:.2f}" for r in results["summary"][key])
    with open(md, "w") as f:
        f.write(f"{results['meta']['date']} {results['meta']['cpu_model']} x{results['meta']['nproc']}, "
                f"kernel {results['meta']['kernel']}, {results['meta']['haproxy']}\n\n{text}\n")
    print()
    print(text)
    print()
    runs_used = {k: v for k, v in results.get("summary", {}).items() if k.endswith(".runs")}
    print("runs used: " + ", ".join(f"{k[:-5]} {v}" for k, v in runs_used.items()))
    print(f"medians over {args.rounds} rounds; raw figures: {args.output}; table: {md}; "
          f"logs: {bench.work}; took {results['elapsed_s']} s")


if __name__ == "__main__":
    main()
