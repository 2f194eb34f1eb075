#!/usr/bin/env python3
"""A stand-in MISP instance for misp-guard's end-to-end tests and demo.

It listens on one or more addresses, answers every request with the
response described in a script file (re-read for every request, so a test
can change the answer between requests), and appends one JSON line per
request it received to a record file: method, path, headers and the body
(base64). Tests read the record to prove what did, and did not, reach it.

Script file (JSON): {"status": 200, "headers": {"X-UserOrgUUID": "…"},
"body_file": "/path/to/fixture.json"} or {"body": "text"}; missing fields
give 200 with {"saved": true} (with the event's metadata for an add or
edit, as MISP answers).
"""

import argparse
import base64
import json
import os
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()

EVENT_METADATA = json.dumps({"Event": {
    "id": "1", "uuid": "385283a1-b5e0-4e10-a532-dce11c365a56", "info": "pushed",
    "distribution": "1", "published": False, "timestamp": "1700000000",
    "Orgc": {"name": "ORG"}, "Tag": [{"name": "tlp:green"}],
}}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-misp"
    sys_version = ""

    def log_message(self, *args):
        pass

    def _record(self, body: bytes) -> None:
        entry = {
            "listen": "%s:%d" % self.server.server_address[:2],
            "client": self.client_address[0],
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_b64": base64.b64encode(body).decode(),
            "body_len": len(body),
        }
        with LOCK:
            with open(self.server.record, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self._record(body)
        try:
            with open(self.server.script) as f:
                script = json.load(f)
        except (OSError, ValueError):
            script = {}
        status = int(script.get("status", 200))
        if "body_file" in script:
            with open(script["body_file"], "rb") as f:
                out = f.read()
        elif "body" in script:
            out = script["body"].encode()
        elif self.command == "POST" and self.path.endswith(
            ("/servers/postTest", "/analyst_data/filterAnalystDataForPush")
        ):
            # postTest echoes; filterAnalystDataForPush answers the subset it
            # accepts, here all of it.
            out = body
        elif self.command == "POST" and ("/events/add" in self.path or "/events/edit" in self.path):
            # MISP answers an add or edit with the event's metadata.
            out = EVENT_METADATA
        else:
            out = b'{"saved": true}'
        self.send_response(status)
        headers = {"Content-Type": "application/json"}
        headers.update(script.get("headers", {}))
        for k, v in headers.items():
            self.send_header(k, v)
        if script.get("chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command != "HEAD":
                step = 1000
                for i in range(0, len(out), step):
                    piece = out[i : i + step]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = _answer
    do_POST = _answer
    do_HEAD = _answer
    do_PUT = _answer
    do_DELETE = _answer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", action="append", required=True, help="host:port")
    p.add_argument("--record", required=True)
    p.add_argument("--script", required=True)
    p.add_argument("--cert", help="PEM certificate: serve TLS")
    p.add_argument("--key", help="PEM key for --cert")
    p.add_argument("--ready", help="file to create once listening")
    a = p.parse_args()
    servers = []
    for spec in a.listen:
        host, port = spec.rsplit(":", 1)
        host = host.strip("[]")
        server_class = ThreadingHTTPServer
        if ":" in host:
            server_class = type("Server6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        srv = server_class((host, int(port)), Handler)
        srv.daemon_threads = True
        srv.record = a.record
        srv.script = a.script
        if a.cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(a.cert, a.key)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        servers.append(srv)
    for srv in servers[1:]:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    if a.ready:
        with open(a.ready, "w") as f:
            f.write(str(os.getpid()))
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
