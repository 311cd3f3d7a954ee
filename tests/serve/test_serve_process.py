"""`seqgan serve` as a real process on a loopback port, spoken to over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx


def wait_healthy(proc: subprocess.Popen, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            if httpx.get(url + "healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url}healthz did not answer within {timeout} s")


def test_serve_subprocess_round_trip(full_run, port, tmp_path):
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "seqgan", "serve", "--run-dir", str(full_run),
                                 "--host", "127.0.0.1", "--port", str(port), "--max-wait-ms", "2", "--json"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        wait_healthy(proc, url)
        with httpx.Client(base_url=url, timeout=30.0) as http:
            r = http.post("/v1/respond", json={"context": ["hello how are you"], "generator": "adversarial",
                                               "temperature": 0})
            assert r.status_code == 200, r.text
            assert r.json()["generator"] == "adversarial" and isinstance(r.json()["response"], str)
            bad = http.post("/v1/respond", content=b"{oops", headers={"content-type": "application/json"})
            assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]
            assert http.get("/v1/info").json()["batching"]["requests"] == 1
            assert "seqgan chat" in http.get("/").text
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert f"seqgan serve: {url}" in log.read_text()
    assert "Traceback" not in log.read_text()
    # SIGTERM: a graceful stop, exit 0, and --json prints the batching counters
    assert proc.returncode == 0, log.read_text()[-2000:]
    stats = json.loads(out)
    assert stats["url"] == url and stats["requests"] == 1


def test_sigterm_under_load_answers_every_queued_request_with_json(full_run, port, tmp_path):
    """Requests still queued when the server stops get a JSON 503 at once (uvicorn alone would
    cancel them after its grace period: a plain-text 500 and a traceback each)."""
    import asyncio
    import signal

    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "seqgan", "serve", "--run-dir", str(full_run),
                                 "--host", "127.0.0.1", "--port", str(port), "--max-batch-size", "1"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_healthy(proc, url)

        async def load():
            limits = httpx.Limits(max_connections=200)  # every request on its own connection, at once
            async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as http:
                body = {"context": ["hello how are you"], "strategy": "beam", "num_beams": 16}
                jobs = [asyncio.ensure_future(http.post("/v1/respond", json=body)) for _ in range(200)]
                done, _ = await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
                proc.send_signal(signal.SIGTERM)  # with most of the 200 still queued
                return await asyncio.gather(*jobs, return_exceptions=True)

        replies = asyncio.run(load())
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    codes = [r.status_code for r in replies if isinstance(r, httpx.Response)]
    assert len(codes) == 200, [r for r in replies if not isinstance(r, httpx.Response)][:3]
    # answered at once, not computed through the grace period: most of the queue is refused
    assert set(codes) <= {200, 503} and codes.count(503) >= 100 and 200 in codes, codes
    for r in replies:
        if r.status_code == 503:
            assert "shutting down" in r.json()["error"]
    assert "Traceback" not in log.read_text() and proc.returncode == 0
