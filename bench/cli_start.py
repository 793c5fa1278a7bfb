"""How fast the ``tether`` command starts, beside the interpreter's own start as the floor.

Runs each command N times in a fresh process, interleaved so machine noise hits all alike, and
prints the median wall time of each, its ratio to ``python -c pass``, and the fastest run (the
least disturbed by other work on a shared machine):

  python -c pass            the floor: an interpreter that starts and exits
  tether --help             the root's help: no subcommand module is imported
  tether dev svid --help    one group's help: imports only ``tether.cli.dev``
  tether dev svid ...       a real run: loads (first run: creates) a key, signs an SVID

The goal is ``tether --help`` and ``tether dev svid`` within 0.5 s on a quiet machine; quote the
ratios, not the absolute times, when the machine is shared.

``--baseline SRC`` also runs every command from another source tree (``PYTHONPATH=SRC``, same
interpreter and packages), interleaved with this one's, and prints its median and the ratio
this/baseline beside them: an import change measured under the same load.

    .venv/bin/python bench/cli_start.py [--runs 15]
    git archive main src | tar -x -C /tmp/base && .venv/bin/python bench/cli_start.py \
        --baseline /tmp/base/src
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


def _sample(
    commands: dict[str, list[str]], envs: dict[str, dict[str, str]], runs: int
) -> dict[tuple[str, str], list[float]]:
    """``runs`` wall times of each command under each environment, interleaved."""
    for argv in commands.values():  # warm the file cache; create the dev key once
        for env in envs.values():
            _time_once(argv, env)
    samples: dict[tuple[str, str], list[float]] = {
        (tree, name): [] for tree in envs for name in commands
    }
    for _ in range(runs):
        for name, argv in commands.items():
            for tree, env in envs.items():
                samples[tree, name].append(_time_once(argv, env))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="Runs of each command.")
    parser.add_argument("--baseline", type=Path, help="A source tree (its src/) to compare with.")
    args = parser.parse_args()
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("TETHER_ENV", None)  # the dev issuer is refused in production
    envs = {"this": env}
    if args.baseline is not None:
        envs["baseline"] = {**env, "PYTHONPATH": str(args.baseline.resolve())}
    with tempfile.TemporaryDirectory(prefix="tether-cli-start-") as tmp:
        commands = _commands(Path(tmp) / "data")
        samples = _sample(commands, envs, args.runs)
    floor = statistics.median(samples["this", "python -c pass"])
    header = f"{'command':<26}{'median':>10}{'x floor':>10}{'fastest':>10}"
    if args.baseline is not None:
        header += f"{'baseline':>10}{'this/base':>11}"
    print(f"{header}   ({args.runs} runs each)")
    for name in commands:
        times = samples["this", name]
        median = statistics.median(times)
        line = (
            f"{name:<26}{median * 1000:>8.0f}ms{median / floor:>10.1f}{min(times) * 1000:>8.0f}ms"
        )
        if args.baseline is not None:
            base = statistics.median(samples["baseline", name])
            line += f"{base * 1000:>8.0f}ms{median / base:>11.2f}"
        print(line)


if __name__ == "__main__":
    main()
