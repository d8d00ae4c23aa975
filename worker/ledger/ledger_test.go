package ledger_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/tenire/loop-operator/internal/natstest"
	"github.com/tenire/loop-operator/worker/ledger"
	"github.com/tenire/loop-operator/worker/queue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setUp creates a loop's streams on a real embedded JetStream server and
// submits tasks with the given ids.
func setUp(t *testing.T, results bool, ids ...string) (jetstream.JetStream, queue.Names, jetstream.Consumer) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect()
	names := queue.NewNames("LEDGER", "loops.test.ledger")
	consumers, err := queue.Ensure(t.Context(), js, names, queue.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if results {
		if err := queue.EnsureResults(t.Context(), js, names, time.Hour, 1); err != nil {
			t.Fatal(err)
		}
	}
	p := queue.NewProducer(js, names)
	for _, id := range ids {
		if _, _, err := p.Submit(t.Context(), queue.Task{ID: id, Kind: "sleep", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	return js, names, consumers[0]
}

// next fetches the next delivery, as a worker would.
func next(t *testing.T, c jetstream.Consumer) *queue.Delivery {
	t.Helper()
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := <-batch.Messages()
	if !ok {
		t.Fatalf("no delivery: %v", batch.Error())
	}
	d, err := queue.NewDelivery(m, 0, queue.DefaultPriority)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func complete(t *testing.T, js jetstream.JetStream, names queue.Names, d *queue.Delivery) {
	t.Helper()
	if err := d.RecordResult(t.Context(), js, names, "worker-0", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := d.Msg.DoubleAck(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestTheLedgerTellsCompletedDeadLetteredDuplicatedAndOpenTasksApart(t *testing.T) {
	js, names, c := setUp(t, true, "a", "b", "c")

	// a completes once before the ledger opens: history counts.
	complete(t, js, names, next(t, c))

	l, err := ledger.Open(t.Context(), js, names)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Expect("a", "b", "c", "never-submitted")

	// b completes twice: its first worker died before acking, say.
	b := next(t, c)
	if err := b.RecordResult(t.Context(), js, names, "worker-1", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	complete(t, js, names, b)
	// c fails for good.
	if err := next(t, c).DeadLetter(t.Context(), js, names, errors.New("resize: image too large")); err != nil {
		t.Fatal(err)
	}

	want := ledger.Summary{Expected: 4, Completed: 2, DeadLettered: 1, Open: 1, Duplicates: 1}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	var seen ledger.Summary
	got, err := l.Wait(ctx, 0, func(s ledger.Summary) { seen = s })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a task that never runs returned %v, want the context's deadline", err)
	}
	if got != want || seen != want {
		t.Errorf("summary %+v (last progress %+v), want %+v", got, seen, want)
	}
	if f := l.Failures(); len(f) != 1 || f[0].ID != "c" || f[0].Error != "resize: image too large" || f[0].Kind != "sleep" {
		t.Errorf("failures = %+v", f)
	}
	if open := l.Open(10); len(open) != 1 || open[0] != "never-submitted" {
		t.Errorf("open = %v", open)
	}
	if s := got.String(); s != "4 expected, 2 completed, 1 dead-lettered, 1 open, 1 duplicates" {
		t.Errorf("String() = %q", s)
	}
}

func TestWaitReturnsWhenTheLastTaskCompletes(t *testing.T) {
	js, names, c := setUp(t, true, "x", "y")
	l, err := ledger.Open(t.Context(), js, names)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Expect("x", "y")

	done := make(chan ledger.Summary, 1)
	go func() {
		s, err := l.Wait(t.Context(), time.Hour, nil)
		if err != nil {
			t.Errorf("Wait: %v", err)
		}
		done <- s
	}()
	complete(t, js, names, next(t, c))
	complete(t, js, names, next(t, c))
	select {
	case s := <-done:
		if s != (ledger.Summary{Expected: 2, Completed: 2}) {
			t.Errorf("summary %+v", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return after both tasks completed")
	}
}

func TestALoopWithoutResultsIsReported(t *testing.T) {
	js, names, _ := setUp(t, false)
	_, err := ledger.Open(t.Context(), js, names)
	if !errors.Is(err, ledger.ErrNoResults) {
		t.Fatalf("Open = %v, want ErrNoResults", err)
	}
}

// A JetStream that does not answer (here: a server whose JetStream is
// switched off, which leaves the consumer requests unanswered, as a
// cluster electing its leaders or a server short of CPU does) is asked
// again until it answers; the ledger then opens on the streams as they
// were.
func TestOpenAsksAgainUntilJetStreamAnswers(t *testing.T) {
	t.Cleanup(ledger.SetAskTimeout(200 * time.Millisecond))
	store := t.TempDir()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: store, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("the server did not start")
	}
	_, js := natstest.Connect(t, srv.ClientURL())
	names := queue.NewNames("LEDGER", "loops.test.ledger")
	if _, err := queue.Ensure(t.Context(), js, names, queue.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := queue.EnsureResults(t.Context(), js, names, time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	if err := srv.DisableJetStream(); err != nil {
		t.Fatal(err)
	}

	// With a bound, Open gives up when the bound ends, and says why.
	short, cancel := context.WithTimeout(t.Context(), time.Second)
	_, err = ledger.Open(short, js, names)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last answer") {
		t.Fatalf("Open with a bound of 1s on a server without JetStream = %v, want the deadline and JetStream's last answer", err)
	}

	// With a longer one, it goes on asking (the server counts the
	// requests) and opens once JetStream is back.
	inMsgs := func() int64 {
		v, err := srv.Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		return v.InMsgs
	}
	before := inMsgs()
	type opened struct {
		l   *ledger.Ledger
		err error
	}
	result := make(chan opened, 1)
	go func() {
		l, err := ledger.Open(t.Context(), js, names)
		result <- opened{l, err}
	}()
	for deadline := time.Now().Add(30 * time.Second); inMsgs() < before+3; {
		select {
		case r := <-result:
			t.Fatalf("Open returned (%v) while JetStream was off", r.err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("Open did not ask again")
		}
	}
	if err := srv.EnableJetStream(&server.JetStreamConfig{StoreDir: store}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-result:
		if r.err != nil {
			t.Fatalf("Open after JetStream came back: %v", r.err)
		}
		r.l.Close()
	case <-time.After(30 * time.Second):
		t.Fatal("Open did not return after JetStream came back")
	}
}

// What JetStream answers while it cannot serve now is asked again; what it
// would answer again is not.
func TestUnansweredTellsATransientAnswerFromARefusal(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: jetstream.JSErrCodeJetStreamNotEnabledForAccount, Description: "JetStream not enabled for account"}, true},
		{jetstream.ErrJetStreamNotEnabled, true},
		{jetstream.ErrStreamNotFound, false},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeBadRequest, Description: "bad request"}, false},
		{errors.New("something else"), false},
	} {
		if got := ledger.Unanswered(c.err); got != c.want {
			t.Errorf("unanswered(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// A consumer that stops delivering while its stream goes on (here paused
// by the server, as a consumer recreated on a server that has just died
// delivers nothing and nats.go does not notice) is replaced: the ledger
// follows the stream again after the last record it read, counts what
// came since, and counts nothing twice.
func TestALedgerWhoseConsumerStallsFollowsTheStreamAgain(t *testing.T) {
	t.Cleanup(ledger.SetWatch(50*time.Millisecond, 300*time.Millisecond))
	js, names, c := setUp(t, true, "a", "b", "c")
	var logged sync.Map
	log := funcr.New(func(_, args string) { logged.Store(args, true) }, funcr.Options{})
	l, err := ledger.Open(t.Context(), js, names, ledger.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Expect("a", "b", "c")

	complete(t, js, names, next(t, c))
	waitFor(t, l, ledger.Summary{Expected: 3, Completed: 1, Open: 2})

	s, err := js.Stream(t.Context(), names.ResultStream())
	if err != nil {
		t.Fatal(err)
	}
	paused := 0
	for ci := range s.ListConsumers(t.Context()).Info() {
		if _, err := s.PauseConsumer(t.Context(), ci.Name, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		paused++
	}
	if paused != 1 {
		t.Fatalf("paused %d consumers of the result stream, want the ledger's one", paused)
	}
	complete(t, js, names, next(t, c))
	complete(t, js, names, next(t, c))
	waitFor(t, l, ledger.Summary{Expected: 3, Completed: 3})

	refollowed := false
	logged.Range(func(k, _ any) bool {
		refollowed = refollowed || strings.Contains(k.(string), `"stream"="`+names.ResultStream()+`"`)
		return true
	})
	if !refollowed {
		t.Error("the ledger counted every result but logged no new consumer of the result stream")
	}
}

// waitFor waits up to 30 s for the ledger's summary to be want, looking
// every 10 ms.
func waitFor(t *testing.T, l *ledger.Ledger, want ledger.Summary) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for got := l.Summary(); got != want; got = l.Summary() {
		select {
		case <-deadline:
			t.Fatalf("summary %+v after 30s, want %+v", got, want)
		case <-tick.C:
		}
	}
}
