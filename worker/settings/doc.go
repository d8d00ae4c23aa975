// Package settings turns the operator's WorkerSettings (the JSON document
// in the LOOP_SETTINGS environment variable of every worker pod) into a
// loop.Config, so that a worker built on the library runs with exactly the
// settings of its LoopDeployment.
package settings
