"""Pydantic models of the custom resources; the CRD schemas are generated from them."""
