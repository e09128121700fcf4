"""Kubernetes API constants: group, versions, kinds, labels and annotations."""

from typing import Final

GROUP: Final = "knn.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

KNN_INDEX_KIND: Final = "KnnIndex"
KNN_INDEX_PLURAL: Final = "knnindexes"
CLUSTER_MODEL_KIND: Final = "ClusterModel"
CLUSTER_MODEL_PLURAL: Final = "clustermodels"

FIELD_MANAGER: Final = "knn-operator"
# Co-owns a Deployment's replica count before an autoscaler takes it over.
FIELD_MANAGER_HANDOVER: Final = "knn-operator-handover"

LABEL_INDEX: Final = f"{GROUP}/index"
LABEL_MODEL: Final = f"{GROUP}/model"
LABEL_VERSION: Final = f"{GROUP}/version"
LABEL_COMPONENT: Final = f"{GROUP}/component"
LABEL_REVISION: Final = f"{GROUP}/revision"

ANNOTATION_PROMOTE: Final = f"{GROUP}/promote"
ANNOTATION_ABORT: Final = f"{GROUP}/abort"
ANNOTATION_REBUILD: Final = f"{GROUP}/rebuild"
ANNOTATION_RETRY: Final = f"{GROUP}/retry"
