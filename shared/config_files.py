"""Operators' YAML files (correlation rules, response targets): one way to say one cannot be read or parsed."""

from __future__ import annotations

from pathlib import Path

import yaml


class ConfigFileError(ValueError):
    """The file cannot be read, or is not YAML; the message names the file."""


def read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {exc}") from None
