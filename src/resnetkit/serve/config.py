"""The settings of a server (no web framework imported here: the command line reads the defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    """Batching and limits; each default carries its reason."""

    max_batch: int = 32  # ResNet-20 on CIFAR-sized input gains little beyond 32 on a CPU
    max_wait_ms: float = 5.0  # the most a request waits for company (a lone client's requests do not wait)
    max_queue: int = 256  # requests waiting for the model; beyond, 503 instead of unbounded latency
    max_upload_bytes: int = 10 * 2**20  # 10 MB: any photo or clip a classifier needs
    timeout_s: float = 30.0  # a request not answered by then gets 504
    top_k: int = 5
    header_timeout_s: float = 10.0  # a request's headers take milliseconds; a stalled one holds a connection
    max_connections_per_client: int = 64  # a browser opens about 6; 0 = no cap (behind a proxy, all share one address)

    def validate(self) -> "ServeConfig":
        for name in ("max_batch", "max_queue", "max_upload_bytes", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if not self.header_timeout_s > 0:
            raise ValueError(f"header_timeout_s must be > 0, got {self.header_timeout_s}")
        cap = self.max_connections_per_client
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise ValueError(f"max_connections_per_client must be a whole number >= 0 (0: no cap), got {cap!r}")
        return self
