"""A throw-away meta_deployer project for tests: its own repos/, workspace and work area."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ASSETS = '''
import dagster as dg

{assets}

defs = dg.Definitions(assets=[{names}])
'''


def definitions_py(*assets: str) -> str:
    """A small Dagster project with one trivial asset per name."""
    body = "\n".join(f"@dg.asset\ndef {a}() -> int:\n    return {i}\n" for i, a in enumerate(assets))
    return ASSETS.format(assets=body, names=", ".join(assets))


BROKEN = "import dagster as dg\nimport no_such_module_anywhere\n\ndefs = dg.Definitions()\n"


@dataclass
class Project:
    root: Path

    @property
    def repos(self) -> Path:
        return self.root / "repos"

    @property
    def workspace(self) -> Path:
        return self.root / "workspace" / "workspace.yaml"

    @property
    def work(self) -> Path:
        return self.root / ".meta_deployer"

    def env(self) -> dict[str, str]:
        return {
            "META_DEPLOYER_ROOT": str(self.root),
            "META_DEPLOYER_REPOS_DIR": str(self.repos),
            "META_DEPLOYER_WORKSPACE": str(self.workspace),
            "META_DEPLOYER_WORK_DIR": str(self.work),
            "META_DEPLOYER_PLATFORM": "dev",
            "DAGSTER_HOME": str(self.root / "dagster_home"),
        }

    def workspace_bytes(self) -> bytes:
        return self.workspace.read_bytes() if self.workspace.exists() else b""
