//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// kindSink is the task kind whose work happens at the test's sink: the
// loop-worker's http kind, which POSTs the payload to HTTP_URL.
const kindSink = "http"

// sink is the scenarios' independent record of work done: an HTTP server
// run by the test, which the workers' http kind calls once per attempt.
// Neither the worker library nor the operator writes to it, so a task the
// library acked without running, or ran twice, shows here and not only in
// the result records the library itself writes.
//
// A task's payload says what its attempt does: {"ms": N} holds the request
// N ms and then answers 204, at which moment the attempt counts as
// finished; {"fail": "why"} answers 500 with why (the task fails and is
// retried). An attempt whose request is cancelled
// before its time (the worker cancelled the task, or died) counts as
// started and not finished.
type sink struct {
	url string

	mu        sync.Mutex
	started   map[string]int // attempts begun, by task id
	finished  map[string]int // attempts that ran to their end, by task id
	cancelled int            // attempts whose request ended early
}

// sinkTask is what a sink task's payload may say.
type sinkTask struct {
	MS   *int   `json:"ms,omitempty"`
	Fail string `json:"fail,omitempty"`
}

// startSink starts a sink for t; it stops with t.
func startSink(t *testing.T) *sink {
	t.Helper()
	listen, advertise, err := env.SinkHost()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(listen, "0"))
	if err != nil {
		t.Fatalf("the sink: %v", err)
	}
	s := &sink{started: map[string]int{}, finished: map[string]int{}}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	s.url = "http://" + net.JoinHostPort(advertise, port) + "/task"
	srv := &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return s
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("Loop-Task-Id")
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	var task sinkTask
	if err == nil {
		err = json.Unmarshal(body, &task)
	}
	if id == "" || err != nil || (task.MS == nil && task.Fail == "") {
		http.Error(w, fmt.Sprintf("the sink wants a Loop-Task-Id header and a payload {\"ms\": N} or {\"fail\": \"why\"}: %v", err), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.started[id]++
	s.mu.Unlock()
	if task.Fail != "" {
		http.Error(w, task.Fail, http.StatusInternalServerError)
		return
	}
	timer := time.NewTimer(time.Duration(*task.MS) * time.Millisecond)
	defer timer.Stop()
	select {
	case <-timer.C:
		s.mu.Lock()
		s.finished[id]++
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case <-r.Context().Done():
		s.mu.Lock()
		s.cancelled++
		s.mu.Unlock()
	}
}

// sinkCount is what the sink saw of a set of tasks.
type sinkCount struct {
	// Finished counts the tasks that finished at least once.
	Finished int
	// Duplicates counts the extra finishes: a task finished twice adds one.
	Duplicates int
	// Started counts attempts begun; Cancelled those whose request ended
	// before its time.
	Started, Cancelled int
}

// count counts the tasks ids at the sink.
func (s *sink) count(ids map[string]bool) sinkCount {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := sinkCount{Cancelled: s.cancelled}
	for id := range ids {
		c.Started += s.started[id]
		if n := s.finished[id]; n > 0 {
			c.Finished++
			c.Duplicates += n - 1
		}
	}
	return c
}

// finishedTimes returns how many times the task finished at the sink.
func (s *sink) finishedTimes(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finished[id]
}
