"""The README's demo table is ``tether demo --markdown``'s output, between two markers.

Run ``.venv/bin/python tests/docs/demo_table.py`` to write the demo's current table into the
README; ``test_demo_table.py`` checks that it is current.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Final

README: Final = Path(__file__).resolve().parents[2] / "README.md"
START: Final = "<!-- tether demo --markdown: start -->\n"
END: Final = "<!-- tether demo --markdown: end -->\n"


def readme_table(text: str) -> str:
    """The table between the markers."""
    _head, start, rest = text.partition(START)
    table, end, _ = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README.md lacks the markers {START.strip()} … {END.strip()}")
    return table


def demo_markdown(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", "demo", "--markdown", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        done = demo_markdown(Path(tmp) / "demo")
    if done.returncode != 0:
        sys.exit(f"tether demo failed ({done.returncode}):\n{done.stderr}")
    text = README.read_text(encoding="utf-8")
    old = readme_table(text)
    README.write_text(text.replace(START + old + END, START + done.stdout + END), encoding="utf-8")
    print("README.md: the demo table is current" if old == done.stdout else "README.md updated")


if __name__ == "__main__":
    main()
