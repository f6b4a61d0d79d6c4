"""Placement: which accelerator type, how many, and on which nodes, for the least energy per
unit of work that meets the job's objective and deadline.

Like kube-scheduler's framework, each step is a small pure module: nodes.py filters nodes and
picks a gang of them, score.py ranks candidates by the objective, plan.py ties them into
decide(snapshot, job, predictions) -> Plan.
"""
