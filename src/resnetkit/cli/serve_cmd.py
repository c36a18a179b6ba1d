"""``resnetkit serve``: the HTTP API (predict, explain, model) and its web page, with dynamic batching."""

from __future__ import annotations

import argparse

from resnetkit.serve.config import ServeConfig

DEFAULTS = ServeConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a run directory or a .pt checkpoint (or an exported model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=DEFAULTS.max_batch, help="largest batch the model runs")
    p.add_argument("--max-wait-ms", type=float, default=DEFAULTS.max_wait_ms,
                   help="how long a batch waits for more requests after its first (only while requests arrive together)")
    p.add_argument("--max-queue", type=int, default=DEFAULTS.max_queue,
                   help="requests that may wait for the model; beyond, 503 with Retry-After")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULTS.max_upload_bytes / 2**20,
                   help="largest upload accepted (413 above)")
    p.add_argument("--timeout-s", type=float, default=DEFAULTS.timeout_s, help="504 for a request not answered by then")
    p.add_argument("--header-timeout-s", type=float, default=DEFAULTS.header_timeout_s,
                   help="408 and close for a request whose headers take longer (slow-header floods)")
    p.add_argument("--max-connections-per-client", type=int, default=DEFAULTS.max_connections_per_client,
                   help="connections one client address may hold; beyond, 429 (0: no cap, e.g. behind a proxy)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch threads of the model worker (default: torch's, one per core)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--no-access-log", action="store_true", help="no line per request (load tests)")


def run(args: argparse.Namespace) -> int:
    try:
        from resnetkit.serve import create_app, load_for_serving, serve
    except ImportError as err:
        raise ValueError(f"resnetkit serve needs the serve extra ({err.name} is missing): "
                         "pip install 'resnetkit[serve]'") from None
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0..65535, got {args.port}")
    if not args.max_upload_mb > 0:
        raise ValueError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    config = ServeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                         max_upload_bytes=int(args.max_upload_mb * 2**20), timeout_s=args.timeout_s,
                         header_timeout_s=args.header_timeout_s,
                         max_connections_per_client=args.max_connections_per_client).validate()
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    loaded = load_for_serving(args.checkpoint, device=args.device)
    app = create_app(loaded, config)
    print(f"serving {loaded.model_name} ({len(loaded.classes)} {loaded.kind} classes) "
          f"on http://{args.host}:{args.port}/ "
          f"(API docs at /docs; max batch {config.max_batch}, max wait {config.max_wait_ms:g} ms)", flush=True)
    try:
        serve(app, args.host, args.port, access_log=not args.no_access_log, log_level=args.log_level)
    except KeyboardInterrupt:  # uvicorn shuts down gracefully, then re-raises the signal: Ctrl-C is how a server stops
        pass
    print("server stopped", flush=True)
    return 0
