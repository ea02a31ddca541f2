"""`bench fuzz`'s pure parts: the corpus survives its file, the tally counts what it is told."""

from __future__ import annotations

from pathlib import Path

import httpx

from pipeline.devtools.bench.fuzz import (
    FuzzTally,
    HostileRequest,
    generate_corpus,
    load_corpus,
    send_hostile,
)


def test_a_corpus_file_gives_back_the_requests_it_was_generated_with(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.json"
    generated = generate_corpus(60, seed=3, corpus=corpus)
    assert load_corpus(corpus) == generated
    assert {r.method for r in generated} >= {"GET", "POST"}


def test_the_tally_counts_statuses_and_the_reasons_of_400s() -> None:
    answers = iter(
        [
            httpx.Response(400, json={"error": "bad_json", "detail": "x"}),
            httpx.Response(200, json={"accepted": []}),
            httpx.Response(503, json={"error": "unavailable"}),
        ]
    )
    client = httpx.Client(
        transport=httpx.MockTransport(lambda request: next(answers)), base_url="http://x"
    )
    tally = FuzzTally()
    for _ in range(3):
        send_hostile(client, "/callbacks/t", HostileRequest("GET", "a=1", (), b""), tally)
    assert tally.statuses == {400: 1, 200: 1, 503: 1}
    assert tally.reasons == {"bad_json": 1}
    assert tally.answers_5xx == 1
    assert tally.sent == 3


def test_a_url_too_long_for_httpx_still_reaches_the_server() -> None:
    """httpx builds no URL over 65,536 characters; the fuzzer writes that request itself, so
    the server's answer is what gets counted (here a real server on loopback: 414)."""
    import socketserver
    import threading

    seen: list[int] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline(1 << 20)
            seen.append(len(line))
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            self.wfile.write(b"HTTP/1.1 414 URI Too Long\r\nContent-Length: 2\r\n\r\n{}")

    with socketserver.TCPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            port = server.server_address[1]
            tally = FuzzTally()
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                request = HostileRequest("GET", "a=" + "x" * 70_000, (), b"")
                send_hostile(client, "/callbacks/t", request, tally)
        finally:
            server.shutdown()
    assert tally.statuses == {414: 1}
    assert tally.transport_errors == {}
    assert seen and seen[0] > 70_000
