// Command loop-worker is the default worker of a LoopDeployment: the
// worker library's loop with built-in task kinds.
//
// Kinds:
//
//	exec   runs --exec-command (words, or a JSON array of strings) with the
//	       payload on stdin; a non-zero exit
//	       fails the task; output (stdout and stderr, at most
//	       --output-limit bytes) goes to the logs.
//	http   POSTs the payload to --http-url; a 2xx answer succeeds.
//	sleep  sleeps for {"ms": N} milliseconds.
//	count  counts to {"to": N, "stepMs": M}, one step every M ms,
//	       checkpointing each step; a redelivered count resumes after its
//	       last checkpoint.
//
// exec and http are registered only when their flag is set.
//
// Settings come, lowest precedence first, from the loop defaults, the
// WorkerSettings document (--config file, else the LOOP_SETTINGS variable
// the operator sets), then each flag's environment variable, then the
// flags. Inside a pod (POD_NAME set) the worker watches its own Pod for the
// operator's drain request. SIGTERM or SIGINT drains it (deadline
// --drain-timeout) and it exits 0; a second SIGINT exits at once.
//
// --standalone runs a NATS server with JetStream inside the process, so a
// developer can run handlers without a cluster:
//
//	go run ./cmd/loop-worker --standalone
//	go run ./cmd/loop-worker submit --kind sleep --payload '{"ms":500}'
//
// The submit subcommand publishes one task (defaults match --standalone).
package main
