"""Cross-repo read grants take both sides: the reader asks, the owner agrees.

A repo's ``access.read`` lists the repos whose assets it wants to read; the grant takes effect only
for an owner whose own config.yml lists the reader in ``access.share_with``. Otherwise any team
could read any other team's data by writing its own config.yml. Checked at every deploy against the
owners' configs as they are now (the local folder or the configuration repository); a request the
owner does not agree to is dropped with a warning naming both sides and what would grant it, and
the deploy goes on without it. An owner that stops sharing takes the grant away at the reader's
next deploy (``make update-repo REPO_NAME=<reader>``).
"""

from __future__ import annotations

from meta_deployer import configsource
from meta_deployer.errors import MetaDeployerError
from meta_deployer.model import Log
from meta_deployer.settings import Settings
from meta_deployer.spec import RepoSpec


def granted(spec: RepoSpec, settings: Settings, log: Log) -> RepoSpec:
    """``spec`` with ``access.read`` cut to the owners that share with it."""
    if not spec.access.read:
        return spec
    kept = []
    for owner in spec.access.read:
        try:
            where, owner_spec = configsource.configured_spec(settings, owner)
        except MetaDeployerError as exc:
            log(f"warning: {spec.name}: no read access to {owner}: its config.yml cannot be read ({exc})")
            continue
        if owner_spec is None:
            log(f"warning: {spec.name}: no read access to {owner}: {where} does not exist")
        elif spec.name not in owner_spec.access.share_with:
            log(
                f"warning: {spec.name}: no read access to {owner}: {where} does not list {spec.name} in "
                f"access.share_with; {owner}'s owners grant it by adding it there"
            )
        else:
            kept.append(owner)
    if tuple(kept) == spec.access.read:
        return spec
    return spec.model_copy(update={"access": spec.access.model_copy(update={"read": tuple(kept)})})
