"""In-memory caches of what the reconciler reads: the operator's own objects and
the children they own, each entry slimmed to what the planner uses.

They replace kopf's indexes, whose start-up readiness costs O(N²) wake-ups
(every object's toggle notifies every waiting worker) and whose entries are
whole bodies. Here start-up is one paged LIST per kind, and readiness is one
flag.
"""
