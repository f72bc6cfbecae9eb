"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions and Anthropic
messages APIs, with scripted replies, recording every request it gets."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def openai_body(text: str) -> dict:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


def anthropic_body(text: str) -> dict:
    return {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "model": "fake",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 20},
    }


def user_part(body, kind):
    message = body["messages"][1] if body["messages"][0]["role"] == "system" else body["messages"][0]
    return [part for part in message["content"] if part["type"] == kind]


def sentence_count(body) -> int:
    return len(re.findall(r'^ "(\d+)": ', user_part(body, "text")[0]["text"], re.M))


def all_ones(body):
    """A well-behaved Teacher: every sentence 1.0, nothing to correct, A is better."""
    system = body.get("system") or body["messages"][0]["content"]
    if "compare two explanations" in system:
        return '{"better": "A"}'
    if "correct a student" in system:
        return "{UNCHANGED}"
    return json.dumps({str(i + 1): 1.0 for i in range(sentence_count(body))})


class FakeAPIServer:
    """`script` is a list of replies used in order, then `default` for every further request.
    A reply is a text (200 with it as the model's answer) or a dict with any of
    status, headers, text, delay (seconds before answering)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list = []
        self.default = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                reply = server.script.pop(0) if server.script else server.default(body)
                if isinstance(reply, str):
                    reply = {"text": reply}
                time.sleep(reply.get("delay", 0))
                status = reply.get("status", 200)
                if status == 200:
                    make = anthropic_body if self.path.endswith("/messages") else openai_body
                    payload = make(reply["text"])
                else:
                    payload = {"error": {"type": "error", "message": f"status {status}"}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in reply.get("headers", {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
