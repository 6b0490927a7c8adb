"""Platforms: where code locations run. ``get_platform`` picks one by name."""

from __future__ import annotations

from meta_deployer.platforms.base import Platform
from meta_deployer.settings import Settings


def get_platform(settings: Settings, name: str | None = None) -> Platform:
    """The platform named by ``name`` or ``META_DEPLOYER_PLATFORM`` (dev, docker, ecs)."""
    name = name or settings.platform
    if name == "dev":
        from meta_deployer.platforms.dev import DevPlatform

        return DevPlatform(settings)
    if name == "docker":
        from meta_deployer.platforms.docker import DockerPlatform

        return DockerPlatform(settings)
    if name == "ecs":
        from meta_deployer.platforms.ecs import EcsPlatform

        return EcsPlatform(settings)
    raise ValueError(f"unknown platform {name!r}; use dev, docker or ecs")
