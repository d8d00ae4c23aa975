package main

import (
	"strings"
	"testing"
	"time"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/controllers"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(*options) bool
		wantErr string
	}{
		{"no flags give leader election, the usual addresses and the default grace", nil, func(o *options) bool {
			return o.leaderElect && o.metricsAddr == ":8443" && o.metricsSecure && o.probeAddr == ":8081" && o.drainGrace == 15*time.Second && o.maxConcurrentReconciles == 4
		}, ""},
		{"leader election can be turned off", []string{"--leader-elect=false"}, func(o *options) bool { return !o.leaderElect }, ""},
		{"the lease is the operator's unless a shard names its own", nil, func(o *options) bool { return o.leaderElectionID == defaultLeaderElectionID }, ""},
		{"an empty lease name is refused", []string{"--leader-election-id="}, nil, "--leader-election-id must name a lease"},
		{"a shard names its own lease", []string{"--leader-election-id=shard-a.loops.tenire.io"}, func(o *options) bool { return o.leaderElectionID == "shard-a.loops.tenire.io" }, ""},
		{"the metrics endpoint can be disabled", []string{"--metrics-bind-address=0"}, func(o *options) bool { return o.metricsAddr == "0" }, ""},
		{"plain HTTP metrics must be asked for", []string{"--metrics-secure=false", "--metrics-bind-address=127.0.0.1:8080"}, func(o *options) bool {
			m := metricsOptions(o)
			return !m.SecureServing && m.FilterProvider == nil && m.BindAddress == "127.0.0.1:8080"
		}, ""},
		{"secure metrics authenticate and authorise", nil, func(o *options) bool {
			m := metricsOptions(o)
			return m.SecureServing && m.FilterProvider != nil
		}, ""},
		{"profiling is off unless asked for", nil, func(o *options) bool { return o.pprofAddr == "" }, ""},
		{"profiling can be served", []string{"--pprof-bind-address=127.0.0.1:6060"}, func(o *options) bool { return o.pprofAddr == "127.0.0.1:6060" }, ""},
		{"the drain grace can be set", []string{"--drain-grace=1m"}, func(o *options) bool { return o.drainGrace == time.Minute }, ""},
		{"the log level is a zap flag", []string{"--zap-log-level=debug"}, func(*options) bool { return true }, ""},
		{"the client's rate limits can be set", []string{"--kube-api-qps=50", "--kube-api-burst=100"}, func(o *options) bool { return o.kubeAPIQPS == 50 && o.kubeAPIBurst == 100 }, ""},
		{"a client rate of zero is refused", []string{"--kube-api-qps=0"}, nil, "--kube-api-qps must be positive"},
		{"a drain grace of zero is refused", []string{"--drain-grace=0s"}, nil, "--drain-grace must be positive"},
		{"no concurrent reconciles is refused", []string{"--max-concurrent-reconciles=0"}, nil, "--max-concurrent-reconciles must be at least 1"},
		{"all namespaces are watched by default", nil, func(o *options) bool { return len(cacheOptions(o).DefaultNamespaces) == 0 }, ""},
		{"the watched namespaces can be listed", []string{"--watch-namespaces=a, b,"}, func(o *options) bool {
			c := cacheOptions(o)
			_, a := c.DefaultNamespaces["a"]
			_, b := c.DefaultNamespaces["b"]
			return len(c.DefaultNamespaces) == 2 && a && b && len(c.ByObject) > 0
		}, ""},
		{"every LoopDeployment is managed by default", nil, func(o *options) bool { return len(cacheOptions(o).ByObject) == len(controllers.CacheByObject()) }, ""},
		{"a label selector picks the LoopDeployments of a shard", []string{"--loop-selector=shard in (a,b),!canary"}, func(o *options) bool {
			for obj, by := range cacheOptions(o).ByObject { // keyed by pointer: find it by type
				if _, ok := obj.(*loopsv1alpha1.LoopDeployment); ok {
					return by.Label.String() == "!canary,shard in (a,b)"
				}
			}
			return false
		}, ""},
		{"a selector that does not parse is refused", []string{"--loop-selector=shard in (a,b"}, nil, "not a label selector"},
		{"--version asks for the version", []string{"--version"}, func(o *options) bool { return o.printVersion }, ""},
		{"an unknown flag is refused", []string{"--frobnicate"}, nil, "frobnicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(o) {
				t.Errorf("options = %+v", o)
			}
		})
	}
}
