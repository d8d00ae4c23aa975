package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/tenire/loop-operator/worker/loop"
)

// limitedBuffer keeps the first limit bytes written and counts the rest.
type limitedBuffer struct {
	buf     bytes.Buffer
	limit   int
	dropped int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); room > 0 {
		keep := min(room, len(p))
		b.buf.Write(p[:keep])
		b.dropped += len(p) - keep
	} else {
		b.dropped += len(p)
	}
	return len(p), nil
}

// execHandler runs argv with the payload on stdin.
func execHandler(argv []string, limit int, log logr.Logger) loop.Handler {
	return func(ctx context.Context, t *loop.Task) error {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdin = bytes.NewReader(t.Payload)
		out := &limitedBuffer{limit: limit}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Env = append(os.Environ(),
			"LOOP_TASK_ID="+t.ID, "LOOP_TASK_KIND="+t.Kind, "LOOP_TASK_ATTEMPT="+strconv.FormatUint(t.Attempt, 10))
		// On cancellation ask politely first, as a kubelet would.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		err := cmd.Run()
		log.Info("exec task output", "task", t.ID, "output", out.buf.String(), "droppedBytes", out.dropped)
		if err != nil {
			if ee, ok := errors.AsType[*exec.ExitError](err); ok {
				return fmt.Errorf("exec %s: exit code %d: %w", argv[0], ee.ExitCode(), err)
			}
			return fmt.Errorf("exec %s: %w", argv[0], err)
		}
		return nil
	}
}

// httpHandler POSTs the payload to url.
func httpHandler(client *http.Client, url string) loop.Handler {
	return func(ctx context.Context, t *loop.Task) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(t.Payload))
		if err != nil {
			return fmt.Errorf("http task: %w: %w", loop.ErrPermanent, err)
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Loop-Task-Id", t.ID)
		req.Header.Set("Loop-Kind", t.Kind)
		req.Header.Set("Loop-Attempt", strconv.FormatUint(t.Attempt, 10))
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("http task: POST %s: %w", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("http task: POST %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
		}
		return nil
	}
}

// sleepHandler sleeps {"ms": N}.
func sleepHandler(ctx context.Context, t *loop.Task) error {
	var p struct {
		MS *int64 `json:"ms"`
	}
	if err := json.Unmarshal(t.Payload, &p); err != nil || p.MS == nil || *p.MS < 0 {
		return fmt.Errorf(`sleep task: want a payload {"ms": N} with N >= 0, got %q: %w`, t.Payload, loop.ErrPermanent)
	}
	timer := time.NewTimer(time.Duration(*p.MS) * time.Millisecond)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// countHandler counts to {"to": N} in steps of {"stepMs": M} ms and
// checkpoints every step, resuming after the last checkpoint.
func countHandler(log logr.Logger) loop.Handler {
	return func(ctx context.Context, t *loop.Task) error {
		var p struct {
			To     int `json:"to"`
			StepMS int `json:"stepMs"`
		}
		if err := json.Unmarshal(t.Payload, &p); err != nil || p.To < 0 || p.StepMS < 0 {
			return fmt.Errorf(`count task: want a payload {"to": N, "stepMs": M}, got %q: %w`, t.Payload, loop.ErrPermanent)
		}
		from := 0
		if t.Checkpoint != nil {
			n, err := strconv.Atoi(string(t.Checkpoint))
			if err != nil {
				return fmt.Errorf("count task: unreadable checkpoint %q: %w", t.Checkpoint, loop.ErrPermanent)
			}
			from = n
			log.Info("count task resuming", "task", t.ID, "from", from, "attempt", t.Attempt)
		}
		timer := time.NewTimer(0)
		defer timer.Stop()
		<-timer.C
		for i := from + 1; i <= p.To; i++ {
			timer.Reset(time.Duration(p.StepMS) * time.Millisecond)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := t.SaveCheckpoint(ctx, []byte(strconv.Itoa(i))); err != nil {
				return err
			}
		}
		log.Info("count task finished", "task", t.ID, "to", p.To)
		return nil
	}
}
