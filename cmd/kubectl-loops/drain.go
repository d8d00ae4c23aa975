package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
)

// drainPoll is how often --wait looks at the pods.
const drainPoll = time.Second

type drainOptions struct {
	all     bool
	wait    bool
	timeout time.Duration
}

func newDrainCommand(o *options) *cobra.Command {
	d := &drainOptions{}
	cmd := &cobra.Command{
		Use:   "drain POD... | drain LOOPDEPLOYMENT --all",
		Short: "Ask worker pods to drain, through the drain contract",
		Long: `Ask worker pods to drain: each stops pulling tasks, finishes what it runs until
the deadline, hands back the rest to the queue and reports that it is drained.
The operator then deletes the pod and, unless the loop is scaled down or
suspended, starts a fresh one in its place: draining a pod recycles it without
losing a task. With --all, every pod of the LoopDeployment drains at once, past
its drain.maxConcurrent budget (use suspend to stop a loop).`,
		Example: `  kubectl loops drain orders-7d9f2 --wait
  kubectl loops drain orders --all --timeout 2m --wait`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return d.run(cmd.Context(), o, args)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&d.all, "all", false, "drain every pod of the LoopDeployment named by the argument")
	f.BoolVar(&d.wait, "wait", false, "wait until every pod reports Drained or is gone")
	f.DurationVar(&d.timeout, "timeout", 0, "drain deadline from now (default: the LoopDeployment's spec.drain.timeout)")
	return cmd
}

func (d *drainOptions) run(ctx context.Context, o *options, args []string) error {
	k, err := o.kube()
	if err != nil {
		return err
	}
	var pods []corev1.Pod
	if d.all {
		if len(args) != 1 {
			return fmt.Errorf("--all takes one LoopDeployment, got %d arguments", len(args))
		}
		ld, err := k.loopDeployment(ctx, args[0])
		if err != nil {
			return err
		}
		var list corev1.PodList
		if err := k.client.List(ctx, &list, client.InNamespace(ld.Namespace), client.MatchingLabels{loopsv1alpha1.LabelName: ld.Name}); err != nil {
			return fmt.Errorf("listing the pods of %q: %w", ld.Name, err)
		}
		pods = list.Items
		if len(pods) == 0 {
			fmt.Fprintf(o.streams.Out, "loopdeployment %s has no pods\n", ld.Name)
			return nil
		}
	} else {
		for _, name := range args {
			var p corev1.Pod
			if err := k.client.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: name}, &p); err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("pod %q not found in namespace %q", name, k.namespace)
				}
				return fmt.Errorf("reading pod %q: %w", name, err)
			}
			if _, ok := p.Labels[loopsv1alpha1.LabelName]; !ok {
				return fmt.Errorf("pod %q is not a loop worker (it has no %s label)", name, loopsv1alpha1.LabelName)
			}
			pods = append(pods, p)
		}
	}

	var latest time.Time
	for i := range pods {
		p := &pods[i]
		timeout, err := d.timeoutFor(ctx, k, p)
		if err != nil {
			return err
		}
		already, err := requestDrain(ctx, k, p, o.clock.Now(), timeout)
		switch {
		case err != nil:
			return err
		case already:
			fmt.Fprintf(o.streams.Out, "pod/%s is already draining\n", p.Name)
		default:
			fmt.Fprintf(o.streams.Out, "pod/%s drain requested (deadline in %s)\n", p.Name, timeout)
		}
		if r, _, _ := contract.ParseDrainRequest(p.Annotations); r.Deadline.After(latest) {
			latest = r.Deadline
		}
	}
	if !d.wait {
		return nil
	}
	// A pod that never reports is deleted by the operator a little after
	// its deadline; wait a minute past the latest deadline before giving up.
	waitCtx, cancel := context.WithDeadline(ctx, latest.Add(time.Minute))
	defer cancel()
	return waitDrained(waitCtx, o, k, pods)
}

// requestDrain asks a worker pod to drain through the drain contract
// (contract.RequestDrain): it sets the drain annotations at now with a
// deadline timeout later, through k (the user's credentials). It reports
// whether the pod was draining already, in which case it leaves it alone;
// p is updated.
func requestDrain(ctx context.Context, k *kube, p *corev1.Pod, now time.Time, timeout time.Duration) (already bool, err error) {
	if contract.DrainRequested(p) {
		return true, nil
	}
	return false, contract.RequestDrain(ctx, k.client, p, now, timeout)
}

// timeoutFor is --timeout, or the pod's LoopDeployment's drain timeout.
func (d *drainOptions) timeoutFor(ctx context.Context, k *kube, p *corev1.Pod) (time.Duration, error) {
	if d.timeout > 0 {
		return d.timeout, nil
	}
	ld := &loopsv1alpha1.LoopDeployment{}
	if err := k.client.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: p.Labels[loopsv1alpha1.LabelName]}, ld); err != nil {
		return 0, fmt.Errorf("reading the LoopDeployment of pod %q for its drain timeout (or give --timeout): %w", p.Name, err)
	}
	return drainTimeoutOf(ld), nil
}

// drainTimeoutOf is a LoopDeployment's drain timeout, defaulted as the
// operator defaults it (v1alpha1.WithDefaults).
func drainTimeoutOf(ld *loopsv1alpha1.LoopDeployment) time.Duration {
	return loopsv1alpha1.WithDefaults(ld.Spec).Drain.Timeout.Duration
}

func waitDrained(ctx context.Context, o *options, k *kube, pods []corev1.Pod) error {
	bar := newProgress(o.streams.ErrOut, "drained", len(pods))
	defer bar.done()
	ticker := time.NewTicker(drainPoll)
	defer ticker.Stop()
	for {
		drained := 0
		var last string
		for i := range pods {
			var p corev1.Pod
			err := k.client.Get(ctx, client.ObjectKeyFromObject(&pods[i]), &p)
			switch {
			case apierrors.IsNotFound(err):
				drained++
				last = pods[i].Name + " is gone"
			case err != nil:
				return fmt.Errorf("reading pod %q: %w", pods[i].Name, err)
			default:
				if c, ok := contract.Drained(&p); ok {
					drained++
					last = fmt.Sprintf("%s drained (%s: %s)", p.Name, c.Reason, c.Message)
				}
			}
		}
		bar.set(drained)
		if drained == len(pods) {
			bar.done()
			fmt.Fprintf(o.streams.Out, "%d pods drained; last: %s\n", drained, last)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d pods drained before the wait ended: %w", drained, len(pods), ctx.Err())
		case <-ticker.C:
		}
	}
}
