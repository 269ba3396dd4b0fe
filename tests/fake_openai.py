"""A small local server that speaks the OpenAI chat/completions protocol, for tests.

``answers`` maps a prompt's last user message to the completion to return (else ``default``); ``reply``, a
function of that message, replaces both. ``status`` (e.g. 429 or 503): every request is answered with that
error instead. ``requests`` counts the requests received."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from policies.server import send_json


class FakeOpenAI:
    def __init__(self, answers: dict[str, str] | None = None, default: str = "lorem ipsum", reply=None,
                 status: int | None = None):
        self.answers, self.default, self.requests = answers or {}, default, 0
        self.reply, self.status = reply, status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests += 1
                if outer.status is not None:
                    send_json(self, {"error": {"message": "fake error", "code": outer.status}}, code=outer.status)
                    return
                q = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
                text = outer.reply(q) if outer.reply is not None else outer.answers.get(q, outer.default)
                key = "message" if "messages" in body else "text"
                choices = [{"index": i, key: ({"role": "assistant", "content": text} if key == "message" else text),
                            "finish_reason": "stop"} for i in range(body.get("n", 1))]
                send_json(self, {"choices": choices})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
