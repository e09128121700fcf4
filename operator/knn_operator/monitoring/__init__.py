"""What the chart ships for monitoring the operator and its servers: Prometheus alert
rules and a Grafana dashboard, built from the names in knn_contracts (and the
operator's own metric objects), written into the chart by `make generate`."""
