"""Data plane: the index builder (`knn-build`) and the query server (`knn-serve`)."""
