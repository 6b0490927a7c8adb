"""Serve a location described by environment variables:
``dagster api grpc --module-name meta_deployer_runtime.entrypoint``.

See ``meta_deployer_runtime.location`` (``META_DEPLOYER_CODE_SOURCE`` or
``META_DEPLOYER_LOCATION_CONFIG``).
"""

from meta_deployer_runtime.location import load_from_env

globals().update(load_from_env())
