"""`make bench`: run every benchmark module in its own process, one after the other (two cores: running them
side by side would measure each other). Each prints one JSON object per line on stdout; progress goes to stderr.

`python -m bench ingest correlator` runs only those. The soak (10 minutes) runs only when named, or with `--soak`
(`make bench SOAK=1`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
HELPERS = {"stack", "measure"}  # modules of bench/ that are not benchmarks
OPTIONAL = {"soak"}  # benchmarks run only when asked for


def modules(selected: list[str]) -> list[str]:
    found = sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_") and p.stem not in HELPERS)
    soak = "--soak" in selected
    selected = [name for name in selected if name != "--soak"]
    unknown = set(selected) - set(found)
    if unknown:
        raise SystemExit(f"bench: no such benchmark: {', '.join(sorted(unknown))} (have: {', '.join(found)})")
    chosen = selected or [name for name in found if name not in OPTIONAL]
    return [*chosen, "soak"] if soak and "soak" not in chosen else chosen


def main() -> int:
    failed = []
    for name in modules(sys.argv[1:]):
        print(f"bench: {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False)
        if result.returncode != 0:
            failed.append(name)
            print(json.dumps({"bench": name, "error": f"exit status {result.returncode}"}), flush=True)
        print(f"bench: {name} took {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
