"""A side-effecting tool service for the scale-out fault test (issue 28): the tools
counted at the tool, in another stack than agentc (Python's standard library).

POST /charge  takes an `Idempotency-Key` header: the first request with a key has the
              effect (a charge is recorded); a repeated key has none and gets the first
              answer again. A charge without a key is refused (400).
POST /notify  has no idempotency: every request has its effect (a notice is counted).
POST /hold    makes every later /notify wait, after its effect, until /release, so a
              test can pause the server that sent it while the call is under way.
POST /release lets the held /notify calls answer.
GET  /stats   what happened: effects per key, repeated keys, notices.

Each effect takes a little time (0-40 ms), so that a server killed at random is often
killed while a call is under way. Binds 127.0.0.1 on the port given (0: any); prints
`PORT <n>` once listening.
"""

import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
charges = {}  # key -> number of times the effect ran (must stay 1)
answers = {}  # key -> the first answer
repeated = 0  # requests whose key had been seen
notices = 0
held = threading.Event()  # set: /notify waits for /release
released = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != "/stats":
            return self.answer(404, {"error": "not found"})
        with lock:
            self.answer(
                200,
                {
                    "charges": dict(charges),
                    "repeated": repeated,
                    "notices": notices,
                },
            )

    def do_POST(self):
        global repeated, notices
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        time.sleep(random.random() * 0.04)
        if self.path == "/charge":
            key = self.headers.get("idempotency-key")
            if not key:
                return self.answer(400, {"error": "an idempotency key is required"})
            with lock:
                if key in answers:
                    repeated += 1
                    return self.answer(200, answers[key])
                charges[key] = charges.get(key, 0) + 1
                answers[key] = {"charge_id": "ch_%d" % len(answers), "amount": body.get("amount", 0)}
                return self.answer(200, answers[key])
        if self.path == "/notify":
            with lock:
                notices += 1
            if held.is_set():
                released.wait(60)
            return self.answer(200, {"sent": True})
        if self.path == "/hold":
            released.clear()
            held.set()
            return self.answer(200, {})
        if self.path == "/release":
            held.clear()
            released.set()
            return self.answer(200, {})
        return self.answer(404, {"error": "not found"})


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
