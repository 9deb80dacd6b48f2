"""A test receiver of Alertmanager's webhooks: each POST body, one JSON line, in /run/webhook.jsonl.
Listens on the loopback only."""

import http.server


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the name http.server calls)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open("/run/webhook.jsonl", "ab") as out:
            out.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", 9099), Handler).serve_forever()
