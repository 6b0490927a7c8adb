"""Serve a location described by environment variables: ``dagster api grpc -m meta_deployer.entrypoint``.

See ``meta_deployer.location`` (``META_DEPLOYER_CODE_SOURCE`` or
``META_DEPLOYER_LOCATION_CONFIG``).
"""

from meta_deployer.location import load_from_env

globals().update(load_from_env())
