"""Contracts shared by the data plane and the control plane (DESIGN section 3).

Importable with pydantic alone: no hnswlib, numpy, FastAPI or kopf.
"""
