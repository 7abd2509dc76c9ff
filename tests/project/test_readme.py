"""The README is the operator's reference: every setting the code reads must be listed there, and only those."""

import re
from pathlib import Path

from devstack.run import StackSettings
from shared.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def documented() -> set[str]:
    return set(re.findall(r"^\| `(VIGIL_[A-Z0-9_]+)` \|", README.read_text(), flags=re.MULTILINE))


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    in_code = {f"VIGIL_{name.upper()}" for model in (Settings, StackSettings) for name in model.model_fields}
    assert in_code - documented() == set(), "settings missing from the README"
    assert documented() - in_code == set(), "README lists settings the code does not read"


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.read_text().split("```")[1]
    assert "make run" in first_block and "make test" in first_block
