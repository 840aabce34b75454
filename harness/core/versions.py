"""Installed package versions, looked up one way everywhere."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

#: What :func:`package_version` returns for a distribution that is not installed.
NOT_INSTALLED = "not installed"


def package_version(distribution: str) -> str:
    """The installed version of ``distribution`` (its metadata), else :data:`NOT_INSTALLED`."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return NOT_INSTALLED
