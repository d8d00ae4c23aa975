// Package testenv starts a real kube-apiserver and etcd for tests, from the
// control plane that hack/kube-bins.sh builds into its cache folder, with the
// project's CRDs installed.
//
// KUBEBUILDER_ASSETS wins when it is set; otherwise the folder is the one
// that `hack/kube-bins.sh --print-dir` prints. When the binaries are not
// there the test fails and says to run `make kube-bins`: a test never skips
// because the control plane is missing.
package testenv
