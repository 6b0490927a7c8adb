"""The Repository Manager Service: a REST API in front of the deploy jobs (see ``meta_deployer.api.app``).

It reaches Dagster only over the webserver's GraphQL API and imports no deploy step
(``meta_deployer.pipeline``, the platforms' build and serve).
"""
