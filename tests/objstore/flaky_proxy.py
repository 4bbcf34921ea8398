#!/usr/bin/env python3
"""tests/objstore/flaky_proxy.py - an HTTP proxy in front of a real S3 server
that fails the first requests on purpose, so the client's retries are tested
against real replies.

    flaky_proxy.py UPSTREAM_PORT MODE COUNT
      MODE  status:500        answer COUNT requests with HTTP 500 (S3 XML body)
            status:503:SlowDown   ... with 503 and code SlowDown
            status:403:AccessDenied  ... (must not be retried)
            reset             close COUNT connections without a reply
            delay:MS          hold every request MS milliseconds before forwarding it,
                              as a distant store would (COUNT is ignored)

It listens on 127.0.0.1 on a free port and prints "PORT n" on stdout when it
is ready. Every request after the first COUNT is forwarded unchanged (the
Host header too, so SigV4 signatures still verify). Each request is logged on
stderr as "REQ <n> <method> <path> -> <status>"; it exits on SIGTERM.
"""
import http.client
import socket
import socketserver
import sys
import threading
import time

upstream_port = int(sys.argv[1])
mode = sys.argv[2]
delay_s = int(mode.split(":")[1]) / 1000.0 if mode.startswith("delay:") else 0.0
remaining = [0 if delay_s else int(sys.argv[3])]
counter = [0]
lock = threading.Lock()


def read_request(rfile):
    line = rfile.readline(65537)
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers = []
    length = 0
    while True:
        h = rfile.readline(65537).decode("latin-1")
        if h in ("\r\n", "\n", ""):
            break
        name, value = h.split(":", 1)
        headers.append((name.strip(), value.strip()))
        if name.strip().lower() == "content-length":
            length = int(value)
    body = rfile.read(length) if length else b""
    return method, path, headers, body


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            req = read_request(self.rfile)
            if req is None:
                return
            method, path, headers, body = req
            with lock:
                counter[0] += 1
                n = counter[0]
                fail = remaining[0] > 0
                if fail:
                    remaining[0] -= 1
            if fail and mode == "reset":
                log(n, method, path, "reset")
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fail:
                parts = mode.split(":")
                status = int(parts[1])
                code = parts[2] if len(parts) > 2 else "InternalError"
                xml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code>"
                       "<Message>injected by flaky_proxy</Message></Error>" % code).encode()
                log(n, method, path, status)  # before the reply: the client reads the log next
                self.wfile.write(b"HTTP/1.1 %d Injected\r\nContent-Type: application/xml\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                                 % (status, len(xml)))
                if method != "HEAD":
                    self.wfile.write(xml)
                return
            if delay_s:
                time.sleep(delay_s)
            conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read()
            out = ["HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason)]
            for name, value in resp.getheaders():
                if name.lower() in ("transfer-encoding", "connection", "content-length"):
                    continue
                out.append("%s: %s\r\n" % (name, value))
            length = resp.getheader("Content-Length") if method == "HEAD" else str(len(data))
            if length is not None:
                out.append("Content-Length: %s\r\n" % length)
            out.append("\r\n")
            conn.close()
            log(n, method, path, resp.status)
            self.wfile.write("".join(out).encode("latin-1") + data)


def log(n, method, path, status):
    sys.stderr.write("REQ %d %s %s -> %s\n" % (n, method, path, status))
    sys.stderr.flush()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", 0), Handler)
print("PORT %d" % server.server_address[1], flush=True)
server.serve_forever()
