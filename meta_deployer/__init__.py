"""meta_deployer: Dagster deploying Dagster.

Each team's git repository becomes its own Dagster code location with its own
isolated storage prefix. The flow (see README.md):

    repos/<name>/config.yml -> RepoSpec -> checkout -> artifact -> publish -> serve
        -> workspace.yaml -> reload

Pure modules (``spec``, ``naming``, ``detect``, ``workspace``) import no boto3,
docker or git. Side-effect modules each wrap one system (``gitops``,
``webserver``, ``platforms.*``). Dagster modules (``definitions``) only adapt.
"""

__version__ = "0.1.0"
