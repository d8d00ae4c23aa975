package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/worker/queue"
)

// statusReport is what `kubectl loops status` shows, and its -o json|yaml.
type statusReport struct {
	Name      string                             `json:"name"`
	Namespace string                             `json:"namespace"`
	Desired   int32                              `json:"desired"`
	Suspended bool                               `json:"suspended"`
	Status    loopsv1alpha1.LoopDeploymentStatus `json:"status"`
	Queue     *queueReport                       `json:"queue,omitempty"`
	QueueErr  string                             `json:"queueError,omitempty"`
	Pods      []podReport                        `json:"pods"`
	spec      *loopsv1alpha1.LoopDeploymentSpec
	ld        *loopsv1alpha1.LoopDeployment
}

type queueReport struct {
	Stream      string           `json:"stream"`
	Address     string           `json:"address"`
	Priorities  []priorityReport `json:"priorities"`
	DeadLetters uint64           `json:"deadLetters"`
	// Submitted is the stream's last sequence: every task ever stored.
	Submitted uint64 `json:"submitted"`
}

type priorityReport struct {
	Name string `json:"name"`
	// Pending tasks wait for a worker; InFlight were handed out and not
	// yet acknowledged.
	Pending  uint64 `json:"pending"`
	InFlight int    `json:"inFlight"`
	// Retiring is true for a priority class removed from the spec whose
	// tasks the operator is moving to the last listed class.
	Retiring bool `json:"retiring,omitempty"`
	// Redelivered counts tasks in flight that were delivered more than once.
	Redelivered int `json:"redelivered"`
}

type podReport struct {
	Name     string `json:"name"`
	Phase    string `json:"phase"`
	Ready    bool   `json:"ready"`
	Revision string `json:"revision"`
	// State is running, draining or drained, with the drain's times.
	State string `json:"state"`
	// InFlight is how many tasks the worker holds, from its last
	// announcement on the queue; absent when it did not announce itself.
	InFlight *int `json:"inFlight,omitempty"`
	// Loop is the worker's own lifecycle state, from the same announcement.
	Loop     string    `json:"loop,omitempty"`
	Restarts int32     `json:"restarts"`
	Created  time.Time `json:"created"`
}

func newStatusCommand(o *options) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status LOOPDEPLOYMENT",
		Short: "Show a loop: spec against status, conditions, queue depth, dead letters and pods",
		Example: `  kubectl loops status orders
  kubectl loops status orders -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			k, err := o.kube()
			if err != nil {
				return err
			}
			r, err := o.status(cmd.Context(), k, args[0], nil)
			if err != nil {
				return err
			}
			return printReport(o.streams.Out, output, r, func(w io.Writer) { r.print(w, o.clock.Now()) })
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml (default: tables)")
	return cmd
}

func checkOutput(format string) error {
	switch format {
	case "", "json", "yaml":
		return nil
	}
	return fmt.Errorf("unknown output format %q: use json or yaml", format)
}

func printReport(w io.Writer, format string, v any, table func(io.Writer)) error {
	switch format {
	case "json", "yaml":
		data, err := yaml.Marshal(v)
		if err == nil && format == "json" {
			data, err = yaml.YAMLToJSON(data)
			data = append(data, '\n')
		}
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	table(w)
	return nil
}

// status reads a loop's state through k. q, when not nil, is an open
// connection to its queue (top keeps one open, and its client, across
// refreshes); otherwise status connects for this call.
func (o *options) status(ctx context.Context, k *kube, name string, q *loopQueue) (*statusReport, error) {
	ld, err := k.loopDeployment(ctx, name)
	if err != nil {
		return nil, err
	}
	r := &statusReport{
		Name: ld.Name, Namespace: ld.Namespace, Desired: ptr.Deref(ld.Spec.Replicas, 1),
		Suspended: ld.Spec.Suspend, Status: ld.Status, spec: &ld.Spec, ld: ld,
	}
	var pods corev1.PodList
	if err := k.client.List(ctx, &pods, client.InNamespace(ld.Namespace), client.MatchingLabels{loopsv1alpha1.LabelName: ld.Name}); err != nil {
		return nil, fmt.Errorf("listing the pods of %q: %w", ld.Name, err)
	}
	for i := range pods.Items {
		r.Pods = append(r.Pods, describePod(&pods.Items[i], o.clock))
	}
	sort.Slice(r.Pods, func(i, j int) bool { return r.Pods[i].Name < r.Pods[j].Name })

	if q == nil {
		if q, err = o.connectQueue(ctx, k, ld); err != nil {
			r.QueueErr = err.Error()
			return r, nil
		}
		defer q.Close()
	}
	ann, err := q.announcements()
	if err != nil {
		r.QueueErr = err.Error()
		return r, nil
	}
	if r.Queue, err = readQueue(ctx, q, priorities(ld)); err != nil {
		r.QueueErr = err.Error()
	}
	var live []string
	for i := range pods.Items {
		if p := &pods.Items[i]; p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			live = append(live, p.Name)
		}
	}
	ann.waitFor(ctx, live, announceWait)
	for i := range r.Pods {
		if an, ok := ann.get(r.Pods[i].Name); ok {
			n := 0
			for _, c := range an.Status.InFlightByKind {
				n += c
			}
			r.Pods[i].InFlight, r.Pods[i].Loop = &n, an.Status.State
		}
	}
	return r, nil
}

func describePod(p *corev1.Pod, clk clock.PassiveClock) podReport {
	pr := podReport{
		Name: p.Name, Phase: string(p.Status.Phase), Ready: podReady(p),
		Revision: p.Labels[loopsv1alpha1.LabelRevision], Created: p.CreationTimestamp.Time,
	}
	for _, cs := range p.Status.ContainerStatuses {
		pr.Restarts += cs.RestartCount
	}
	r, requested, err := contract.ParseDrainRequest(p.Annotations)
	c, drained := contract.Drained(p)
	switch {
	case drained && !contract.HonoursDrained(p):
		pr.State = fmt.Sprintf("running (reports Drained unasked, ignored: %s)", c.Message)
	case drained:
		pr.State = fmt.Sprintf("drained (%s: %s)", c.Reason, c.Message)
	case requested && err != nil:
		pr.State = "draining (unreadable drain annotations)"
	case requested:
		pr.State = fmt.Sprintf("draining for %s, deadline in %s", since(r.Requested, clk.Now()), until(r.Deadline, clk.Now()))
	case p.DeletionTimestamp != nil:
		pr.State = "terminating"
	default:
		pr.State = "running"
	}
	return pr
}

func since(t, now time.Time) string { return duration.HumanDuration(now.Sub(t)) }

func until(t, now time.Time) string {
	if d := t.Sub(now); d > 0 {
		return duration.HumanDuration(d)
	}
	return "0s (passed)"
}

func readQueue(ctx context.Context, q *loopQueue, classes []string) (*queueReport, error) {
	qr := &queueReport{Stream: q.names.Stream, Address: q.address}
	b, err := queue.Observe(ctx, q.js, q.names, classes)
	if errors.Is(err, queue.ErrNotProvisioned) {
		return nil, fmt.Errorf("the queue is not provisioned yet (see the QueueReady condition): %w", err)
	}
	if err != nil {
		return nil, err
	}
	if stream, err := q.js.Stream(ctx, q.names.Stream); err == nil {
		qr.Submitted = stream.CachedInfo().State.LastSeq
	}
	for _, p := range b.Priorities {
		qr.Priorities = append(qr.Priorities, priorityReport{Name: p.Priority, Pending: p.Pending,
			InFlight: p.InFlight, Redelivered: p.Redelivered, Retiring: p.Retiring})
	}
	qr.DeadLetters = b.DeadLetters
	return qr, nil
}

func (r *statusReport) print(w io.Writer, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	st := r.Status
	fmt.Fprintf(tw, "LoopDeployment:\t%s/%s\n", r.Namespace, r.Name)
	suspended := ""
	if r.Suspended {
		suspended = " (suspended)"
	}
	fmt.Fprintf(tw, "Replicas:\t%d desired%s, %d current, %d ready, %d available, %d up-to-date, %d draining\n",
		r.Desired, suspended, st.Replicas, st.ReadyReplicas, st.AvailableReplicas, st.UpdatedReplicas, st.DrainingReplicas)
	fmt.Fprintf(tw, "Revision:\t%s (update: %s)\n", orNone(st.CurrentRevision), orNone(st.UpdateRevision))
	if r.spec != nil {
		l := r.spec.Loop
		fmt.Fprintf(tw, "Loop:\t%d-%d workers per pod, %s scheduling over %s, task timeout %s\n",
			ptr.Deref(l.Pool.MinWorkers, 0), l.Pool.MaxWorkers, l.Scheduling, strings.Join(priorities(r.ld), ","), durationOf(l.TaskTimeout))
		fmt.Fprintf(tw, "Drain:\ttimeout %s, at most %s at once\n", durationOf(r.spec.Drain.Timeout), intOrString(r.spec.Drain.MaxConcurrent))
	}
	_ = tw.Flush()

	fmt.Fprintln(w, "\nConditions:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tAGE\tMESSAGE")
	for _, c := range st.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, since(c.LastTransitionTime.Time, now), c.Message)
	}
	_ = tw.Flush()

	fmt.Fprintln(w, "\nQueue:")
	if r.Queue == nil {
		fmt.Fprintf(w, "  unavailable: %s\n", r.QueueErr)
	} else {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  stream %s at %s: %d submitted, %d dead letters\n", r.Queue.Stream, r.Queue.Address, r.Queue.Submitted, r.Queue.DeadLetters)
		fmt.Fprintln(tw, "  PRIORITY\tPENDING\tIN-FLIGHT\tREDELIVERED")
		for _, p := range r.Queue.Priorities {
			name := p.Name
			if p.Retiring {
				name += " (removed: its tasks are being moved)"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\n", name, p.Pending, p.InFlight, p.Redelivered)
		}
		_ = tw.Flush()
	}

	fmt.Fprintln(w, "\nPods:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tPHASE\tREADY\tRESTARTS\tREVISION\tAGE\tIN-FLIGHT\tSTATE")
	for _, p := range r.Pods {
		inFlight := "-"
		if p.InFlight != nil {
			inFlight = fmt.Sprint(*p.InFlight)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%t\t%d\t%s\t%s\t%s\t%s\n", p.Name, p.Phase, p.Ready, p.Restarts, p.Revision, since(p.Created, now), inFlight, p.State)
	}
	_ = tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func durationOf(d *metav1.Duration) string {
	if d == nil {
		return "<default>"
	}
	return d.Duration.String()
}

func intOrString(v *intstr.IntOrString) string {
	if v == nil {
		return "<default>"
	}
	return v.String()
}
