#!/usr/bin/env python3
"""A registry front door for tests: demands a bearer token (Docker token auth flow: 401 +
WWW-Authenticate, GET the realm for a token, retry with it), then proxies to the real
registry. Tokens are anonymous, except for private/*: those need USER:PASSWORD as basic auth
on the GET (wrong basic credentials are refused for any scope, or none), or IDENTITY_TOKEN POSTed as an OAuth2 refresh token (docs/spec/auth/oauth.md).
Repositories named flaky/*, limited/*, corrupt/* and denied/* misbehave on purpose.
Usage: token_proxy.py UPSTREAM_PORT LOGFILE [USER PASSWORD IDENTITY_TOKEN]; prints its own port
on stdout. The log has status and path (and POST), never credentials."""
import base64
import http.client
import http.server
import json
import re
import sys
import threading
import urllib.parse

UPSTREAM = int(sys.argv[1])
LOG = open(sys.argv[2], "a", buffering=1)
USER, PASSWORD, IDENTITY = (sys.argv[3:6] + ["", "", ""])[:3]
TOKEN = "flick-test-token"
PRIVATE_TOKEN = "flick-test-private-token"
flaky_left = {"n": 2}
lock = threading.Lock()


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body=b"", headers=None):
        # Logged before the client can see the answer, so a test that reads the log right
        # after its request finds the line (the server is threaded: no other order holds).
        LOG.write("%d %s%s\n" % (code, "POST " if self.command == "POST" else "", self.path))
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def token(self, scope, form):
        # Credentials that are sent are checked whatever the scope, as real token servers do
        # (`docker login` asks for a token with no scope to check them).
        sent = self.headers.get("Authorization")
        if sent and form is None and USER and sent != self.basic():
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": 'Basic realm="token"'})
        if "repository:private/" not in scope:
            return self.reply(200, json.dumps({"token": TOKEN}).encode(), {"Content-Type": "application/json"})
        if form is not None:
            ok = IDENTITY and form.get("grant_type") == ["refresh_token"] and form.get("refresh_token") == [IDENTITY]
        else:
            ok = USER and self.headers.get("Authorization") == self.basic()
        if not ok:
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": 'Basic realm="token"'})
        key = "access_token" if form is not None else "token"
        self.reply(200, json.dumps({key: PRIVATE_TOKEN}).encode(), {"Content-Type": "application/json"})

    def basic(self):
        return "Basic " + base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        if not self.path.startswith("/token"):
            return self.reply(405)
        form = urllib.parse.parse_qs(body)
        self.token(form.get("scope", [""])[0], form)

    def do_GET(self):
        host = "127.0.0.1:%d" % self.server.server_port
        if self.path.startswith("/token"):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            return self.token(query.get("scope", [""])[0], None)
        wanted = PRIVATE_TOKEN if self.path.startswith("/v2/private/") else TOKEN
        if self.headers.get("Authorization") != "Bearer " + wanted or self.path.startswith("/v2/denied/"):
            repo = re.sub(r"^/v2/(.*?)/(manifests|blobs)/.*$", r"\1", self.path)
            challenge = 'Bearer realm="http://%s/token",service="flick-test",scope="repository:%s:pull"' % (host, repo)
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
        if self.path.startswith("/v2/limited/"):
            return self.reply(429, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}')
        if self.path.startswith("/v2/flaky/"):
            with lock:
                if flaky_left["n"] > 0:
                    flaky_left["n"] -= 1
                    return self.reply(503, b"try again")
        upstream_path = self.path
        for prefix in ("/v2/flaky/", "/v2/corrupt/", "/v2/private/"):
            if upstream_path.startswith(prefix):
                upstream_path = "/v2/" + upstream_path[len(prefix):]
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM)
        conn.request("GET", upstream_path, headers={"Accept": self.headers.get("Accept", "*/*")})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status in (301, 302, 307):  # follow the registry's own redirects here
            conn.request("GET", resp.getheader("Location"))
            resp = conn.getresponse()
            body = resp.read()
        if self.path.startswith("/v2/corrupt/") and "/blobs/" in self.path and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        headers = {k: v for k, v in resp.getheaders() if k.lower() in ("content-type", "docker-content-digest")}
        self.reply(resp.status, body, headers)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print(server.server_port, flush=True)
server.serve_forever()
