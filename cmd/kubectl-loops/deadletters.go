package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tenire/loop-operator/worker/queue"
)

// deadLetter is one task in the dead-letter stream.
type deadLetter struct {
	Seq      uint64    `json:"seq"`
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	Priority string    `json:"priority"`
	Attempts string    `json:"attempts"`
	FailedAt string    `json:"failedAt"`
	Error    string    `json:"error"`
	Stored   time.Time `json:"stored"`
	payload  []byte
}

func newDeadLettersCommand(o *options) *cobra.Command {
	var requeue, output string
	var all bool
	cmd := &cobra.Command{
		Use:   "dead-letters LOOPDEPLOYMENT [--requeue ID | --all]",
		Short: "List a loop's dead letters, or send them back to the queue",
		Long: `List the tasks that failed every attempt, with their last error. --requeue ID
sends one back to its priority class (it keeps its id and any checkpoint) and
removes it from the dead letters; --all does that for every dead letter.`,
		Example: `  kubectl loops dead-letters orders
  kubectl loops dead-letters orders --requeue job-42
  kubectl loops dead-letters orders --all`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := checkOutput(output); err != nil {
				return err
			}
			_, ld, q, err := o.openLoop(ctx, args[0])
			if err != nil {
				return err
			}
			defer q.Close()
			letters, err := readDeadLetters(ctx, q)
			if err != nil {
				return err
			}
			if requeue == "" && !all {
				return printReport(o.streams.Out, output, letters, func(w io.Writer) { printDeadLetters(w, letters) })
			}
			n := 0
			for _, dl := range letters {
				if all || dl.ID == requeue {
					if err := requeueDeadLetter(ctx, q, dl); err != nil {
						return err
					}
					n++
				}
			}
			if requeue != "" && n == 0 {
				return fmt.Errorf("no dead letter with id %q in %s", requeue, q.names.DeadStream)
			}
			fmt.Fprintf(o.streams.Out, "requeued %d dead letters of loopdeployment %s/%s\n", n, ld.Namespace, ld.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&requeue, "requeue", "", "send the dead letter with this task id back to the queue")
	cmd.Flags().BoolVar(&all, "all", false, "send every dead letter back to the queue")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml (default: a table)")
	cmd.MarkFlagsMutuallyExclusive("requeue", "all")
	return cmd
}

func readDeadLetters(ctx context.Context, q *loopQueue) ([]deadLetter, error) {
	stream, err := q.js.Stream(ctx, q.names.DeadStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream %s: %w", q.names.DeadStream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream %s: %w", q.names.DeadStream, err)
	}
	letters := make([]deadLetter, 0, info.State.Msgs)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted (requeued) earlier
		}
		if err != nil {
			return nil, fmt.Errorf("reading dead letter %d: %w", seq, err)
		}
		letters = append(letters, deadLetterOf(m))
	}
	return letters, nil
}

func deadLetterOf(m *jetstream.RawStreamMsg) deadLetter {
	return deadLetter{
		Seq: m.Sequence, ID: m.Header.Get(queue.HeaderTaskID), Kind: m.Header.Get(queue.HeaderKind),
		Priority: m.Header.Get(queue.HeaderPriority), Attempts: m.Header.Get(queue.HeaderAttempts),
		FailedAt: m.Header.Get(queue.HeaderFailedAt), Error: m.Header.Get(queue.HeaderError),
		Stored: m.Time, payload: m.Data,
	}
}

// deadLetterAt reads the dead letter stored at seq; ErrMsgNotFound when it
// is gone (requeued or discarded already).
func deadLetterAt(ctx context.Context, q *loopQueue, seq uint64) (deadLetter, error) {
	stream, err := q.js.Stream(ctx, q.names.DeadStream)
	if err != nil {
		return deadLetter{}, fmt.Errorf("dead-letter stream %s: %w", q.names.DeadStream, err)
	}
	m, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return deadLetter{}, fmt.Errorf("dead letter %d of %s: %w", seq, q.names.DeadStream, err)
	}
	return deadLetterOf(m), nil
}

// discardDeadLetter removes a dead letter for good.
func discardDeadLetter(ctx context.Context, q *loopQueue, dl deadLetter) error {
	stream, err := q.js.Stream(ctx, q.names.DeadStream)
	if err != nil {
		return fmt.Errorf("dead-letter stream %s: %w", q.names.DeadStream, err)
	}
	if err := stream.DeleteMsg(ctx, dl.Seq); err != nil {
		return fmt.Errorf("discarding dead letter %s: %w", dl.ID, err)
	}
	return nil
}

// requeueDeadLetter publishes a dead letter to its priority's subject,
// with its kind and id, then deletes it from the dead-letter stream. The
// message id for de-duplication carries the dead letter's sequence, so a
// task requeued twice runs twice only if it died twice.
func requeueDeadLetter(ctx context.Context, q *loopQueue, dl deadLetter) error {
	priority := dl.Priority
	if priority == "" {
		priority = queue.DefaultPriority
	}
	m := nats.NewMsg(q.names.TaskSubject(priority))
	m.Data = dl.payload
	m.Header.Set(queue.HeaderKind, dl.Kind)
	m.Header.Set(queue.HeaderTaskID, dl.ID)
	m.Header.Set(jetstream.MsgIDHeader, dl.ID+"-requeue-"+strconv.FormatUint(dl.Seq, 10))
	if _, err := q.js.PublishMsg(ctx, m, jetstream.WithExpectStream(q.names.Stream)); err != nil {
		return fmt.Errorf("requeueing %s: %w", dl.ID, err)
	}
	stream, err := q.js.Stream(ctx, q.names.DeadStream)
	if err != nil {
		return err
	}
	if err := stream.DeleteMsg(ctx, dl.Seq); err != nil {
		return fmt.Errorf("requeued %s but could not remove it from the dead letters: %w", dl.ID, err)
	}
	return nil
}

func printDeadLetters(w io.Writer, letters []deadLetter) {
	if len(letters) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tID\tKIND\tPRIORITY\tATTEMPTS\tFAILED-AT\tERROR")
	for _, dl := range letters {
		msg := dl.Error
		if len(msg) > 120 {
			msg = msg[:117] + "..."
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", dl.Seq, dl.ID, dl.Kind, dl.Priority, dl.Attempts, dl.FailedAt, msg)
	}
	_ = tw.Flush()
}
