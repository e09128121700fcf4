"""`knn-serve`: the HNSW query server of a serving Deployment."""
