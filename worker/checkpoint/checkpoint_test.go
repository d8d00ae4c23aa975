package checkpoint_test

import (
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/worker/checkpoint"
	"github.com/tenire/loop-operator/worker/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestKey(t *testing.T) {
	tests := []struct {
		name, id, want string
	}{
		{"a plain id is kept readable", "order-42_x=1", "t.order-42_x=1"},
		{"an id with a dot is encoded so it cannot nest keys", "a.b", "b.YS5i"},
		{"an id with spaces and slashes is encoded", "a b/c", "b.YSBiL2M"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkpoint.Key(tt.id); got != tt.want {
				t.Errorf("Key(%q) = %q, want %q", tt.id, got, tt.want)
			}
		})
	}
}

func TestSaveLoadDelete(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect()
	names := queue.NewNames("LOOP_cp", "loops.cp")
	if _, err := queue.Ensure(t.Context(), js, names, queue.Config{}); err != nil {
		t.Fatal(err)
	}
	s, err := checkpoint.Open(t.Context(), js, names.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"plain", "with spaces/and.dots"} {
		t.Run(fmt.Sprintf("task %q", id), func(t *testing.T) {
			if got, err := s.Load(t.Context(), id); err != nil || got != nil {
				t.Fatalf("Load before any Save = %q, %v; want nil, nil", got, err)
			}
			for _, v := range []string{"step 1", "step 2"} {
				if err := s.Save(t.Context(), id, []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := s.Load(t.Context(), id); err != nil || string(got) != "step 2" {
				t.Fatalf("Load = %q, %v; want the last checkpoint", got, err)
			}
			if err := s.Delete(t.Context(), id); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Load(t.Context(), id); err != nil || got != nil {
				t.Fatalf("Load after Delete = %q, %v; want nil, nil", got, err)
			}
			if err := s.Delete(t.Context(), id); err != nil {
				t.Errorf("second Delete = %v, want nil", err)
			}
		})
	}
}
