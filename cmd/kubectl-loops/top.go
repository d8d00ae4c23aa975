package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

func newTopCommand(o *options) *cobra.Command {
	var interval time.Duration
	var once bool
	cmd := &cobra.Command{
		Use:   "top LOOPDEPLOYMENT",
		Short: "Watch a loop at work: pods, in-flight tasks, task rates and queue depth",
		Example: `  kubectl loops top orders
  kubectl loops top orders --interval 5s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			k, _, q, err := o.openLoop(ctx, args[0])
			if err != nil {
				return err
			}
			defer q.Close()
			var prev *statusReport
			var prevAt time.Time
			ticker := time.NewTicker(interval)
			defer ticker.Stop()
			for {
				r, err := o.status(ctx, k, args[0], q)
				if err != nil {
					return err
				}
				now := o.clock.Now()
				if !once {
					fmt.Fprint(o.streams.Out, "\033[H\033[2J") // home and clear, like watch(1)
				}
				printTop(o.streams.Out, r, prev, now.Sub(prevAt), now)
				if once {
					return nil
				}
				prev, prevAt = r, now
				select {
				case <-ctx.Done():
					return nil
				case <-ticker.C:
				}
			}
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "time between refreshes")
	cmd.Flags().BoolVar(&once, "once", false, "print one view and exit")
	return cmd
}

// printTop prints one view; the rates compare it with the previous view.
func printTop(w io.Writer, r, prev *statusReport, elapsed time.Duration, now time.Time) {
	fmt.Fprintf(w, "%s/%s  %s\n", r.Namespace, r.Name, now.Format(time.TimeOnly))
	if r.Queue != nil {
		var pending, inFlight uint64
		for _, p := range r.Queue.Priorities {
			pending += p.Pending
			inFlight += uint64(p.InFlight)
		}
		rates := "rates after the next refresh"
		if prev != nil && prev.Queue != nil && elapsed > 0 {
			submitted := float64(r.Queue.Submitted-prev.Queue.Submitted) / elapsed.Seconds()
			var prevOpen uint64
			for _, p := range prev.Queue.Priorities {
				prevOpen += p.Pending + uint64(p.InFlight)
			}
			// Tasks that left the queue = open before + submitted since - open now.
			left := float64(prevOpen+(r.Queue.Submitted-prev.Queue.Submitted)) - float64(pending+inFlight)
			rates = fmt.Sprintf("submitted %.1f/s, finished %.1f/s", submitted, max(left, 0)/elapsed.Seconds())
		}
		fmt.Fprintf(w, "queue: %d pending, %d in flight, %d dead letters; %s\n", pending, inFlight, r.Queue.DeadLetters, rates)
	} else {
		fmt.Fprintf(w, "queue: unavailable: %s\n", r.QueueErr)
	}
	fmt.Fprintln(w)
	r.print(w, now)
}
