package checkpoint

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"

	"github.com/nats-io/nats.go/jetstream"
)

// Store reads and writes checkpoints. It is safe for concurrent use.
type Store struct {
	kv jetstream.KeyValue
}

// New returns a store over a bucket.
func New(kv jetstream.KeyValue) *Store {
	return &Store{kv: kv}
}

// Open returns a store over the existing bucket (queue.Ensure creates it).
func Open(ctx context.Context, js jetstream.JetStream, bucket string) (*Store, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open bucket %s: %w", bucket, err)
	}
	return New(kv), nil
}

var plainID = regexp.MustCompile(`^[-_=A-Za-z0-9]+$`)

// Key returns the bucket key of a task id: "t.<id>" when the id is made
// of letters, digits, '-', '_' and '=', otherwise "b.<base64url(id)>".
func Key(taskID string) string {
	if plainID.MatchString(taskID) {
		return "t." + taskID
	}
	return "b." + base64.RawURLEncoding.EncodeToString([]byte(taskID))
}

// Load returns the last checkpoint of a task, or nil when it has none.
func (s *Store) Load(ctx context.Context, taskID string) ([]byte, error) {
	e, err := s.kv.Get(ctx, Key(taskID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: load %s: %w", taskID, err)
	}
	return e.Value(), nil
}

// Save stores a task's checkpoint, replacing the previous one.
func (s *Store) Save(ctx context.Context, taskID string, data []byte) error {
	if _, err := s.kv.Put(ctx, Key(taskID), data); err != nil {
		return fmt.Errorf("checkpoint: save %s: %w", taskID, err)
	}
	return nil
}

// Delete removes a task's checkpoint and its history. Deleting a task
// without a checkpoint is not an error.
func (s *Store) Delete(ctx context.Context, taskID string) error {
	err := s.kv.Purge(ctx, Key(taskID))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("checkpoint: delete %s: %w", taskID, err)
	}
	return nil
}
