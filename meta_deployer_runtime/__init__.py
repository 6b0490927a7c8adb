"""meta_deployer_runtime: what runs inside every deployed code location.

This package is all that the deployer ships into a location's virtualenv or
image (as the package folder, on ``PYTHONPATH``); it imports only Dagster and
the standard library (dagster-aws and boto3 only when a bucket is used), and
nothing from ``meta_deployer``, so it works in any supported Dagster version
and never drags the deployer's dependencies into a team's environment.

- ``contract``: the code-server contract (port, environment names, commands)
  that the deployer's platforms and the entry point share;
- ``location`` / ``entrypoint``: the location entry point;
- ``io``: the prefix-enforcing IO manager (``RepoIOManager``);
- ``compute_logs``: the per-repo compute log manager (``RepoComputeLogManager``).
"""

__version__ = "0.1.0"
