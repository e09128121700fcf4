"""Pure functions: a KnnIndex and a version in, Kubernetes manifests out. No I/O."""
