"""How fast the ``tether`` command starts, beside the interpreter's own start as the floor.

Runs each command N times in a fresh process, interleaved so machine noise hits all alike, and
prints the median wall time of each and its ratio to ``python -c pass``:

  python -c pass            the floor: an interpreter that starts and exits
  tether --help             the root's help: no subcommand module is imported
  tether dev svid --help    one group's help: imports only ``tether.cli.dev``
  tether dev svid ...       a real run: loads (first run: creates) a key, signs an SVID

The goal is ``tether --help`` and ``tether dev svid`` within 0.5 s on a quiet machine; quote the
ratios, not the absolute times, when the machine is shared.

    .venv/bin/python bench/cli_start.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _commands(data_dir: Path) -> dict[str, list[str]]:
    tether = [sys.executable, "-m", "tether"]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "tether --help": [*tether, "--help"],
        "tether dev svid --help": [*tether, "dev", "svid", "--help"],
        "tether dev svid": [*tether, "dev", "svid", "--agent", "bench", "-d", str(data_dir)],
    }


def _time_once(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="Runs of each command.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-cli-start-") as tmp:
        env = {**os.environ, "COLUMNS": "100"}
        env.pop("TETHER_ENV", None)  # the dev issuer is refused in production
        commands = _commands(Path(tmp) / "data")
        for argv in commands.values():  # warm the file cache; create the dev key once
            _time_once(argv, env)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                samples[name].append(_time_once(argv, env))
    floor = statistics.median(samples["python -c pass"])
    print(f"{'command':<26}{'median':>10}{'x floor':>10}   ({args.runs} runs each)")
    for name, times in samples.items():
        median = statistics.median(times)
        print(f"{name:<26}{median * 1000:>8.0f}ms{median / floor:>10.1f}")


if __name__ == "__main__":
    main()
