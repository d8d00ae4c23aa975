package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	// The manager's metrics, registered by these packages' init into
	// controller-runtime's registry, as in cmd/manager.
	_ "github.com/tenire/loop-operator/controllers"
	_ "github.com/tenire/loop-operator/controllers/stream"
	"github.com/tenire/loop-operator/worker/loop"
)

// dashboardFile is the Grafana dashboard (docs/install.md).
var dashboardFile = filepath.Join("grafana", "loop-operator-dashboard.json")

// metricName finds metric names in PromQL and prose: ours, and the
// controller-runtime and Go runtime families the dashboard may use.
var metricName = regexp.MustCompile(`\b(?:tenire|controller_runtime|workqueue|rest_client|go|process)_[a-z0-9_]*[a-z0-9]\b`)

// registered reports whether reg has a metric named name: registering a
// gauge of that name fails when one is registered already, whatever its
// labels or help (vectors with no series yet included, which Gather would
// not show).
func registered(reg prometheus.Registerer, name string) bool {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "probe"})
	if err := reg.Register(g); err != nil {
		var already prometheus.AlreadyRegisteredError
		return errors.As(err, &already) || strings.Contains(err.Error(), "previously registered")
	}
	reg.Unregister(g)
	return false
}

// TestDashboardAndDocsNameRealMetrics checks every metric name in the
// Grafana dashboard and in docs/*.md against the registries of the two
// binaries that serve metrics: the manager's (controller-runtime's
// registry, with the controllers' and the queue poller's metrics) and a
// worker's (worker/loop, with the Go and process collectors that
// loop-worker serves).
func TestDashboardAndDocsNameRealMetrics(t *testing.T) {
	workerReg := prometheus.NewRegistry()
	workerReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if _, err := loop.New(loop.Config{NATSURL: "nats://127.0.0.1:1", Stream: "metrics", SubjectPrefix: "metrics", Registry: workerReg}); err != nil {
		t.Fatalf("a worker loop for its metrics: %v", err)
	}
	exists := func(name string) bool {
		for _, n := range []string{name, strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")} {
			if registered(ctrlmetrics.Registry, n) || registered(workerReg, n) {
				return true
			}
		}
		return false
	}
	// The probe itself must tell a wrong name from a right one.
	if !exists("tenire_loopdeployment_backlog") || !exists("tenire_loop_tasks_total") || exists("tenire_loop_no_such_metric") {
		t.Fatal("the probe of the registries does not work")
	}

	files := []string{dashboardFile}
	docs, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, docs...)
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, m := range metricName.FindAllIndex(b, -1) {
			// "tenire_loop_*" in prose names a family, not a metric.
			if m[1] < len(b) && b[m[1]] == '*' {
				continue
			}
			names[string(b[m[0]:m[1]])] = true
		}
		var sorted []string
		for n := range names {
			sorted = append(sorted, n)
		}
		sort.Strings(sorted)
		for _, n := range sorted {
			checked++
			if !exists(n) {
				t.Errorf("%s names %s, which neither the manager nor a worker serves", f, n)
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d metric names found in %v: is the pattern right?", checked, files)
	}
	t.Logf("%d metric names checked in %d files", checked, len(files))
}
