"""Prometheus metrics in the text exposition format, hand-written (no client library needed).

What is counted: requests per endpoint, method and status; request latency
per endpoint (a histogram); the micro-batcher's batch sizes (a histogram);
stored interactions; hot swaps. Each server process keeps its own figures
(with ``--workers N`` a scrape reaches one worker; the ``pid`` label tells
which).
"""

from __future__ import annotations

import bisect
import os
import threading

__all__ = ["Metrics"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.n = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, v)] += 1
        self.sum += v
        self.n += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, acc = [], 0
        sep = "," if labels else ""
        for b, c in zip(self.buckets, self.counts):
            acc += c
            out.append(f'{name}_bucket{{{labels}{sep}le="{b}"}} {acc}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.n}')
        out.append(f"{name}_sum{{{labels}}} {self.sum:.6f}")
        out.append(f"{name}_count{{{labels}}} {self.n}")
        return out


def _esc(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters and histograms of one server process (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, _Histogram] = {}
        self.batches = _Histogram(BATCH_BUCKETS)
        self.interactions = 0
        self.swaps = 0
        self.model: dict[str, str] = {}

    def request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (endpoint, method, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            h = self.latency.get(endpoint)
            if h is None:
                h = self.latency[endpoint] = _Histogram(LATENCY_BUCKETS)
            h.observe(seconds)

    def batch(self, size: int) -> None:
        with self._lock:
            self.batches.observe(size)

    def render(self) -> str:
        pid = os.getpid()
        with self._lock:
            lines = ["# HELP recozoo_requests_total HTTP requests by endpoint, method and status.",
                     "# TYPE recozoo_requests_total counter"]
            for (ep, m, st), n in sorted(self.requests.items()):
                lines.append(f'recozoo_requests_total{{endpoint="{_esc(ep)}",method="{m}",status="{st}",'
                             f'pid="{pid}"}} {n}')
            lines += ["# HELP recozoo_request_seconds Request latency in seconds (handler, batching included).",
                      "# TYPE recozoo_request_seconds histogram"]
            for ep, h in sorted(self.latency.items()):
                lines += h.lines("recozoo_request_seconds", f'endpoint="{_esc(ep)}",pid="{pid}"')
            lines += ["# HELP recozoo_batch_size Queries scored together by the micro-batcher.",
                      "# TYPE recozoo_batch_size histogram"]
            lines += self.batches.lines("recozoo_batch_size", f'pid="{pid}"')
            lines += ["# HELP recozoo_interactions_total Live interactions stored by this process.",
                      "# TYPE recozoo_interactions_total counter",
                      f'recozoo_interactions_total{{pid="{pid}"}} {self.interactions}',
                      "# HELP recozoo_swaps_total Hot swaps of the served run.",
                      "# TYPE recozoo_swaps_total counter",
                      f'recozoo_swaps_total{{pid="{pid}"}} {self.swaps}',
                      "# HELP recozoo_model_info The run being served.",
                      "# TYPE recozoo_model_info gauge"]
            labels = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(self.model.items()))
            lines.append(f'recozoo_model_info{{{labels},pid="{pid}"}} 1')
        return "\n".join(lines) + "\n"
