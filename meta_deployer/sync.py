"""``sync-repos``: which repos moved since they were deployed (their branch head, config or platform)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from meta_deployer import configsource, gitops, grants
from meta_deployer.model import Log
from meta_deployer.spec import RepoSpec

if TYPE_CHECKING:
    from meta_deployer.pipeline import Deployer


def moved(deployer: Deployer, log: Log) -> tuple[list[RepoSpec], list[str]]:
    """Specs whose branch head, spec or platform differ from what is deployed; and the problems."""
    settings, platform = deployer.settings, deployer.platform
    auth = settings.git_auth()
    found, problems = [], []
    source, configs = configsource.scan(settings)  # ConfigSourceError: nothing is decided on no configs
    if source.from_git:
        log(f"configs from {source.label}")
    records = deployer.registry.all()
    owners = {n: c.spec for n, c in configs.items() if c.spec is not None}
    for name, scanned in sorted(configs.items()):
        if scanned.error:
            problems.append(scanned.error)
            log(f"skipped: {scanned.error}")
            continue
        spec = scanned.spec
        assert spec is not None
        parts = [records.get(part.name) for part in spec.location_specs()]
        # A repository with several locations moved when any of them did (or is missing).
        record = None if None in parts else next((r for r in parts if r.commit != parts[0].commit or r.spec_hash != spec.content_hash()), parts[0])
        try:
            head = gitops.remote_head(gitops.resolve_url(spec.git_url, settings.root, settings.private_dirs), spec.branch, auth)
        except Exception as exc:  # one unreachable remote must not stop the others
            problems.append(f"{name}: {exc}")
            log(f"skipped {name}: {exc}")
            continue
        reason = None
        if record is None:
            reason = "not deployed"
        elif record.commit != head:
            reason = f"{record.commit[:12]} -> {head[:12]}"
        elif record.spec_hash != spec.content_hash() or record.platform != platform.name:
            reason = "config.yml or platform changed"
        elif len(parts) == 1 and set(grants.served_reads(record, spec)) != set(grants.consented(spec, owners)):
            reason = "read grants changed (an owner's access.share_with)"
        elif not all(platform.is_serving(r.name, asdict(r)) for r in parts if r is not None):
            reason = "no longer serving"
        if reason:
            log(f"{name}: {reason}")
            found.append(spec)
        else:
            log(f"{name}: up to date at {head[:12]}")
    for name in sorted(set(records) - set(configs) - {r.parent for r in records.values() if r.parent in configs}):
        if records[name].parent in configs:
            continue
        log(f"{name}: deployed but has no config.yml; run remove-repo REPO_NAME={name} to remove it")
    return found, problems
