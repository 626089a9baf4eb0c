"""The chaos harness's webhook receiver: records every delivery attempt, one JSON line each, in
an append-only file (the harness's independent record of what reached tenants).

    receiver.py PORT LOG_FILE

POST /t/<endpoint> records {"t", "endpoint", "webhook_id", "type", "message_id", "status"} and
answers 200 — or 500 while the endpoint is failing (POST /control/fail {"endpoint", "for_s"}).
GET /count answers the number of recorded 200 deliveries (for the harness's waits).
"""
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
failing_until = {}  # endpoint → time.time() until which it answers 500
delivered = 0
log_file = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the dispatcher expects

    def log_message(self, *args):  # quiet: the JSON lines are the record
        pass

    def _answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        if self.path == "/count":
            with lock:
                n = delivered
            return self._answer(200, str(n).encode())
        self._answer(404)

    def do_POST(self):
        global delivered
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/control/fail":
            req = json.loads(raw)
            with lock:
                failing_until[req["endpoint"]] = time.time() + float(req["for_s"])
            return self._answer(200, b"{}")
        if not self.path.startswith("/t/"):
            return self._answer(404)
        endpoint = self.path[3:]
        now = time.time()
        with lock:
            status = 500 if failing_until.get(endpoint, 0) > now else 200
        try:
            event = json.loads(raw)
            data = event.get("data") or {}
            rec = {"t": now, "endpoint": endpoint, "webhook_id": self.headers.get("webhook-id"),
                   "type": event.get("type"), "event_id": event.get("id"),
                   "message_id": data.get("message_id"), "reason": data.get("reason"), "status": status}
        except ValueError:
            rec = {"t": now, "endpoint": endpoint, "webhook_id": self.headers.get("webhook-id"),
                   "type": None, "message_id": None, "status": status, "malformed": True}
        with lock:
            log_file.write(json.dumps(rec) + "\n")
            if status == 200:
                delivered += 1
        self._answer(status, b"{}" if status == 200 else b'{"error":"chaos: failing on purpose"}')


def flusher():
    while True:
        time.sleep(0.5)
        with lock:
            log_file.flush()


def main():
    global log_file
    port, path = int(sys.argv[1]), sys.argv[2]
    log_file = open(path, "a", buffering=1 << 16)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def stop(*_):
        with lock:
            log_file.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=flusher, daemon=True).start()
    print(f"receiver listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        with lock:
            log_file.flush()


if __name__ == "__main__":
    main()
