"""The queue agent: the worker sidecar that feeds SQS tasks to a local Stable Diffusion runtime.

Start reading at ``pipeline.py`` (the stages and how they connect); ``python -m queue_agent`` runs it.
"""
