#!/usr/bin/env python3
"""Opens N keep-alive HTTP connections through a proxy and holds them idle.

Protocol with bench.py (one line each on stdout):
  OPENED {json}   every connection was opened and answered one request (or failed/timed out)
  ... waits for a line on stdin (or EOF) ...
  CHECKED {json}  a second request was sent on every open connection; how many answered
Then closes everything and exits. Every phase has a deadline; nothing loops unbounded.
"""
import argparse
import errno
import json
import resource
import selectors
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def response_complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return len(body) >= length


def exchange(selector, socks, deadline):
    """Sends one request on every socket in `socks`, reads one response from each. Returns answered set."""
    pending = {}
    answered = set()
    for s in socks:
        try:
            s.send(REQUEST)
            pending[s] = b""
            selector.register(s, selectors.EVENT_READ)
        except OSError:
            pass
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            s = key.fileobj
            try:
                chunk = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                selector.unregister(s)
                del pending[s]
                continue
            pending[s] += chunk
            if response_complete(pending[s]):
                ok = pending[s].startswith(b"HTTP/1.1 200")
                selector.unregister(s)
                del pending[s]
                if ok:
                    answered.add(s)
    for s in pending:
        selector.unregister(s)
    return answered


def open_all(host, port, count, batch, deadline):
    selector = selectors.DefaultSelector()
    opened = []
    failed = 0
    started = 0
    connecting = {}
    while (started < count or connecting) and time.monotonic() < deadline:
        while started < count and len(connecting) < batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((host, port))
            started += 1
            if rc not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                continue
            connecting[s] = True
            selector.register(s, selectors.EVENT_WRITE)
        ready = []
        for key, _ in selector.select(timeout=0.5):
            ready.append(key.fileobj)
        for s in ready:
            selector.unregister(s)
            del connecting[s]
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                failed += 1
                s.close()
            else:
                opened.append(s)
    for s in list(connecting):
        selector.unregister(s)
        s.close()
        failed += 1
    answered = exchange(selector, opened, deadline)
    alive = [s for s in opened if s in answered]
    for s in opened:
        if s not in answered:
            s.close()
    return selector, alive, failed + (len(opened) - len(alive))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    t0 = time.monotonic()
    selector, alive, failed = open_all(args.host, args.port, args.count, args.batch, t0 + args.timeout)
    opened = {"requested": args.count, "open": len(alive), "failed": failed,
              "seconds": round(time.monotonic() - t0, 3)}
    print("OPENED " + json.dumps(opened), flush=True)

    sys.stdin.readline()

    t1 = time.monotonic()
    answered = exchange(selector, alive, t1 + args.timeout)
    checked = {"checked": len(alive), "answered": len(answered), "seconds": round(time.monotonic() - t1, 3)}
    print("CHECKED " + json.dumps(checked), flush=True)
    for s in alive:
        s.close()


if __name__ == "__main__":
    main()
