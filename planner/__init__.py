"""The fleet planner behind ``sdq plan``: a discrete-event simulation of one deployment from its config.yaml.

Stages, one way: ``traffic`` (submit times, API throttle) -> ``sim`` (SQS, agent, KEDA/HPA, Karpenter, spot)
-> ``costs`` (price table x what the simulation used) -> ``report`` (table, JSON, plot). ``settings`` reads the
deployment's config the way ``cdk deploy`` does; ``prices`` holds the price and per-image time tables.
"""
