package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

var scheme = runtime.NewScheme()

func init() {
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := loopsv1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
}

// options are the flags every subcommand shares.
type options struct {
	kubeFlags *genericclioptions.ConfigFlags
	streams   genericiooptions.IOStreams
	natsURL   string
	// clock tells the time of drain requests; tests replace it.
	clock clock.PassiveClock
}

// errLog is a logger that writes each line to the command's stderr, after
// lead ("\n" starts it below a progress bar).
func (o *options) errLog(name, lead string) logr.Logger {
	errOut := o.streams.ErrOut
	return funcr.New(func(prefix, args string) { fmt.Fprintln(errOut, lead+prefix, args) }, funcr.Options{}).WithName(name)
}

// version is set at build time with -ldflags "-X main.version=v1.2.3"
// (make release); kubectl loops --version prints it.
var version = "dev"

func newRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	return newRootCommandWithClock(streams, clock.RealClock{})
}

func newRootCommandWithClock(streams genericiooptions.IOStreams, clk clock.PassiveClock) *cobra.Command {
	o := &options{kubeFlags: genericclioptions.NewConfigFlags(true), streams: streams, clock: clk}
	cmd := &cobra.Command{
		Use:   "kubectl-loops",
		Short: "Submit, inspect, drain and watch Tenire loops",
		Long: `kubectl loops works with LoopDeployments (loops.tenire.io): it submits tasks
to a loop's queue, shows its state, drains its pods without losing a task,
watches it at work and inspects and requeues dead letters.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl loops"},
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	cmd.SetVersionTemplate("kubectl-loops {{.Version}}\n")
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	o.kubeFlags.AddFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVar(&o.natsURL, "nats-url", "",
		"NATS address to use instead of the LoopDeployment's spec.queue.nats.url (e.g. nats://127.0.0.1:4222)")
	cmd.AddCommand(
		newSubmitCommand(o),
		newWaitCommand(o),
		newStatusCommand(o),
		newDrainCommand(o),
		newTopCommand(o),
		newDeadLettersCommand(o),
		newResultCommand(o),
		newDashboardCommand(o),
	)
	return cmd
}

// kube is a connection to the cluster of the kubeconfig and the namespace
// the flags chose.
type kube struct {
	config    *rest.Config
	client    client.Client
	namespace string
}

func (o *options) kube() (*kube, error) {
	cfg, err := o.kubeFlags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	ns, _, err := o.kubeFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, fmt.Errorf("finding the namespace: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return &kube{config: cfg, client: c, namespace: ns}, nil
}

// errNotFound is returned for a LoopDeployment that does not exist.
var errNotFound = errors.New("not found")

func (k *kube) loopDeployment(ctx context.Context, name string) (*loopsv1alpha1.LoopDeployment, error) {
	ld := &loopsv1alpha1.LoopDeployment{}
	err := k.client.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: name}, ld)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("loopdeployment %q %w in namespace %q (kubectl get ld -n %s lists them)", name, errNotFound, k.namespace, k.namespace)
	case err != nil:
		return nil, fmt.Errorf("reading loopdeployment %q: %w", name, err)
	}
	return ld, nil
}
