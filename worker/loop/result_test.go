package loop_test

import (
	"errors"
	"testing"

	"github.com/tenire/loop-operator/worker/loop"
)

func TestSetResultRefusesMoreThanTheLimitAsAPermanentFailureAndKeepsTheLastThatFits(t *testing.T) {
	task := &loop.Task{ID: "t"}
	if err := task.SetResult([]byte("first")); err != nil {
		t.Fatal(err)
	}
	err := task.SetResult(make([]byte, loop.MaxResultSize+1))
	if !errors.Is(err, loop.ErrResultTooLarge) || !errors.Is(err, loop.ErrPermanent) {
		t.Errorf("SetResult of %d bytes = %v, want ErrResultTooLarge wrapping ErrPermanent", loop.MaxResultSize+1, err)
	}
	if string(task.Result()) != "first" {
		t.Errorf("Result after a refused one = %q, want the last that fitted", task.Result())
	}
	if err := task.SetResult(make([]byte, loop.MaxResultSize)); err != nil || len(task.Result()) != loop.MaxResultSize {
		t.Errorf("SetResult of exactly %d bytes = %v", loop.MaxResultSize, err)
	}
}
