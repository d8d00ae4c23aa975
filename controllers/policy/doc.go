// Package policy holds the pure decisions of the LoopDeployment reconciler:
// the revision of a spec, the drain and surge budgets, the state of one
// pod's drain, the order in which pods are chosen to go, and the plan of
// one reconcile (how many pods to create, which ones to drain).
//
// Nothing here talks to the API server. Every function takes plain inputs
// (and a clock where time matters) and returns a value, so each rule is
// tested as a table whose case names are sentences. The reconciler in
// package controllers turns these decisions into API calls.
package policy
