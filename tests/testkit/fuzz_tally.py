"""Counting the outcomes of a fuzz run (`testkit.fuzz_header`, `testkit.fuzz_weights`): outcomes
overall and by mutation kind, clean errors by message, the slowest case, the peak-RSS maximum and
the failures with their bytes."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict

from .fuzz import OUTCOMES, Result, _bucket


class Tally:
    def __init__(self, keep_failures: int = 100) -> None:
        self.outcomes: Counter = Counter()
        self.by_kind: dict = defaultdict(Counter)
        self.errors: Counter = Counter()
        self.failures: list[dict] = []
        self.keep = keep_failures
        self.slowest: dict = {"seconds": -1.0}
        self.max_growth = 0.0
        self.total = 0.0
        self.cli = {"cases": 0, "problems": []}
        self.t0 = time.perf_counter()

    def add(self, index: int, kind: str, op: str, label: str, res: Result, data: bytes) -> None:
        self.outcomes[res.outcome] += 1
        self.by_kind[kind][res.outcome] += 1
        if res.outcome == "clean_error":
            self.errors[_bucket(re.sub(r"\{[^{}]*\}", "{...}", res.reason))] += 1  # configs in messages: blanked
        self.total += res.seconds
        self.max_growth = max(self.max_growth, res.rss_growth_mib)
        if res.seconds > self.slowest["seconds"]:
            self.slowest = {"index": index, "kind": kind, "op": op, "seed": label,
                            "seconds": round(res.seconds, 4), "outcome": res.outcome}
        if res.cli is not None:
            self.cli["cases"] += 1
            if res.cli != "ok":
                self.cli["problems"].append({"index": index, "kind": kind, "problem": res.cli})
        if res.outcome == "failure" and len(self.failures) < self.keep:
            self.failures.append({"index": index, "kind": kind, "op": op, "seed": label, "reason": res.reason,
                                  "seconds": round(res.seconds, 4), "traceback": res.detail,
                                  "hex": data.hex() if len(data) <= 65536 else f"{len(data)} bytes, not kept"})

    def summary(self, cases: int, seed: int, time_limit: float, rss_limit_mib: float) -> dict:
        return {
            "cases": cases,
            "seed": seed,
            "time_limit_s": time_limit,
            "rss_limit_mib": rss_limit_mib,
            "outcomes": {o: self.outcomes.get(o, 0) for o in OUTCOMES},
            "by_kind": {k: {o: v.get(o, 0) for o in OUTCOMES} for k, v in sorted(self.by_kind.items())},
            "clean_errors": dict(self.errors.most_common()),
            "slowest": self.slowest,
            "decode_seconds_total": round(self.total, 3),
            "decode_ms_mean": round(1000 * self.total / max(cases, 1), 3),
            "wall_seconds": round(time.perf_counter() - self.t0, 1),
            "max_rss_growth_mib": round(self.max_growth, 1),
            "cli": self.cli,
            "failures": self.failures,
        }
