// Package queue is the worker's NATS JetStream task queue: the names of its
// streams, subjects, consumers and buckets, their idempotent set-up, a
// producer that submits tasks, a fetcher that pulls no more tasks than the
// caller can start, and the acknowledgements a worker sends back.
//
// # Names
//
// [NewNames] derives every name from the stream and the subject prefix, so
// the worker and the operator's tools agree:
//
//	<subjectPrefix>.tasks.<priority>   subject a task of that priority is published to
//	<stream>                           work-queue stream holding <subjectPrefix>.tasks.>
//	<priority>                         durable pull consumer of one priority (filter above)
//	<subjectPrefix>.dead.<token>       subject of a task's dead letter (token: TaskToken(id))
//	<stream>_DEAD                      limits-retention stream holding the dead letters
//	<subjectPrefix>.results.<token>    subject of a task's result records
//	<stream>_RESULTS                   limits-retention stream holding the results
//	<stream>_CHECKPOINTS               key-value bucket of task checkpoints
//
// docs/wire-format.md specifies the messages for producers in any language.
//
// # Task envelope
//
// A task is one JetStream message. The body is the task's payload, opaque
// to the queue. Headers carry the rest:
//
//	Loop-Kind      the task kind, which selects the handler (required)
//	Loop-Task-Id   the task id; also sent as Nats-Msg-Id so that the stream
//	               drops a duplicate submitted within its duplicate window.
//	               A message without it gets the id "seq-<stream sequence>".
//
// Priority is not a header: it is the last token of the subject.
//
// A dead letter keeps the payload and the headers above and adds:
//
//	Loop-Priority  the priority the task was submitted with
//	Loop-Error     the last error (truncated to 4 KiB)
//	Loop-Attempts  its attempt number: failed attempts + 1 (see below)
//	Loop-Failed-At the RFC 3339 time it was dead-lettered
//
// # Delivery and acknowledgement
//
// Consumers use explicit acks with the configured AckWait and unlimited
// MaxDeliver: the server never drops a task by itself (a server-side cap
// would strand the task in the stream without a dead letter). A worker acks
// a task that succeeded, retries a failed one with [Delivery.Retry]
// (NakWithDelay) until it has had RetryPolicy.MaxAttempts failed attempts,
// then publishes it to the dead-letter subject and acks it. A task handed
// back in a drain is NAKed without delay. Tasks that run longer than half of
// AckWait should get [Delivery.InProgress] heartbeats, which reset the
// server's redelivery timer.
//
// # Attempts, returns and crashes
//
// The server's delivery count mixes failed attempts, returns that are not
// the task's fault (hand-backs, deferrals) and crashes (redeliveries after
// AckWait). A worker that records [DeliveryCounts] before each NAK, under
// [CountsKey] in the checkpoint bucket, can tell them apart on the next
// delivery: attempts count failures only, and RetryPolicy.MaxCrashes and
// MaxDeliveries cap the rest. Package loop does.
package queue
