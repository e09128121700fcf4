"""Developer tooling: the real control plane for tests and the local stack, demo helpers.

Nothing here is imported by the operator or the serving code at run time.
"""
