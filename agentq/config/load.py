"""Load and validate ``config.yaml``: every problem at once, each with its YAML line."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentq.config import issues
from agentq.config.models import Config, ProjectConfig
from agentq.core.errors import ConfigError

logger = logging.getLogger(__name__)


def load_config(path: Path, env: Mapping[str, str]) -> Config:
    """Read and validate a config file.

    Raises:
        ConfigError: with every problem found, each one line with its YAML line number.
    """
    data, root = issues.read_yaml(path)
    config = issues.validate(
        Config, data, env=env, base_dir=path.absolute().parent, root=root, path=path
    )
    logger.debug("config loaded", extra={"config_path": str(path)})
    return config


def config_from_dict(data: Mapping[str, Any], env: Mapping[str, str], base_dir: Path) -> Config:
    """Validate an already parsed config (demo, tests) exactly like a file.

    Raises:
        ConfigError: with every problem found.
    """
    return issues.validate(Config, data, env=env, base_dir=base_dir, root=None, path=None)


def validate_config_file(path: Path, env: Mapping[str, str]) -> list[str]:
    """Return every problem in a config file; an empty list means it is fine."""
    try:
        load_config(path, env)
    except ConfigError as exc:
        return exc.problems
    return []


def load_project_config(path: Path, env: Mapping[str, str]) -> ProjectConfig:
    """Read a project's ``.agent-queue/config.yaml`` (task defaults only).

    Raises:
        ConfigError: with every problem found, each one line with its YAML line number;
            a symbolic link or anything but a regular file is refused without being read.
    """
    if path.is_symlink() or not path.is_file():
        raise ConfigError(["not a regular file (symbolic links are not followed)"], path)
    data, root = issues.read_yaml(path)
    return issues.validate(
        ProjectConfig, data, env=env, base_dir=path.absolute().parent, root=root, path=path
    )
