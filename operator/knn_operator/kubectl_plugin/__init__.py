"""`kubectl knn`: read a KnnIndex's rollout and act on it through annotations."""
