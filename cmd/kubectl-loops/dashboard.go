package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

type dashboardFlags struct {
	allNamespaces bool
	port          int
	noBrowser     bool
}

func newDashboardCommand(o *options) *cobra.Command {
	f := &dashboardFlags{}
	cmd := &cobra.Command{
		Use:   "dashboard [-n NAMESPACE | -A] [--port P] [--no-browser]",
		Short: "Serve a live web dashboard of the loops on 127.0.0.1, and open it",
		Long: `Serve a web dashboard on 127.0.0.1: an overview of the LoopDeployments and a
page per LoopDeployment with its pods and their drains, the tasks in flight,
the backlog and task rate as charts, the circuit breakers, the dead letters
and the events. It updates live from watches and the workers' announcements.

Every read and every action (scale, suspend, resume, drain a pod, requeue or
discard a dead letter, submit a test task) goes through the API server with
your kubeconfig's credentials, so your RBAC decides what you may do; NATS is
reached as the other commands reach it (--nats-url, spec.queue.nats.url or a
port-forward). Nothing is installed in the cluster. See docs/dashboard.md.`,
		Example: `  kubectl loops dashboard
  kubectl loops dashboard -A --port 8787 --no-browser`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVarP(&f.allNamespaces, "all-namespaces", "A", false, "show the LoopDeployments of every namespace")
	cmd.Flags().IntVar(&f.port, "port", 0, "port to listen on at 127.0.0.1 (default: any free port)")
	cmd.Flags().BoolVar(&f.noBrowser, "no-browser", false, "print the URL without opening a browser")
	return cmd
}

func (f *dashboardFlags) run(ctx context.Context, o *options) error {
	k, err := o.kube()
	if err != nil {
		return err
	}
	namespace := k.namespace
	if f.allNamespaces {
		namespace = ""
	}
	d, err := newDashboard(o, k, namespace, o.errLog("dashboard", ""))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.port)))
	if err != nil {
		return fmt.Errorf("listening on 127.0.0.1:%d: %w", f.port, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := d.start(ctx); err != nil {
		_ = ln.Close()
		return err
	}
	defer d.close()
	srv := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	url := "http://" + ln.Addr().String() + "/"
	fmt.Fprintf(o.streams.Out, "dashboard at %s (Ctrl-C to stop)\n", url)
	if !f.noBrowser {
		if err := openBrowser(url); err != nil {
			fmt.Fprintf(o.streams.ErrOut, "could not open a browser (%v): open %s yourself\n", err, url)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// openBrowser opens url in the user's browser.
func openBrowser(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}
