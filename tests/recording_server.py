"""A tiny HTTP server for tests that records every request it receives, headers included.

    python tests/recording_server.py RECORDS.jsonl [--delay-ms 40]

Prints `listening on http://127.0.0.1:PORT`, then appends one JSON line per request to RECORDS.jsonl the
moment the request has arrived (before answering): method, path, Idempotency-Key and body. Each answer
is a 200 after `--delay-ms`. Threaded, so it serves many requests at once; loopback only.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("records")
    parser.add_argument("--delay-ms", type=int, default=40)
    args = parser.parse_args()
    lock = threading.Lock()
    records = open(args.records, "a", buffering=1)  # noqa: SIM115  (open for the server's life)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode(errors="replace") if length else ""
            line = {
                "method": self.command,
                "path": self.path,
                "key": self.headers.get("Idempotency-Key"),
                "body": body,
                "at": time.time(),
            }
            with lock:
                records.write(json.dumps(line) + "\n")
            time.sleep(args.delay_ms / 1000)
            payload = b'{"result": "done!"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

        def log_message(self, *_: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, *_: object) -> None:
            pass  # a client that went away (killed, timed out) is expected here

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 512
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
