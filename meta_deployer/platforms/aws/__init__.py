"""AWS side of the ``ecs`` platform.

- :mod:`meta_deployer.platforms.aws.settings`: ``EcsSettings``, read from the environment.
- :mod:`meta_deployer.platforms.aws.engine`: pure; the generic planner (``Kind``, ``Call``, ``Output``, ``Plan``).
- :mod:`meta_deployer.platforms.aws.resources`: pure; one module per resource kind, and ``REPO_KINDS``.
- :mod:`meta_deployer.platforms.aws.common`: pure; what the kinds share (constants, tags, the repo's inputs).
- :mod:`meta_deployer.platforms.aws.plan`: pure; a repo's desired resources, ``plan`` and ``plan_removal``.
- :mod:`meta_deployer.platforms.aws.gateway`: the only module that touches boto3.
- :mod:`meta_deployer.platforms.aws.apply`: observes live state and executes plans through the gateway.
"""
