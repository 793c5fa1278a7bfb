"""Every shell and Python sample of README.md and sdk/README.md runs, in order, against a real
``tether serve`` (see ``doc_session``), so the docs cannot drift from what tether does.

A block that cannot run here is marked ``<!-- docs-test: skip, REASON -->`` in the Markdown, and
the number of such blocks per file is asserted below: a new skip is a decision made in review,
never a silent one. ``yaml``, unlabelled and other blocks are not run.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from doc_session import ROOT, DocSession, summary
from markdown_blocks import Block, MarkerError, blocks

#: The Markdown files whose samples run, and how many of their blocks are marked as skipped.
SKIPPED: dict[str, int] = {"README.md": 5, "sdk/README.md": 8}

#: Files whose samples wait for a human to approve a call (``pending.wait()``): a human is
#: played by a thread that approves each pending approval through the approvers' API.
HUMAN_APPROVES = {"sdk/README.md"}


def _runnable(name: str) -> tuple[list[Block], list[Block]]:
    found = [b for b in blocks(ROOT / name, name) if b.runs]
    return [b for b in found if b.skip is None], [b for b in found if b.skip is not None]


class Human:
    """Approves every pending approval it sees, as a person at the approvals page would."""

    def __init__(self, session: DocSession) -> None:
        from tether.runtime import approver_registry

        self.token = approver_registry(session.workdir / ".tether").add("docs-human")
        self.url = session.url
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(
            base_url=self.url, timeout=5, headers={"Authorization": f"Bearer {self.token}"}
        ) as client:
            while not self.stopped.wait(0.2):
                try:
                    for pending in client.get("/v1/approvals", params={"state": "pending"}).json():
                        client.post(
                            f"/v1/approvals/{pending['approval_id']}/approve",
                            json={"reason": "approved while the docs test ran"},
                        )
                except httpx.TransportError:
                    continue

    def __enter__(self) -> Human:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[DocSession]:
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    assert not missing, f"the README's samples need {', '.join(missing)}: install them"
    run = DocSession(tmp_path / "clone")
    try:
        run.start_server()
        yield run
    finally:
        run.stop()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_every_sample_runs(name: str, session: DocSession) -> None:
    run, skipped = _runnable(name)
    assert run, f"{name} has no sample to run"
    print(f"\n{name}: {len(run)} blocks run, {len(skipped)} skipped: {summary(skipped)}")
    human = Human(session) if name in HUMAN_APPROVES else None
    if human:
        human.__enter__()
    try:
        for block in run:
            started = time.monotonic()
            outcome = session.run(block)
            print(f"{block.where}: {time.monotonic() - started:.1f} s")
            assert outcome.ok, outcome.explain() + "\n--- server log ---\n" + session.server_log()
    finally:
        if human:
            human.__exit__()


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_skipped_blocks_are_counted(name: str) -> None:
    _, skipped = _runnable(name)
    assert len(skipped) == SKIPPED[name], (
        f"{name} marks {len(skipped)} blocks as skipped, this test expects {SKIPPED[name]}: "
        f"{summary(skipped)}"
    )


def test_every_readme_with_samples_is_run() -> None:
    """A Markdown file with shell or Python samples at the top of the repository or the SDK is
    one this test runs."""
    candidates = [*ROOT.glob("*.md"), *(ROOT / "sdk").glob("*.md")]
    with_samples = {
        str(path.relative_to(ROOT)) for path in candidates if any(b.runs for b in blocks(path))
    }
    assert with_samples <= set(SKIPPED)


def test_markers_are_read_strictly(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- docs-test: skip, needs root -->\n\n```sh\nmake test\n```\n\n"
        "```python\nprint(1)\n```\n\n```yaml\na: 1\n```\n  ```bash\n  echo indented\n  ```\n"
    )
    found = blocks(page)
    assert [(b.line, b.lang, b.skip, b.runs) for b in found] == [
        (5, "sh", "needs root", True),
        (9, "python", None, True),
        (13, "yaml", None, False),
        (16, "bash", None, True),
    ]
    assert found[3].text == "echo indented\n"
    for wrong in (
        "<!-- docs-test: skip -->\n```sh\nls\n```\n",  # no reason
        "<!-- docs-test: skipp, x -->\n```sh\nls\n```\n",  # misspelt
        "<!-- docs-test: skip, x -->\nsome prose\n```sh\nls\n```\n",  # not before its block
        "<!-- docs-test: skip, x -->\n",  # no block at all
    ):
        page.write_text(wrong)
        with pytest.raises(MarkerError):
            blocks(page)


def test_a_failing_block_names_its_line(session: DocSession, tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\nexport TETHER_URL=http://127.0.0.1:8470\nWHO=analyst\n```\n\n"
        "```sh\ncurl -sf $TETHER_URL/readyz\necho $WHO\n```\n\n"
        "```python\nimport os, httpx\nprint(httpx.get(os.environ['TETHER_URL'] + '/readyz').json()['status'])\n```\n\n"
        "```sh\necho $UNSET_BY_ANY_BLOCK\n```\n"
    )
    first, second, third, fourth = blocks(page)
    assert session.run(first).ok
    carried = session.run(second)
    assert carried.ok and carried.output.rstrip().endswith("analyst"), carried.output
    exported = session.run(third)  # reaches the server: the documented port was replaced
    assert exported.ok and exported.output.strip() == "ready", exported.output
    unset = session.run(fourth)
    assert not unset.ok and "unbound variable" in unset.output
    assert fourth.line == 16
    assert unset.explain().startswith("page.md:16: the sh block exited 1")
