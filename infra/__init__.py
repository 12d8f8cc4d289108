"""CDK constructs and the deployment config schema. ``infra.config`` and ``infra.naming`` import no CDK."""
