#!/usr/bin/env python3
"""A pass-through proxy in front of a test registry that misbehaves on blob downloads:
under /v2/drop/ the first response for each blob is cut off (the connection closed) after
DROP_AFTER bytes; under /v2/flip/ one byte of every blob is flipped; under /v2/slow/ each
blob is held back for SLOW_SECONDS, and an "inflight N" line logs how many blob requests
(N, this one included) were being answered at once; under /v2/stall/ each layer (a blob
that is not a JSON document) is held back while the file STALL_FILE (if given) exists, after
a "stalled PATH" line in the log; /v2/plain/ passes through. Range headers are passed to the
registry, so interrupted downloads can resume.
Usage: blob_proxy.py UPSTREAM_PORT LOGFILE DROP_AFTER [STALL_FILE]; prints its own port on stdout.
The log has one line per request: status, path and the Range header (or "-")."""
import http.client
import http.server
import os
import sys
import threading
import time

UPSTREAM = int(sys.argv[1])
LOG = open(sys.argv[2], "a", buffering=1)
DROP_AFTER = int(sys.argv[3])
STALL_FILE = sys.argv[4] if len(sys.argv) > 4 else None
SLOW_SECONDS = 0.4
dropped = set()
lock = threading.Lock()
inflight = 0


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        global inflight
        mode, _, rest = self.path[len("/v2/"):].partition("/")
        slow = mode == "slow" and "/blobs/" in self.path
        if slow:
            with lock:
                inflight += 1
                LOG.write("inflight %d\n" % inflight)
            time.sleep(SLOW_SECONDS)
            with lock:
                inflight -= 1
        headers = {"Accept": self.headers.get("Accept", "*/*")}
        if self.headers.get("Range"):
            headers["Range"] = self.headers["Range"]
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM)
        conn.request("GET", "/v2/" + rest, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        blob = "/blobs/" in self.path and resp.status in (200, 206) and body
        if blob and mode == "stall" and STALL_FILE and not body.startswith(b"{"):
            LOG.write("stalled %s\n" % self.path)
            while os.path.exists(STALL_FILE):
                time.sleep(0.02)
        LOG.write("%d %s %s\n" % (resp.status, self.path, self.headers.get("Range", "-")))
        if blob and mode == "flip":
            body = body[:-1] + bytes([body[-1] ^ 0x01])
        cut = False
        if blob and mode == "drop" and len(body) > DROP_AFTER:
            with lock:
                cut = self.path not in dropped
                dropped.add(self.path)
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in ("content-type", "docker-content-digest", "content-range"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:  # promise the whole body, send part of it, hang up
            self.wfile.write(body[:DROP_AFTER])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print(server.server_port, flush=True)
server.serve_forever()
