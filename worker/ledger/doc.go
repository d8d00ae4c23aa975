// Package ledger accounts for submitted tasks: which completed, which were
// dead-lettered with what error, which ran more than once, and which are
// still open. It reads a loop's result stream (one record per completion,
// see queue.Delivery.RecordResult) and its dead-letter stream with ordered
// consumers, so it sees the history as well as what happens while it is
// open, and it needs no acknowledgements. It watches those consumers and
// follows a stream again from the record after the last one it read when
// its consumer stops delivering (see Open).
//
// `kubectl loops submit --wait`, the demo and the end-to-end tests use it to
// state, after pods came and went, that nothing was lost: every id they
// submitted is either completed or dead-lettered.
//
// The cost is one ordered consumer per stream and a map entry per task id
// seen; a ledger is meant for a batch of tasks, not for a loop's lifetime.
package ledger
