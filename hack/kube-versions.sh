# Versions of everything built from the Go module proxy for the kube and node tests (sourced by
# hack/install-kube-tools.sh and hack/install-node-tools.sh, so both build against one module set).
KUBERNETES_VERSION="v1.34.4"
# The staging modules (k8s.io/api, k8s.io/apiserver, ...) are published as v0.<minor>.<patch>.
STAGING_VERSION="v0.${KUBERNETES_VERSION#v1.}"
# k8s.io/kubernetes v1.34.x requires this etcd client; the server of the same release matches it.
ETCD_VERSION="v3.6.4"
GATEWAY_API_VERSION="v1.3.0"
# Cluster DNS of the test node (built with only the plugins the node's Corefile uses).
COREDNS_VERSION="v1.14.7"
