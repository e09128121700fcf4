"""Control plane: the kopf operator that reconciles KnnIndex and ClusterModel."""
