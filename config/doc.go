// Package config holds no code: its tests check the manifests of this
// folder (the size and documentation of the generated CRD) and, with the
// e2e build tag, apply them to a local control plane as a user would.
package config
