"""Dry runs of a deploy: the pinned commit, then the platform's own plan, changing nothing.

No clone into the work area (a code source is detected in a temporary clone),
no build, no workspace write.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from meta_deployer import gitops, grants, snapshot
from meta_deployer.model import Checkout
from meta_deployer.spec import RepoSpec

if TYPE_CHECKING:
    from meta_deployer.pipeline import Deployer


def dry_run(deployer: Deployer, spec: RepoSpec) -> str:
    """What a deploy of ``spec`` would do, as text."""
    from meta_deployer.pipeline import with_detected_code_source

    settings = deployer.settings
    auth = settings.git_auth()
    url = gitops.resolve_url(spec.git_url, settings.root, settings.private_dirs)
    commit = gitops.remote_head(url, spec.branch, auth)
    shown_url = gitops.redact(spec.git_url, auth.secrets)
    lines = [f"{spec.name}: {shown_url} {spec.branch} is at {commit[:12]}"]
    with tempfile.TemporaryDirectory(prefix="meta-deployer-dry-run-") as tmp:
        path = settings.checkout_path(spec.name)
        if spec.code_source is None and not spec.locations:
            path = Path(tmp) / spec.name
            gitops.converge(url, spec.branch, path, auth)
            snapshot.check_links(path)
            spec, found = with_detected_code_source(spec, path)
            lines.append(f"would write the detected code source into config.yml: {found}")
        # The grants the deploy would serve with: a read the owner does not share is shown dropped.
        spec = grants.granted(spec, settings, lines.append)
        todo = 0
        for part in spec.location_specs():  # a repository with several locations: each of them
            record = deployer.registry.get(part.name)
            if (
                record is not None
                and record.fingerprint == deployer.fingerprint(part, commit)
                and deployer.platform.is_serving(part.name, asdict(record))
            ):
                lines.append(f"{part.name}: nothing to do: this commit with this config already serves")
                continue
            todo += 1
            if part.code_source is None:
                lines.append(f"{part.name}: would detect its code source in {part.working_directory or 'the repository root'}")
                continue
            lines.append(deployer.platform.dry_run(part, Checkout(part.name, path, commit, part.branch, shown_url, True)))
        if not todo:
            return "\n".join(lines)
    lines.append("would write workspace.yaml and reload the webserver")
    return "\n".join(lines)
