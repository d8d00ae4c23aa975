package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tenire/loop-operator/worker/loop"
)

// With 20 LoopDeployments of 10 pods each, and every worker announcing
// itself every 2 seconds as worker/loop does, a change that a watch
// brings reaches the live page within a second, and loading the pages
// makes no request to the API server besides the watches. The figures it
// logs are the ones docs/dashboard.md states.
func TestDashboardAt200PodsAnd20Loops(t *testing.T) {
	const loops, podsPer, rounds = 20, 10, 10
	w := newWorld(t)
	ctx := t.Context()
	subjects := make([]string, loops)
	for i := range loops {
		name := fmt.Sprintf("loop-%02d", i)
		subjects[i] = queueNames(w.loop(name, w.natsURL)).StatusSubject()
		for j := range podsPer {
			if err := w.client.Create(ctx, workerPod(fmt.Sprintf("%s-%d", name, j), name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var counter requestCounter
	ds := startDashboard(t, counter.wrap(w.cfg))
	for i := range loops {
		mustQueueEventually(t, ds, fmt.Sprintf("loop-%02d", i))
	}

	// Every worker announces itself every 2 s, as in a busy cluster.
	nc, err := nats.Connect(w.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		counters := uint64(0)
		for {
			counters += 50
			for i := range loops {
				name := fmt.Sprintf("loop-%02d", i)
				for j := range podsPer {
					an := loop.Announcement{Worker: fmt.Sprintf("%s-%d", name, j), At: time.Now(), Status: loop.Status{State: "Running",
						InFlightByKind: map[string]int{"sleep": 3}, Counters: map[string]uint64{loop.OutcomeSucceeded: counters}}}
					data, _ := json.Marshal(an)
					_ = nc.Publish(subjects[i], data)
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(stop); <-stopped }()

	overview := ds.live("")
	overview.next(t, 10*time.Second, "the first update", func(string) bool { return true })
	before := counter.count()
	var statusLatency, podLatency []time.Duration
	for r := range rounds {
		name := fmt.Sprintf("loop-%02d", r)
		backlog := int64(1000 + r)
		setQueueStatus(t, w.client, name, map[string]int64{"low": backlog}, 0)
		_, took := overview.next(t, 10*time.Second, "the new backlog of "+name, func(u string) bool {
			return strings.Contains(u, fmt.Sprintf(`<tr data-loop="default/%s">`, name)) && rowBacklog(u, name) == fmt.Sprint(backlog)
		})
		statusLatency = append(statusLatency, took)

		page := ds.live("?namespace=default&name=" + name)
		page.next(t, 10*time.Second, "the first update of "+name, func(string) bool { return true })
		pod := name + "-3"
		p := &corev1.Pod{}
		if err := w.client.Get(ctx, client.ObjectKey{Namespace: "default", Name: pod}, p); err != nil {
			t.Fatal(err)
		}
		if _, err := requestDrain(ctx, &kube{client: w.client}, p, time.Now(), time.Minute); err != nil {
			t.Fatal(err)
		}
		_, took = page.next(t, 10*time.Second, pod+" draining", func(u string) bool {
			return strings.Contains(u, fmt.Sprintf(`<tr data-pod="%s" class="state-draining">`, pod))
		})
		podLatency = append(podLatency, took)
		page.close()

		for _, path := range []string{"/", "/loops/default/" + name} {
			if status, _ := ds.get(path); status != http.StatusOK {
				t.Fatalf("%s: %d", path, status)
			}
		}
	}
	slices.Sort(statusLatency)
	slices.Sort(podLatency)
	t.Logf("200 pods, 20 LoopDeployments, 100 announcements/s: status change → overview update: median %s, max %s; drain request → loop page update: median %s, max %s",
		statusLatency[rounds/2].Round(time.Millisecond), statusLatency[rounds-1].Round(time.Millisecond),
		podLatency[rounds/2].Round(time.Millisecond), podLatency[rounds-1].Round(time.Millisecond))
	if n := counter.count() - before; n != 0 {
		t.Errorf("%d page loads and their live updates made %d requests to the API server besides the watches", 2*rounds, n)
	}
	for _, l := range [][]time.Duration{statusLatency, podLatency} {
		if l[rounds-1] > time.Second {
			t.Errorf("a change took %s to reach the page, want at most 1s (all: %v)", l[rounds-1], l)
		}
	}
}

// rowBacklog is the backlog cell of a LoopDeployment's overview row.
func rowBacklog(u, name string) string {
	_, row, ok := strings.Cut(u, fmt.Sprintf(`<tr data-loop="default/%s">`, name))
	if !ok {
		return ""
	}
	row, _, _ = strings.Cut(row, "</tr>")
	m := reBacklog.FindStringSubmatch(row)
	if m == nil {
		return ""
	}
	return m[1]
}
