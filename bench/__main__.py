"""`python -m bench` (`make bench`): every benchmark, one after the other."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ("token_api", "callbacks", "events_http", "ws_roundtrip", "refresh_sweep", "week_sim")


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== bench.{name} ===", flush=True)
        # One process each: several of them configure Django with their own settings.
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
