// Package controllers holds the LoopDeployment reconciler: it runs the
// worker pods of each LoopDeployment itself (not through a Deployment, so
// that it chooses which pod goes and drains it first), keeps their count
// and revision, and drives the drain contract of api/v1alpha1/contract.go.
//
// The reconciler follows the cluster-api shape: get, ensure the finalizer,
// then either reconcileDelete or reconcileNormal, each a list of small
// phases over a per-reconcile scope, and one status patch at the end,
// computed from what the phases observed and did. The decisions (which
// pods to create or drain, whether a drain is over) are pure functions in
// the policy sub-package. docs/design.md describes the whole.
package controllers
