"""meta_deployer: Dagster deploying Dagster.

Each team's git repository becomes its own Dagster code location with its own
isolated storage prefix. The flow (see README.md):

    repos/<name>/config.yml -> RepoSpec -> checkout -> artifact -> publish -> serve
        -> workspace.yaml -> reload

Pure modules (``spec``, ``naming``, ``model``, ``settings``, ``detect``,
``workspace``, ``platforms.aws.engine``) import no boto3, docker or git.
Side-effect modules each wrap one system (``gitops``, ``webserver``, ``state``,
``platforms.*``). Dagster modules (``definitions``) only adapt. What runs inside
a deployed location is the separate package ``meta_deployer_runtime``, which
imports nothing from here. README.md "Code map" draws the whole house.
"""

__version__ = "0.1.0"
