"""`knn-serve`: the HNSW query server of a serving Deployment."""

import os

# One BLAS thread, set before numpy loads: the server's own numpy work is small
# (side-list distances, parsing), and the live-recall check runs under a CPU
# budget measured on its own thread, which BLAS worker threads would escape
# while competing with the search thread for the pod's cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
