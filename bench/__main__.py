"""`python -m bench` (`make bench`): every benchmark, one after the other, then one table of
every figure beside its same-run reference and its goal."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile

from bench import harness

BENCHMARKS = (
    "memory",
    "token_api",
    "callbacks",
    "events_http",
    "ws_roundtrip",
    "refresh_sweep",
    "week_sim",
)


def main() -> int:
    failed = []
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as rows_file:
        env = {**os.environ, harness.ROWS_ENV: rows_file.name}
        for name in BENCHMARKS:
            print(f"\n=== bench.{name} ===", flush=True)
            # One process each: several of them configure Django with their own settings.
            run = subprocess.run([sys.executable, "-m", f"bench.{name}"], env=env, check=False)
            if run.returncode:
                failed.append(name)
        rows = [harness.Row(**json.loads(line)) for line in rows_file.read().splitlines()]
    cpus = os.cpu_count()
    print(
        f"\n=== all benchmarks ({platform.machine()}, {cpus} CPUs, {platform.python_version()}) ==="
    )
    print(harness.table(rows))
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
