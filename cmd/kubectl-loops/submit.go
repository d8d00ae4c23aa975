package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/loopclient"
	"github.com/tenire/loop-operator/worker/ledger"
	"github.com/tenire/loop-operator/worker/queue"
)

// submitBatch is how many tasks are in flight to the server at once.
const submitBatch = 500

type submitOptions struct {
	kind, priority, payload, payloadFile, id string
	count                                    int
	raw, wait                                bool
	timeout                                  time.Duration
}

func newSubmitCommand(o *options) *cobra.Command {
	s := &submitOptions{}
	cmd := &cobra.Command{
		Use:   "submit LOOPDEPLOYMENT --kind KIND [--priority P] [--payload JSON | --payload-file FILE | -] [--id ID] [--count N]",
		Short: "Submit tasks to a loop's queue",
		Long: `Submit one task, or --count copies of it, to the queue of a LoopDeployment.

The payload is JSON, given with --payload, read from --payload-file, or read
from standard input when the last argument is "-"; --raw sends bytes that are
not JSON (the exec kind takes any input). Every task gets an id (--id, with
-1, -2, … appended for --count > 1, or a random one) that the queue uses to
drop duplicates: submitting the same id twice within the loop's duplicate window
(spec.queue.nats.duplicateWindow, two minutes by default) runs it once.

--wait waits until every task completed or failed for good, with a progress
bar, and lists the failures with their errors; it exits non-zero when any
task failed. It reads the loop's result records, so the LoopDeployment must
keep them (spec.queue.nats.resultRetention, 1h by default).`,
		Example: `  kubectl loops submit orders --kind sleep --payload '{"ms": 200}'
  kubectl loops submit orders --kind resize --priority high --payload-file job.json --id job-42
  kubectl loops submit orders --kind sleep --payload '{"ms": 50}' --count 5000 --wait
  cat payload.json | kubectl loops submit orders --kind http -`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.run(cmd, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&s.kind, "kind", "", "task kind, which selects the handler (required)")
	f.StringVar(&s.priority, "priority", "", "priority class (default: the loop's first class)")
	f.StringVar(&s.payload, "payload", "", "payload as JSON")
	f.StringVar(&s.payloadFile, "payload-file", "", "file holding the payload")
	f.StringVar(&s.id, "id", "", "task id, for de-duplication (default: random)")
	f.IntVar(&s.count, "count", 1, "how many tasks to submit")
	f.BoolVar(&s.raw, "raw", false, "send the payload as it is, without checking that it is JSON")
	f.BoolVar(&s.wait, "wait", false, "wait until every task completed or failed for good, and report failures")
	f.DurationVar(&s.timeout, "timeout", 30*time.Minute, "how long --wait waits")
	_ = cmd.MarkFlagRequired("kind")
	return cmd
}

func (s *submitOptions) readPayload(args []string, stdin io.Reader) ([]byte, error) {
	fromStdin := len(args) == 2
	if len(args) == 2 && args[1] != "-" {
		return nil, fmt.Errorf("unexpected argument %q: the only argument after the LoopDeployment is \"-\" (payload on standard input)", args[1])
	}
	sources := 0
	for _, given := range []bool{s.payload != "", s.payloadFile != "", fromStdin} {
		if given {
			sources++
		}
	}
	if sources > 1 {
		return nil, fmt.Errorf("give the payload one way: --payload, --payload-file or - (standard input)")
	}
	var data []byte
	var err error
	switch {
	case s.payload != "":
		data = []byte(s.payload)
	case s.payloadFile != "":
		data, err = os.ReadFile(s.payloadFile)
	case fromStdin:
		data, err = io.ReadAll(stdin)
	default:
		data = []byte("{}")
	}
	if err != nil {
		return nil, fmt.Errorf("reading the payload: %w", err)
	}
	if !s.raw && !json.Valid(data) {
		return nil, fmt.Errorf("the payload is not valid JSON (use --raw to send other bytes): %.80q", data)
	}
	return data, nil
}

// priorities returns the priority classes of a LoopDeployment, highest first.
func priorities(ld *loopsv1alpha1.LoopDeployment) []string { return contract.QueueOf(ld).Priorities }

// queueWait is how long submit waits for the operator to provision a
// queue that does not exist yet (a LoopDeployment just created).
const queueWait = 30 * time.Second

func (s *submitOptions) run(cmd *cobra.Command, o *options, args []string) error {
	ctx := cmd.Context()
	if s.count < 1 {
		return fmt.Errorf("--count must be at least 1")
	}
	payload, err := s.readPayload(args, o.streams.In)
	if err != nil {
		return err
	}
	k, err := o.kube()
	if err != nil {
		return err
	}
	ld, err := k.loopDeployment(ctx, args[0])
	if err != nil {
		return err
	}
	classes := priorities(ld)
	priority := s.priority
	if priority == "" {
		priority = classes[0]
	}
	if !slices.Contains(classes, priority) {
		// Said before connecting; loopclient would refuse it too.
		return fmt.Errorf("loopdeployment %q has no priority %q; its priorities are %v", ld.Name, priority, classes)
	}
	q, err := o.connectQueue(ctx, k, ld)
	if err != nil {
		return err
	}
	defer q.Close()
	// The operator provisions the queue; submit only binds to it, waiting
	// a little for a LoopDeployment created a moment ago. Tasks wait in
	// the queue for a loop that is scaled to zero or not started yet.
	qs := contract.QueueOf(ld)
	bindCtx, cancelBind := context.WithTimeout(ctx, queueWait)
	_, err = queue.AwaitBind(bindCtx, q.js, q.names, qs.Priorities, 0, time.Second, func(err error) {
		fmt.Fprintf(o.streams.ErrOut, "waiting for the operator to provision the queue of %q: %v\n", ld.Name, err)
	})
	cancelBind()
	if err != nil {
		return fmt.Errorf("the queue of loopdeployment %q is not ready (see its QueueReady condition): %w", ld.Name, err)
	}
	ids := taskIDs(s.id, s.count)
	var book *ledger.Ledger
	if s.wait {
		if book, err = openLedger(ctx, o, q, ld); err != nil {
			return err
		}
		defer book.Close()
		book.Expect(ids...)
	}

	producer, err := loopclient.New(q.js, qs)
	if err != nil {
		return err
	}
	bar := newProgress(o.streams.ErrOut, "submitting", s.count)
	var duplicates []string
	for start := 0; start < len(ids); start += submitBatch {
		end := min(start+submitBatch, len(ids))
		batch := make([]loopclient.Task, 0, end-start)
		for _, id := range ids[start:end] {
			batch = append(batch, loopclient.Task{ID: id, Kind: s.kind, Priority: priority, Payload: payload})
		}
		receipts, err := producer.SubmitBatch(ctx, batch)
		for _, r := range receipts {
			if r.Duplicate {
				duplicates = append(duplicates, r.ID)
			}
		}
		if err != nil {
			bar.done()
			return fmt.Errorf("submitted %d of %d tasks, then: %w", start+len(receipts), s.count, err)
		}
		bar.set(end)
	}
	bar.done()
	what := "task " + ids[0]
	if s.count > 1 {
		what = strconv.Itoa(s.count) + " tasks " + ids[0] + " … " + ids[len(ids)-1]
	}
	fmt.Fprintf(o.streams.Out, "submitted %s (kind %s, priority %s) to loopdeployment %s/%s, stream %s\n",
		what, s.kind, priority, ld.Namespace, ld.Name, q.names.Stream)
	if len(duplicates) > 0 {
		fmt.Fprintf(o.streams.Out, "%d of them dropped by the queue as duplicates of tasks with the same id submitted within its duplicate window (first: %s): those run once\n",
			len(duplicates), duplicates[0])
	}
	if book == nil {
		return nil
	}
	return waitForTasks(ctx, o, book, s.timeout)
}

// openLedger follows the results of a loop that keeps them.
func openLedger(ctx context.Context, o *options, q *loopQueue, ld *loopsv1alpha1.LoopDeployment) (*ledger.Ledger, error) {
	qs := contract.QueueOf(ld)
	if qs.ResultRetention <= 0 {
		return nil, fmt.Errorf("loopdeployment %q keeps no result records (spec.queue.nats.resultRetention is 0s), so waiting cannot tell completed tasks from lost ones", ld.Name)
	}
	if _, err := q.js.Stream(ctx, q.names.ResultStream()); err != nil {
		return nil, fmt.Errorf("the result stream %s of loopdeployment %q (provisioned by the operator): %w", q.names.ResultStream(), ld.Name, err)
	}
	// JetStream is asked again while it does not answer (a NATS cluster
	// electing its leaders), for a bounded time.
	ctx, cancel := context.WithTimeout(ctx, ledgerOpenTimeout)
	defer cancel()
	// The ledger says on stderr when it follows a stream again after its
	// consumer stalled (a NATS server of a cluster died).
	return ledger.Open(ctx, q.js, q.names, ledger.WithLogger(o.errLog("ledger", "\n")))
}

// ledgerOpenTimeout bounds the wait for JetStream to follow a loop's
// results.
const ledgerOpenTimeout = time.Minute

// maxFailuresShown caps the failures --wait lists.
const maxFailuresShown = 20

func waitForTasks(ctx context.Context, o *options, book *ledger.Ledger, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	s := book.Summary()
	bar := newProgress(o.streams.ErrOut, "finished", s.Expected)
	s, err := book.Wait(ctx, 200*time.Millisecond, func(s ledger.Summary) { bar.set(s.Completed + s.DeadLettered) })
	bar.done()
	fmt.Fprintf(o.streams.Out, "%d completed, %d failed, %d duplicate runs\n", s.Completed, s.DeadLettered, s.Duplicates)
	fmt.Fprintf(o.streams.Out, "summary: submitted=%d completed=%d dead-lettered=%d open=%d duplicates=%d elapsed=%s\n",
		s.Expected, s.Completed, s.DeadLettered, s.Open, s.Duplicates, time.Since(start).Round(time.Second))
	if err != nil {
		return fmt.Errorf("%d of %d tasks still open after %s (first: %v): %w", s.Open, s.Expected, timeout, book.Open(5), err)
	}
	failures := book.Failures()
	if len(failures) == 0 {
		return nil
	}
	for i, f := range failures {
		if i == maxFailuresShown {
			fmt.Fprintf(o.streams.Out, "  … and %d more (kubectl loops dead-letters lists them all)\n", len(failures)-i)
			break
		}
		fmt.Fprintf(o.streams.Out, "  failed %s (%s): %s\n", f.ID, f.Kind, f.Error)
	}
	return fmt.Errorf("%d of %d tasks failed for good", len(failures), s.Expected)
}

func newWaitCommand(o *options) *cobra.Command {
	var id string
	var count int
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait LOOPDEPLOYMENT --id ID [--count N]",
		Short: "Wait for tasks submitted earlier to complete or fail",
		Long: `Wait for the tasks that ` + "`kubectl loops submit --id ID --count N`" + ` submitted (ids ID, or
ID-1 … ID-N) until each completed or failed for good, with a progress bar; it
lists the failures and exits non-zero when any task failed or is still open at
--timeout. The last line sums up: submitted, completed, dead-lettered, open,
duplicates and the time waited.`,
		Example: `  kubectl loops submit orders --kind sleep --payload '{"ms": 100}' --count 3000 --id batch-7
  kubectl loops wait orders --id batch-7 --count 3000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if id == "" || count < 1 {
				return fmt.Errorf("--id and a --count of at least 1 are required: they name the tasks to wait for")
			}
			_, ld, q, err := o.openLoop(ctx, args[0])
			if err != nil {
				return err
			}
			defer q.Close()
			book, err := openLedger(ctx, o, q, ld)
			if err != nil {
				return err
			}
			defer book.Close()
			book.Expect(taskIDs(id, count)...)
			return waitForTasks(ctx, o, book, timeout)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the --id the tasks were submitted with")
	cmd.Flags().IntVar(&count, "count", 1, "the --count the tasks were submitted with")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "how long to wait")
	return cmd
}

// taskIDs returns count task ids: id itself for one task, id-1 … id-N for
// several, and a random prefix when id is empty.
func taskIDs(id string, count int) []string {
	if id == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		id = "t-" + hex.EncodeToString(b[:])
		if count == 1 {
			return []string{id}
		}
	}
	if count == 1 {
		return []string{id}
	}
	ids := make([]string, count)
	for i := range ids {
		ids[i] = id + "-" + strconv.Itoa(i+1)
	}
	return ids
}
