package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/loopclient"
)

// resultReport is what `result -o json|yaml` prints.
type resultReport struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	Priority   string    `json:"priority"`
	Worker     string    `json:"worker,omitempty"`
	Attempts   uint64    `json:"attempts"`
	Deliveries uint64    `json:"deliveries"`
	Duration   string    `json:"duration"`
	Finished   time.Time `json:"finished"`
	// Payload is the result as text when it is UTF-8; PayloadBytes holds
	// it otherwise (base64 in JSON).
	Payload      string `json:"payload,omitempty"`
	PayloadBytes []byte `json:"payloadBytes,omitempty"`
}

// lookupResult returns task id's result record; for a task without one,
// its dead letter as a *loopclient.FailedError, else loopclient.ErrNoResult.
func lookupResult(ctx context.Context, c *loopclient.Client, id string) (loopclient.Result, error) {
	r, err := c.Result(ctx, id)
	if !errors.Is(err, loopclient.ErrNoResult) {
		return r, err
	}
	failed, ferr := c.Failure(ctx, id)
	switch {
	case ferr != nil:
		return r, ferr
	case failed != nil:
		return r, failed
	}
	return r, err
}

func newResultCommand(o *options) *cobra.Command {
	var output string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "result LOOPDEPLOYMENT ID [--wait DURATION] [-o json|yaml]",
		Short: "Show the result of a task",
		Long: `Show how task ID ended: its result record (who ran it, on which attempt, for how
long) and the result its handler set, printed as it is; or, for a task that
failed for good, its last error (and a non-zero exit). Records are kept for the
LoopDeployment's spec.queue.nats.resultRetention (1h by default). --wait waits
that long for a task that has not finished yet.`,
		Example: `  kubectl loops result orders invoice-42
  kubectl loops result orders invoice-42 --wait 1m -o json`,
		Args: cobra.ExactArgs(2),
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
			qs := contract.QueueOf(ld)
			if qs.ResultRetention <= 0 {
				return fmt.Errorf("loopdeployment %q keeps no result records (spec.queue.nats.resultRetention is 0s)", ld.Name)
			}
			c, err := loopclient.New(q.js, qs)
			if err != nil {
				return err
			}
			id := args[1]
			var r loopclient.Result
			if wait > 0 {
				waitCtx, cancel := context.WithTimeout(ctx, wait)
				r, err = c.Wait(waitCtx, id)
				cancel()
			} else {
				r, err = lookupResult(ctx, c, id)
			}
			if failed, ok := errors.AsType[*loopclient.FailedError](err); ok {
				return fmt.Errorf("task %s (%s) failed for good on attempt %d: %s (kubectl loops dead-letters %s --requeue %s sends it back)",
					id, failed.Kind, failed.Attempts, failed.Err, ld.Name, id)
			}
			if errors.Is(err, loopclient.ErrNoResult) {
				return fmt.Errorf("task %s has no result: it has not finished, was never submitted, or finished more than %s ago (resultRetention)", id, qs.ResultRetention)
			}
			if err != nil {
				return err
			}
			rep := resultReport{ID: r.ID, Kind: r.Kind, Priority: r.Priority, Worker: r.Worker, Attempts: r.Attempts,
				Deliveries: r.Deliveries, Duration: r.Duration.String(), Finished: r.Finished}
			if utf8.Valid(r.Payload) {
				rep.Payload = string(r.Payload)
			} else {
				rep.PayloadBytes = r.Payload
			}
			return printReport(o.streams.Out, output, rep, func(w io.Writer) {
				fmt.Fprintf(w, "task %s (kind %s, priority %s) completed on attempt %d (delivery %d) in %s by %s at %s\n",
					r.ID, r.Kind, r.Priority, r.Attempts, r.Deliveries, r.Duration, orNone(r.Worker), r.Finished.Format(time.RFC3339))
				if len(r.Payload) > 0 {
					_, _ = w.Write(r.Payload)
					if r.Payload[len(r.Payload)-1] != '\n' {
						fmt.Fprintln(w)
					}
				}
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "json or yaml")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait this long for a task that has not finished")
	return cmd
}
