// Command manager runs the Tenire loop operator: the LoopDeployment
// controller, behind leader election, with a Prometheus metrics endpoint
// and health probes.
//
// Flags:
//
//	--metrics-bind-address     address of the metrics endpoint (default :8443; "0" disables it)
//	--metrics-secure           HTTPS with token authentication and authorisation (default true)
//	--health-probe-bind-address address of /healthz and /readyz (default :8081)
//	--pprof-bind-address       address of /debug/pprof/ (default "": off)
//	--leader-elect             run behind a leader election lease (default true)
//	--leader-election-namespace namespace of the lease (default: the pod's namespace)
//	--drain-grace              how long after a drain's deadline to wait for the worker's report (default 15s)
//	--max-concurrent-reconciles LoopDeployments reconciled in parallel (default 4)
//	--zap-log-level, --zap-devel, --zap-encoder, ...  logging (controller-runtime's zap options)
package main
