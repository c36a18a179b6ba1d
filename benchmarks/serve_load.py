"""Load test of `resnetkit serve`: requests/s and latency from 1, 8 and 32 concurrent clients,
with dynamic batching and one request at a time (--max-batch 1).

The server runs as a subprocess (`python -m resnetkit.cli.main serve`) on 127.0.0.1 and
receives real files: CIFAR-10 JPEGs for an image run, FSDD WAV clips for an audio run, as
raw request bodies. Every answer is checked (status 200, a top_k list); any other answer or
a dropped connection is an error. The client is a small asyncio HTTP/1.1 keep-alive client
(about 50 us of CPU per request): the server and the client share the machine, and a heavy
client would take the CPU the server is measured on.

Usage:
    python benchmarks/serve_load.py --checkpoint runs/serve-r20 --files ../shared/data/cifar10/train \
        [--audio-checkpoint runs/serve-fsdd --audio-files ../shared/data/fsdd/recordings] \
        [--clients 1,8,32] [--requests 500,1500,3000] [--out runs/serve-load.json]
Prints a Markdown table per model (with the machine's load average) and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: str, port: int, max_batch: int, max_wait_ms: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "resnetkit.cli.main", "serve", "--checkpoint", checkpoint, "--host", "127.0.0.1",
           "--port", str(port), "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms),
           "--max-queue", "1024", "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise TimeoutError("the server did not start within 300 s")


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        return json.loads(r.read())


class Connection:
    """One keep-alive HTTP/1.1 connection: POST a body, read status and a Content-Length body."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readuntil(b"\r\n")
        length, close = 0, False
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        payload = await self.reader.readexactly(length)
        if close:
            await self.close()
        return int(status_line.split()[1]), payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def load(port: int, bodies: list[bytes], clients: int, total: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(total))

    async def client(seed: int) -> None:
        conn = Connection(port)
        rng = random.Random(seed)
        for _ in counter:
            body = bodies[rng.randrange(len(bodies))]
            start = time.perf_counter()
            try:
                status, payload = await conn.post("/v1/predict?top_k=3", body)
                ok = status == 200 and len(json.loads(payload)["top_k"]) > 0
                if not ok:
                    errors.append(f"{status}: {payload[:200]!r}")
            except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as err:
                errors.append(f"{type(err).__name__}: {err}")
                await conn.close()
                continue
            latencies.append(time.perf_counter() - start)
        await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    seconds = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {"clients": clients, "requests": total, "errors": len(errors), "error_examples": errors[:3],
            "seconds": round(seconds, 2), "requests_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1), "p99_ms": round(q[98] * 1000, 1)}


def measure(checkpoint: str, bodies: list[bytes], clients: list[int], counts: list[int], modes: list[str],
            max_wait_ms: float, warmup: int) -> list[dict]:
    rows = []
    for mode in modes:
        port = free_port()
        max_batch = 32 if mode == "batched" else 1
        proc = start_server(checkpoint, port, max_batch, max_wait_ms)
        try:
            asyncio.run(load(port, bodies, 4, warmup))  # first calls allocate; not measured
            for n_clients, count in zip(clients, counts):
                before = health(port)
                load_before = os.getloadavg()
                row = asyncio.run(load(port, bodies, n_clients, count))
                after = health(port)
                batches = after["batches"] - before["batches"]
                row.update(mode=mode, max_batch=max_batch,
                           mean_batch=round((after["requests"] - before["requests"]) / max(1, batches), 2),
                           load_before=[round(v, 2) for v in load_before],
                           load_after=[round(v, 2) for v in os.getloadavg()])
                rows.append(row)
                print(f"  {mode:8s} {n_clients:3d} clients: {row['requests_per_s']:7.1f} req/s"
                      f"  p50 {row['p50_ms']:6.1f} ms"
                      f"  p95 {row['p95_ms']:6.1f}  p99 {row['p99_ms']:6.1f}  mean batch {row['mean_batch']:5.2f}"
                      f"  errors {row['errors']}  load {row['load_before'][0]:.2f}", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    return rows


FILE_TYPES = (".jpg", ".jpeg", ".png", ".wav", ".flac", ".ogg")


def files_of(folder: Path, count: int, seed: int = 0) -> list[bytes]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in FILE_TYPES)
    if not paths:
        raise SystemExit(f"no image or audio files ({', '.join(FILE_TYPES)}) under {folder}")
    random.Random(seed).shuffle(paths)
    return [p.read_bytes() for p in paths[:count]]


def table(name: str, rows: list[dict]) -> str:
    lines = [f"{name}", "",
             "| server | clients | requests | errors | req/s | p50 ms | p95 ms | p99 ms | mean batch | load (1 min) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        server = "batching (max 32)" if r["mode"] == "batched" else "one at a time (--max-batch 1)"
        lines.append(f"| {server} | {r['clients']} | {r['requests']} | {r['errors']} | {r['requests_per_s']} | "
                     f"{r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['mean_batch']} | {r['load_before'][0]} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a run (resnet20 on CIFAR-10 for the targets)")
    p.add_argument("--files", required=True, help="folder of files to send (cifar10/train)")
    p.add_argument("--audio-checkpoint", help="audio run (FSDD)")
    p.add_argument("--audio-files", help="folder of WAVs to send (fsdd/recordings)")
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--requests", default="500,1500,3000", help="requests per client count (image run)")
    p.add_argument("--audio-requests", default="200,500,1000", help="requests per client count (audio run)")
    p.add_argument("--modes", default="batched,single")
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--warmup", type=int, default=64)
    p.add_argument("--out", default="runs/serve-load.json")
    args = p.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    modes = args.modes.split(",")
    results = {"uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
               "cpus": os.cpu_count(), "max_wait_ms": args.max_wait_ms, "runs": {}}
    print(f"machine: {os.cpu_count()} CPUs; {results['uptime']}", flush=True)
    jobs = [("image", args.checkpoint, files_of(Path(args.files), 2000), args.requests)]
    if args.audio_checkpoint:
        jobs.append(("audio", args.audio_checkpoint, files_of(Path(args.audio_files), 500), args.audio_requests))
    for kind, checkpoint, bodies, counts in jobs:
        print(f"{kind}: {checkpoint}, {len(bodies)} distinct files", flush=True)
        counts = [int(c) for c in counts.split(",")]
        results["runs"][kind] = measure(checkpoint, bodies, clients, counts, modes, args.max_wait_ms, args.warmup)
    results["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    total = sum(r["requests"] for rows in results["runs"].values() for r in rows)
    errors = sum(r["errors"] for rows in results["runs"].values() for r in rows)
    results.update(total_requests=total, total_errors=errors)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    for kind, rows in results["runs"].items():
        print()
        print(table(f"{kind} ({jobs[[j[0] for j in jobs].index(kind)][1]})", rows))
    print(f"\n{total} requests, {errors} errors; {results['uptime_after']}; written {out}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
