"""Thin kopf handlers, one module per resource kind."""
