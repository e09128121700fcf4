"""`knn-build`: source vectors → validated, versioned HNSW artifact."""
