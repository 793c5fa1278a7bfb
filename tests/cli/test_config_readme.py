"""README "Configuration" cannot drift from the commands: its sample ``tether.yaml`` is valid and
sets every key, and its table lists every key with the flags and environment variable the
commands really take."""

from __future__ import annotations

import re
from pathlib import Path

from tether.cli.config import CommandName, command
from tether.cli.config_file import key_of, load
from tether.cli.config_schema import KEYS

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    return README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]


def expected_table() -> list[str]:
    """The table as the commands define it, one markdown row a key, in the schema's order."""
    rows: dict[str, tuple[str, str, list[str]]] = {}
    for name in CommandName:
        for param in command(name).params:
            key = key_of(param)
            if key is None:
                continue
            flags = ", ".join(f"`{flag}`" for flag in [*param.opts, *param.secondary_opts])
            rows.setdefault(key.name, (flags, key.env, []))[2].append(name.value)
    lines = ["| key | flag | environment variable | read by |", "|---|---|---|---|"]
    for key in KEYS:
        flags, env, commands = rows[key]
        read_by = "all three" if len(commands) == len(CommandName) else ", ".join(commands)
        lines.append(f"| `{key}` | {flags} | `{env}` | {read_by} |")
    return lines


def test_the_readme_table_lists_every_option_with_its_flag_and_variable() -> None:
    table = [line for line in _section().splitlines() if line.startswith("|")]
    expected = expected_table()
    assert table == expected, "README 'Configuration' table should be:\n" + "\n".join(expected)


def test_the_readme_sample_is_valid_and_sets_every_key_listed_with_its_variable(
    tmp_path: Path,
) -> None:
    (sample,) = re.findall(r"```yaml\n(.*?)```", _section(), flags=re.S)
    path = tmp_path / "tether.yaml"
    path.write_text(sample)
    loaded = load(path)  # raises with file:line problems if the sample does not match
    # Every key but the webhook's secret, which the sample leaves to its environment variable.
    assert set(KEYS) - set(loaded.values) == {"serve.approval_webhook_secret"}
    listed = "\n".join(line for line in _section().splitlines() if line.startswith("|"))
    for key in loaded.values:
        assert f"| `{key}` |" in listed and f"`{KEYS[key].env}`" in listed, key
