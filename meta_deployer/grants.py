"""Cross-repo read grants take both sides: the reader asks, the owner agrees.

A repo's ``access.read`` lists the repos whose assets it wants to read; the grant takes effect only
for an owner whose own config.yml lists the reader in ``access.share_with``. Otherwise any team
could read any other team's data by writing its own config.yml. Checked at every deploy against the
owners' configs as they are now (the local folder or the configuration repository); a request the
owner does not agree to is dropped with a warning naming both sides and what would grant it, and
the deploy goes on without it.

The grants a reader serves with are kept in its deployment record (``metadata["reads"]``). When an
owner's config.yml changes, the repos sensor redeploys every reader whose grant from that owner
changes with it (:func:`regranted`): an owner that stops sharing takes the grant away within a
tick, not at the reader's next deploy; ``sync-repos`` finds the same readers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Callable

from meta_deployer import configsource
from meta_deployer.errors import MetaDeployerError
from meta_deployer.model import Log
from meta_deployer.settings import Settings
from meta_deployer.spec import RepoSpec

if TYPE_CHECKING:
    from meta_deployer.state import Deployment

#: The record metadata key holding the grants a deployed repo serves with.
READS_KEY = "reads"


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


def consented(reader: RepoSpec, owners: Mapping[str, RepoSpec | None]) -> tuple[str, ...]:
    """``reader.access.read`` cut to the owners in ``owners`` whose spec lists the reader in
    ``access.share_with`` (pure: the owners' specs are given)."""
    return tuple(o for o in reader.access.read if (spec := owners.get(o)) is not None and reader.name in spec.access.share_with)


def served_reads(record: "Deployment", spec: RepoSpec) -> tuple[str, ...]:
    """The grants ``record`` serves with (a record written before they were kept: what ``spec`` asks)."""
    reads = record.metadata.get(READS_KEY)
    return tuple(reads) if isinstance(reads, list) else spec.access.read


def regranted(
    changed: Collection[str], specs: Mapping[str, RepoSpec], record: Callable[[str], "Deployment | None"]
) -> dict[str, str]:
    """Deployed readers whose grants from the ``changed`` owners (config.yml changed or removed) are
    not what they serve with: ``{reader: reason}``. ``specs``: every valid config as it is now (an owner
    missing from it shares nothing); ``record``: a reader's deployment record (read only for readers
    that ask one of the changed owners)."""
    changed = set(changed)
    out: dict[str, str] = {}
    for name, reader in sorted(specs.items()):
        asked = set(reader.access.read) & changed
        if name in changed or not asked:
            continue
        deployed = record(name)
        if deployed is None:
            continue
        served = set(served_reads(deployed, reader)) & changed
        now = set(consented(reader, {o: specs.get(o) for o in asked}))
        if now != served:
            parts = [f"{o} stopped sharing with it" for o in sorted(served - now)]
            parts += [f"{o} now shares with it" for o in sorted(now - served)]
            out[name] = "read grants changed: " + ", ".join(parts)
    return out
