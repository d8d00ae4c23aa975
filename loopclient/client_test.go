package loopclient_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/internal/testenv"
	"github.com/tenire/loop-operator/loopclient"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/pool"
	"github.com/tenire/loop-operator/worker/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// shopMail is the queue of the LoopDeployment shop/mail with two
// priorities and results kept a minute.
var shopMail = contract.Queue{
	Stream: "LOOP_shop_mail", SubjectPrefix: "loops.shop.mail",
	Priorities: []string{"high", "low"}, ResultRetention: time.Minute,
}

// provisioned starts JetStream with the queue provisioned, as the operator
// does, and returns a client of it.
func provisioned(t *testing.T) (*loopclient.Client, jetstream.JetStream, *natstest.Server) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect()
	if _, err := queue.Ensure(t.Context(), js, queue.NewNames(shopMail.Stream, shopMail.SubjectPrefix),
		queue.Config{Priorities: shopMail.Priorities, ResultRetention: shopMail.ResultRetention}); err != nil {
		t.Fatal(err)
	}
	c, err := loopclient.New(js, shopMail)
	if err != nil {
		t.Fatal(err)
	}
	return c, js, srv
}

// runLoop runs a loop of the queue with handlers until the test ends.
func runLoop(t *testing.T, url string, handlers map[string]loop.Handler) {
	t.Helper()
	l, err := loop.New(loop.Config{
		NATSURL: url, Stream: shopMail.Stream, SubjectPrefix: shopMail.SubjectPrefix,
		Priorities:      []pool.Class{{Name: "high", Weight: 1}, {Name: "low", Weight: 1}},
		ResultRetention: shopMail.ResultRetention, AdminAddr: "-", Worker: "pod-a",
		Retry: queue.RetryPolicy{MaxAttempts: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	for kind, h := range handlers {
		l.Handle(kind, h)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the loop's Run: %v", err)
		}
	})
}

func TestSubmitPublishesTheEnvelopeToThePrioritysSubject(t *testing.T) {
	c, js, _ := provisioned(t)
	r, err := c.Submit(t.Context(), loopclient.Task{ID: "inv-42", Kind: "email", Priority: "low", Payload: []byte(`{"to":"a"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "inv-42" || r.Sequence != 1 || r.Duplicate {
		t.Errorf("receipt = %+v, want id inv-42, sequence 1, not a duplicate", r)
	}
	s, err := js.Stream(t.Context(), shopMail.Stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "loops.shop.mail.tasks.low" || m.Header.Get("Loop-Kind") != "email" ||
		m.Header.Get("Loop-Task-Id") != "inv-42" || m.Header.Get("Nats-Msg-Id") != "inv-42" || string(m.Data) != `{"to":"a"}` {
		t.Errorf("stored task = subject %s, headers %v, data %q", m.Subject, m.Header, m.Data)
	}
}

func TestATaskWithoutIDOrPriorityGetsARandomIDAndTheFirstPriority(t *testing.T) {
	c, js, _ := provisioned(t)
	a, err := c.Submit(t.Context(), loopclient.Task{Kind: "email"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Submit(t.Context(), loopclient.Task{Kind: "email"})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == "" || a.ID == b.ID || a.Duplicate || b.Duplicate {
		t.Errorf("two tasks without ids got %q and %q (duplicates %v, %v)", a.ID, b.ID, a.Duplicate, b.Duplicate)
	}
	s, _ := js.Stream(t.Context(), shopMail.Stream)
	if m, err := s.GetMsg(t.Context(), a.Sequence); err != nil || m.Subject != "loops.shop.mail.tasks.high" {
		t.Errorf("a task without a priority went to %v (%v), want the first priority's subject", m, err)
	}
}

func TestASecondTaskWithTheSameIDIsReportedAsADuplicateAndNotStored(t *testing.T) {
	c, _, _ := provisioned(t)
	first, err := c.Submit(t.Context(), loopclient.Task{ID: "once", Kind: "email"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Submit(t.Context(), loopclient.Task{ID: "once", Kind: "email"})
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !again.Duplicate || again.Sequence != first.Sequence {
		t.Errorf("first %+v, again %+v: want the second flagged a duplicate of the first", first, again)
	}
}

func TestSubmitBatchReturnsAReceiptPerTaskInOrderWithItsDuplicates(t *testing.T) {
	c, _, _ := provisioned(t)
	tasks := []loopclient.Task{{ID: "a", Kind: "k"}, {ID: "b", Kind: "k"}, {ID: "a", Kind: "k"}, {Kind: "k"}}
	rs, err := c.SubmitBatch(t.Context(), tasks)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 || rs[0].ID != "a" || rs[1].ID != "b" || rs[0].Duplicate || rs[1].Duplicate ||
		!rs[2].Duplicate || rs[2].Sequence != rs[0].Sequence || rs[3].ID == "" || rs[3].Duplicate {
		t.Errorf("receipts = %+v", rs)
	}
}

func TestAnUnknownPriorityOrAMissingKindIsRefusedWithoutSending(t *testing.T) {
	c, _, _ := provisioned(t)
	if _, err := c.Submit(t.Context(), loopclient.Task{Kind: "k", Priority: "urgent"}); !errors.Is(err, queue.ErrInvalidTask) {
		t.Errorf("unknown priority: %v, want ErrInvalidTask", err)
	}
	if _, err := c.Submit(t.Context(), loopclient.Task{}); !errors.Is(err, queue.ErrInvalidTask) {
		t.Errorf("no kind: %v, want ErrInvalidTask", err)
	}
	rs, err := c.SubmitBatch(t.Context(), []loopclient.Task{{ID: "ok", Kind: "k"}, {Kind: "k", Priority: "urgent"}, {ID: "after", Kind: "k"}})
	if !errors.Is(err, queue.ErrInvalidTask) || len(rs) != 1 || rs[0].ID != "ok" {
		t.Errorf("batch with an invalid task: receipts %+v, error %v; want the one before it and ErrInvalidTask", rs, err)
	}
}

func TestWaitReturnsTheResultRecordOfATaskALoopRan(t *testing.T) {
	c, _, srv := provisioned(t)
	runLoop(t, srv.URL, map[string]loop.Handler{"email": func(context.Context, *loop.Task) error { return nil }})
	r, err := c.Submit(t.Context(), loopclient.Task{ID: "order.7 x", Kind: "email", Priority: "low"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := c.Wait(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "order.7 x" || res.Kind != "email" || res.Priority != "low" || res.Worker != "pod-a" || res.Attempts != 1 || res.Finished.IsZero() {
		t.Errorf("result = %+v", res)
	}
	// Once stored, Result reads it, and Wait finds it at once.
	if got, err := c.Result(t.Context(), r.ID); err != nil || got.ID != r.ID {
		t.Errorf("Result = %+v, %v", got, err)
	}
	if got, err := c.Wait(ctx, r.ID); err != nil || got.ID != r.ID {
		t.Errorf("Wait after the record = %+v, %v", got, err)
	}
}

func TestWaitReturnsAFailedErrorForADeadLetteredTask(t *testing.T) {
	c, _, srv := provisioned(t)
	runLoop(t, srv.URL, map[string]loop.Handler{"email": func(context.Context, *loop.Task) error {
		return fmt.Errorf("mailbox full: %w", loop.ErrPermanent)
	}})
	r, err := c.Submit(t.Context(), loopclient.Task{Kind: "email"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = c.Wait(ctx, r.ID)
	failed, ok := errors.AsType[*loopclient.FailedError](err)
	if !ok || failed.ID != r.ID || failed.Kind != "email" || failed.Err != "mailbox full: permanent failure" {
		t.Fatalf("Wait = %v, want a *FailedError with the handler's error", err)
	}
	if f, err := c.Failure(t.Context(), r.ID); err != nil || f == nil || f.ID != r.ID {
		t.Errorf("Failure = %v, %v", f, err)
	}
}

func TestResultOfATaskWithoutARecordWrapsErrNoResult(t *testing.T) {
	c, _, _ := provisioned(t)
	if _, err := c.Result(t.Context(), "never"); !errors.Is(err, loopclient.ErrNoResult) {
		t.Errorf("Result = %v, want ErrNoResult", err)
	}
	if f, err := c.Failure(t.Context(), "never"); f != nil || err != nil {
		t.Errorf("Failure = %v, %v, want none", f, err)
	}
}

func TestWaitOnALoopThatKeepsNoResultsSaysSo(t *testing.T) {
	_, js, _ := provisioned(t)
	q := shopMail
	q.ResultRetention = 0
	c, err := loopclient.New(js, q)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(t.Context(), "x"); !errors.Is(err, loopclient.ErrNoResults) {
		t.Errorf("Wait = %v, want ErrNoResults", err)
	}
}

func TestForLoopDeploymentTakesTheQueueFromTheLoopDeployment(t *testing.T) {
	_, js, _ := provisioned(t)
	ld := &loopsv1alpha1.LoopDeployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "mail"},
		Spec: loopsv1alpha1.LoopDeploymentSpec{Loop: loopsv1alpha1.LoopSpec{
			Priorities: []loopsv1alpha1.PriorityClass{{Name: "high", Weight: 1}, {Name: "low", Weight: 1}},
		}},
	}
	kube := fake.NewClientBuilder().WithScheme(testenv.Scheme).WithObjects(ld).Build()
	c, err := loopclient.ForLoopDeployment(t.Context(), kube, js, "shop", "mail")
	if err != nil {
		t.Fatal(err)
	}
	if q := c.Queue(); q.Stream != "LOOP_shop_mail" || q.SubjectPrefix != "loops.shop.mail" || len(q.Priorities) != 2 || q.ResultRetention != time.Hour {
		t.Errorf("queue = %+v", q)
	}
	if _, err := c.Submit(t.Context(), loopclient.Task{Kind: "email", Priority: "low"}); err != nil {
		t.Errorf("submitting through the LoopDeployment's queue: %v", err)
	}
	if _, err := loopclient.ForLoopDeployment(t.Context(), kube, js, "shop", "none"); err == nil {
		t.Error("a missing LoopDeployment gave a client")
	}
}

func TestWaitReturnsTheResultTheHandlerSet(t *testing.T) {
	c, _, srv := provisioned(t)
	runLoop(t, srv.URL, map[string]loop.Handler{"thumb": func(_ context.Context, task *loop.Task) error {
		return task.SetResult([]byte("s3://thumbs/" + string(task.Payload)))
	}})
	r, err := c.Submit(t.Context(), loopclient.Task{Kind: "thumb", Payload: []byte("cat.png")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := c.Wait(ctx, r.ID)
	if err != nil || string(res.Payload) != "s3://thumbs/cat.png" {
		t.Fatalf("Wait = %+v, %v; want the handler's result", res, err)
	}
	if got, err := c.Result(t.Context(), r.ID); err != nil || string(got.Payload) != "s3://thumbs/cat.png" {
		t.Errorf("Result = %+v, %v", got, err)
	}
}

func TestAResultOfTheLimitIsKeptAndOneByteMoreFailsTheTaskForGood(t *testing.T) {
	c, _, srv := provisioned(t)
	runLoop(t, srv.URL, map[string]loop.Handler{"big": func(_ context.Context, task *loop.Task) error {
		n, _ := strconv.Atoi(string(task.Payload))
		_ = task.SetResult(make([]byte, n)) // the error is ignored on purpose: the loop fails the attempt anyway
		return nil
	}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	fits, err := c.Submit(t.Context(), loopclient.Task{Kind: "big", Payload: []byte(strconv.Itoa(loop.MaxResultSize))})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Wait(ctx, fits.ID); err != nil || len(res.Payload) != loop.MaxResultSize {
		t.Errorf("a result of %d bytes: %d bytes kept, %v", loop.MaxResultSize, len(res.Payload), err)
	}
	over, err := c.Submit(t.Context(), loopclient.Task{Kind: "big", Payload: []byte(strconv.Itoa(loop.MaxResultSize + 1))})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Wait(ctx, over.ID)
	failed, ok := errors.AsType[*loopclient.FailedError](err)
	if !ok || !strings.Contains(failed.Err, "the handler set a result of 65537 bytes: result larger than 65536 bytes") || failed.Attempts != 1 {
		t.Errorf("a result one byte over the limit: %v; want a dead letter naming the sizes after one attempt", err)
	}
}

func TestATaskPastItsDeadlineIsDeadLetteredAsExpiredWithoutRunningAndOneBeforeItRuns(t *testing.T) {
	c, _, srv := provisioned(t)
	ran := make(chan string, 2)
	runLoop(t, srv.URL, map[string]loop.Handler{"report": func(_ context.Context, task *loop.Task) error {
		ran <- task.ID
		return nil
	}})
	late, err := c.Submit(t.Context(), loopclient.Task{ID: "late", Kind: "report", Deadline: time.Now().Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	timely, err := c.Submit(t.Context(), loopclient.Task{ID: "timely", Kind: "report", Deadline: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = c.Wait(ctx, late.ID)
	failed, ok := errors.AsType[*loopclient.FailedError](err)
	if !ok || !strings.HasPrefix(failed.Err, "expired: not started by its deadline") {
		t.Errorf("Wait for a task past its deadline = %v, want a dead letter saying it expired", err)
	}
	if _, err := c.Wait(ctx, timely.ID); err != nil {
		t.Errorf("Wait for a task before its deadline = %v", err)
	}
	if id := <-ran; id != "timely" {
		t.Errorf("the handler ran %q, want only the task before its deadline", id)
	}
	select {
	case id := <-ran:
		t.Errorf("the handler also ran %q", id)
	default:
	}
}

func TestADelayedTaskRunsNotBeforeItsTimeAndADuplicateIsStillDropped(t *testing.T) {
	c, _, srv := provisioned(t)
	started := make(chan time.Time, 2)
	runLoop(t, srv.URL, map[string]loop.Handler{"remind": func(context.Context, *loop.Task) error {
		started <- time.Now()
		return nil
	}})
	notBefore := time.Now().Add(1500 * time.Millisecond)
	r, err := c.Submit(t.Context(), loopclient.Task{ID: "remind-1", Kind: "remind", NotBefore: notBefore})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.Submit(t.Context(), loopclient.Task{ID: "remind-1", Kind: "remind", NotBefore: notBefore}); err != nil || !again.Duplicate {
		t.Errorf("the same delayed task again: %+v, %v; want a duplicate", again, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := c.Wait(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if at := <-started; at.Before(notBefore) {
		t.Errorf("the delayed task started %s before its time", notBefore.Sub(at))
	} else {
		t.Logf("the delayed task started %s after its time", at.Sub(notBefore))
	}
	select {
	case <-started:
		t.Error("the delayed task ran twice")
	default:
	}
}
