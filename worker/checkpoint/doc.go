// Package checkpoint keeps the progress of long tasks in a JetStream
// key-value bucket, keyed by task id, so that a task redelivered after a
// drain deadline or a crash resumes where its last attempt stood.
//
// A handler saves a checkpoint whenever it has made progress worth keeping;
// the next delivery of the same task loads it; the worker deletes it when
// the task completes (or is dead-lettered). Checkpoints are small opaque
// byte slices (the bucket's value size limit applies, 1 MiB by default).
package checkpoint
