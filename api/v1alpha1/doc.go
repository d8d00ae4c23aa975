// Package v1alpha1 holds the loops.tenire.io/v1alpha1 API: the
// LoopDeployment custom resource, its conditions and reasons, and the
// names that the operator and the worker share (labels, drain annotations,
// the Drained pod condition and the settings the operator gives a worker).
//
// +kubebuilder:object:generate=true
// +groupName=loops.tenire.io
package v1alpha1
