package loop

import (
	"context"
	"errors"
	"fmt"

	"github.com/tenire/loop-operator/worker/queue"
)

// Task is one delivery of a task, as a handler sees it.
type Task struct {
	// ID is the task id.
	ID string
	// Kind selects the handler.
	Kind string
	// Priority is the task's priority class.
	Priority string
	// Payload is the task's input.
	Payload []byte
	// Attempt is one more than the failed attempts of the task so far:
	// hand-backs in a drain, deferrals by an open breaker and crashes of the
	// worker do not count.
	Attempt uint64
	// Checkpoint is the last checkpoint saved by an earlier attempt, or nil.
	Checkpoint []byte

	save   func(ctx context.Context, data []byte) error
	result []byte
	// tooLarge is the size of a result SetResult refused, 0 if none.
	tooLarge int
}

// MaxResultSize bounds a task's result: 64 KiB.
const MaxResultSize = queue.MaxResultSize

// ErrResultTooLarge is wrapped by the error of SetResult for a result of
// more than MaxResultSize bytes, and by the error of the attempt whose
// handler set one and returned nil. It wraps ErrPermanent: the same task
// would give the same result again, so it is dead-lettered at once.
var ErrResultTooLarge = fmt.Errorf("result larger than %d bytes: %w", MaxResultSize, ErrPermanent)

// SetResult sets the task's result, kept with its result record when the
// task succeeds (for the LoopDeployment's resultRetention; nothing is
// kept when that is 0s) and returned to producers that wait for it
// (loopclient.Client.Wait, kubectl loops result). A later call replaces
// it; a result of the attempt that does not succeed is dropped. A result
// of more than MaxResultSize bytes is refused with an error wrapping
// ErrResultTooLarge, and fails the attempt even if the handler then
// returns nil: store large outputs elsewhere and return where they are.
func (t *Task) SetResult(data []byte) error {
	if len(data) > MaxResultSize {
		t.tooLarge = len(data)
		return fmt.Errorf("loop: task %s: %w (it is %d bytes)", t.ID, ErrResultTooLarge, len(data))
	}
	t.result, t.tooLarge = data, 0
	return nil
}

// Result returns the result set with SetResult, or nil.
func (t *Task) Result() []byte { return t.result }

// SaveCheckpoint stores progress for the task. If the task is delivered
// again (a drain deadline, a crash, a retry), the next attempt finds data in
// Task.Checkpoint. The checkpoint is deleted when the task succeeds.
func (t *Task) SaveCheckpoint(ctx context.Context, data []byte) error {
	if t.save == nil {
		return errors.New("loop: task has no checkpoint store")
	}
	if err := t.save(ctx, data); err != nil {
		return err
	}
	t.Checkpoint = data
	return nil
}

// Handler runs a task. It returns nil on success. It must return soon
// after ctx is done (task timeout or drain deadline); whatever it returns
// then, the attempt is not a success. A handler still running
// Config.StuckGrace after its timeout is abandoned.
type Handler func(ctx context.Context, t *Task) error

// ErrPermanent marks a failure that retrying cannot fix: a handler error
// that wraps it sends the task to the dead-letter subject at once.
var ErrPermanent = errors.New("permanent failure")

// ErrNoHandler is the error of a task whose kind has no handler. Such a
// task is retried like a failure (another worker version may know it) and
// dead-lettered when its attempts are used up.
var ErrNoHandler = errors.New("no handler for task kind")
