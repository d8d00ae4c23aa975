package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/queue"
)

// requestCounter counts the dashboard's requests to the API server that
// are not watches: lists and gets.
type requestCounter struct {
	mu    sync.Mutex
	reads []string
}

func (c *requestCounter) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodGet && r.URL.Query().Get("watch") != "true" {
				c.mu.Lock()
				c.reads = append(c.reads, r.URL.Path)
				c.mu.Unlock()
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

func (c *requestCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reads)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// dash is a dashboard under test, served by an httptest server.
type dash struct {
	t   *testing.T
	d   *dashboard
	srv *httptest.Server
}

// startDashboard serves a dashboard of namespace default with cfg's
// credentials; it stops when the test ends.
func startDashboard(t *testing.T, cfg *rest.Config) *dash {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	o := &options{streams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}, clock: clock.RealClock{}}
	d, err := newDashboard(o, &kube{config: cfg, client: c, namespace: "default"}, "default", logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	if err := d.start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.handler())
	t.Cleanup(func() {
		cancel()
		d.close() // ends the live streams, so that the server can close
		srv.Close()
	})
	return &dash{t: t, d: d, srv: srv}
}

func (ds *dash) get(path string) (int, string) {
	ds.t.Helper()
	resp, err := http.Get(ds.srv.URL + path)
	status, body := ds.read(resp, err)
	return status, body
}

// read reads a response, failing the test on an error.
func (ds *dash) read(resp *http.Response, err error) (int, string) {
	ds.t.Helper()
	if err != nil {
		ds.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		ds.t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// post posts an action's form; confirm adds the confirmation. Redirects
// are not followed: it returns the status, the body and the Location.
func (ds *dash) post(form url.Values, confirm bool) (int, string, string) {
	ds.t.Helper()
	if form.Get("csrf") == "" {
		form.Set("csrf", ds.d.csrf)
	}
	if confirm {
		form.Set("confirm", "yes")
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(ds.srv.URL+"/action", form)
	status, body := ds.read(resp, err)
	return status, body, resp.Header.Get("Location")
}

// waitPage loads path until its body satisfies ok, or fails after timeout.
func (ds *dash) waitPage(path string, timeout time.Duration, what string, ok func(string) bool) string {
	ds.t.Helper()
	var body string
	waitUntil(ds.t, timeout, what, func() bool {
		_, body = ds.get(path)
		return ok(body)
	}, func() string { return body })
	return body
}

// waitUntil checks cond every 50 ms until it holds, or fails the test
// after timeout with what and last().
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool, last func() string) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("after %s: %s did not happen; last seen:\n%s", timeout, what, last())
		case <-tick.C:
		}
	}
}

// liveStream reads a page's live updates.
type liveStream struct {
	updates chan string
	cancel  func()
	done    chan struct{}
}

func (ds *dash) live(query string) *liveStream {
	ds.t.Helper()
	ctx, cancel := context.WithCancel(ds.t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ds.srv.URL+"/live"+query, nil)
	if err != nil {
		ds.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		ds.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		cancel()
		ds.t.Fatalf("/live answered %s with %s", resp.Status, ct)
	}
	ls := &liveStream{updates: make(chan string, 1024), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ls.done)
		defer func() { _ = resp.Body.Close() }()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			case line == "" && data != nil:
				select {
				case ls.updates <- strings.Join(data, "\n"):
				case <-ctx.Done():
					return
				}
				data = nil
			}
		}
	}()
	ds.t.Cleanup(ls.close)
	return ls
}

func (ls *liveStream) close() {
	ls.cancel()
	<-ls.done
}

// next waits for the first update that satisfies ok and returns it with
// the time it took, or fails after timeout.
func (ls *liveStream) next(t *testing.T, timeout time.Duration, what string, ok func(string) bool) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	last := ""
	for {
		select {
		case u := <-ls.updates:
			if ok(u) {
				return u, time.Since(start)
			}
			last = u
		case <-deadline.C:
			t.Fatalf("no live update within %s showed %s; last update:\n%s", timeout, what, last)
		}
	}
}

func workerPod(name, ld string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{loopsv1alpha1.LabelName: ld}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "loop-worker:dev"}}},
	}
}

// setQueueStatus records a backlog in the LoopDeployment's status, as the
// operator does.
func setQueueStatus(t *testing.T, c client.Client, name string, pending map[string]int64, dead int64) {
	t.Helper()
	ld := &loopsv1alpha1.LoopDeployment{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: name}, ld); err != nil {
		t.Fatal(err)
	}
	q := &loopsv1alpha1.QueueStatus{DeadLetters: dead, ObservedTime: ptr.To(metav1.Now())}
	for _, class := range priorities(ld) {
		q.Pending += pending[class]
		q.Priorities = append(q.Priorities, loopsv1alpha1.PriorityQueueStatus{Name: class, Pending: pending[class]})
	}
	ld.Status.Queue = q
	ld.Status.Replicas, ld.Status.ReadyReplicas = 2, 2
	ld.Status.Conditions = []metav1.Condition{{Type: "Available", Status: metav1.ConditionTrue, Reason: "Ready", Message: "2 of 2", LastTransitionTime: metav1.Now()}}
	if err := c.Status().Update(t.Context(), ld); err != nil {
		t.Fatal(err)
	}
}

// announce publishes a worker's announcement, as worker/loop does.
func announce(t *testing.T, natsURL, subject string, an loop.Announcement) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	data, err := json.Marshal(an)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(subject, data); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestDashboardShowsLoopsPodsAndEscapesUserData(t *testing.T) {
	w := newWorld(t)
	ld := w.loop("orders", w.natsURL)
	ctx := t.Context()
	for _, name := range []string{"orders-a", "orders-b", "orders-c"} {
		if err := w.client.Create(ctx, workerPod(name, "orders")); err != nil {
			t.Fatal(err)
		}
	}
	b := &corev1.Pod{}
	if err := w.client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "orders-b"}, b); err != nil {
		t.Fatal(err)
	}
	if _, err := requestDrain(ctx, &kube{client: w.client}, b, time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}
	reportDrained(t, w.client, "orders-b")
	c := &corev1.Pod{}
	if err := w.client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "orders-c"}, c); err != nil {
		t.Fatal(err)
	}
	if _, err := requestDrain(ctx, &kube{client: w.client}, c, time.Now(), 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	setQueueStatus(t, w.client, "orders", map[string]int64{"high": 17, "low": 4242}, 1)
	// A task whose payload and last error are hostile markup.
	if _, _, err := w.run("submit", "orders", "--kind", "resize", "--priority", "high", "--id", "evil", "--payload", `{"x": "</code><script>alert(2)</script>"}`); err != nil {
		t.Fatal(err)
	}
	failLastAttempt(t, w.js, queueNames(ld), "high", errors.New(`<script>alert(1)</script> & "quotes"`))
	if err := w.client.Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "orders.1", Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "LoopDeployment", Name: "orders", Namespace: "default"},
		Reason:         "ScaledUp", Message: "<b>scaled</b> to 3", Type: corev1.EventTypeNormal, Count: 1, LastTimestamp: metav1.Now(),
	}); err != nil {
		t.Fatal(err)
	}

	ds := startDashboard(t, w.cfg)
	announce(t, w.natsURL, queueNames(ld).StatusSubject(), loop.Announcement{Worker: "orders-a", At: time.Now(), Status: loop.Status{
		State: "Running", InFlightByKind: map[string]int{"resize": 2, "sleep": 1}, Breakers: map[string]string{"resize": "Open"},
		Counters: map[string]uint64{loop.OutcomeSucceeded: 10}}})

	status, body := ds.get("/")
	if status != http.StatusOK {
		t.Fatalf("overview: %d\n%s", status, body)
	}
	for _, want := range []string{`href="/loops/default/orders"`, ">4259<", "Available", `<script src="/static/dashboard.js" defer></script>`} {
		if !strings.Contains(body, want) {
			t.Errorf("the overview lacks %q:\n%s", want, body)
		}
	}

	body = ds.waitPage("/loops/default/orders", 20*time.Second, "the announcement and the dead letter on the page", func(b string) bool {
		return strings.Contains(b, "resize 2") && strings.Contains(b, "evil")
	})
	for _, want := range []string{
		`<tr data-pod="orders-a" class="state-running">`, `<tr data-pod="orders-b" class="state-drained">`,
		`<tr data-pod="orders-c" class="state-draining">`,
		`<td class="breaker-Open">Open</td>`, "ScaledUp", "&lt;b&gt;scaled&lt;/b&gt; to 3",
		"&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;", "&lt;/code&gt;&lt;script&gt;alert(2)&lt;/script&gt;",
		"Backlog per priority", "<polyline",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the loop page lacks %q:\n%s", want, body)
		}
	}
	// The drain of orders-c was asked seconds before the page was drawn:
	// how long it has drained and how long is left move with the clock.
	if !regexp.MustCompile(`draining for [0-9]+s, deadline in (10m|9m[0-9]+s)<`).MatchString(body) {
		t.Errorf("the loop page lacks orders-c's drain time and deadline (about 0s and 10m):\n%s", body)
	}
	if strings.Contains(body, "<script>alert") || strings.Contains(body, "<b>scaled") {
		t.Errorf("user data reached the page unescaped:\n%s", body)
	}
	// Only pods that are not draining yet have a drain button.
	if n := strings.Count(body, `class="drain"`); n != 1 {
		t.Errorf("%d drain buttons, want 1 (orders-a's)", n)
	}

	if status, _ := ds.get("/loops/default/nope"); status != http.StatusNotFound {
		t.Errorf("a missing LoopDeployment's page answered %d", status)
	}
	if status, body := ds.get("/static/dashboard.js"); status != http.StatusOK || !strings.Contains(body, "EventSource") {
		t.Errorf("the embedded script: %d %q", status, body)
	}
	req, _ := http.NewRequest(http.MethodGet, ds.srv.URL+"/", nil)
	req.Host = "evil.example:80"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a request for another host name: %v %v", resp, err)
	} else {
		_ = resp.Body.Close()
	}
}

func TestDashboardActionsGoThroughTheAPIWithAConfirmation(t *testing.T) {
	w := newWorld(t)
	ld := w.loop("orders", w.natsURL)
	ctx := t.Context()
	if err := w.client.Create(ctx, workerPod("orders-a", "orders")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.run("submit", "orders", "--kind", "resize", "--priority", "high", "--id", "poison"); err != nil {
		t.Fatal(err)
	}
	failLastAttempt(t, w.js, queueNames(ld), "high", errors.New("too large"))
	ds := startDashboard(t, w.cfg)
	ds.waitPage("/loops/default/orders", 20*time.Second, "the dead letter on the page", func(b string) bool { return strings.Contains(b, "poison") })
	form := func(kv ...string) url.Values {
		v := url.Values{"namespace": {"default"}, "name": {"orders"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	get := func() *loopsv1alpha1.LoopDeployment {
		l := &loopsv1alpha1.LoopDeployment{}
		if err := w.client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "orders"}, l); err != nil {
			t.Fatal(err)
		}
		return l
	}

	// Without the token nothing happens.
	if status, _, _ := ds.post(form("action", "scale", "replicas", "5", "csrf", "forged"), true); status != http.StatusForbidden {
		t.Errorf("an action without the CSRF token answered %d", status)
	}
	// The first post asks; only the confirmation acts.
	status, body, _ := ds.post(form("action", "scale", "replicas", "5"), false)
	if status != http.StatusOK || !strings.Contains(body, "Scale loopdeployment default/orders from 1 to 5 pods?") || !strings.Contains(body, `name="confirm" value="yes"`) {
		t.Fatalf("scale without confirmation: %d\n%s", status, body)
	}
	if r := get().Spec.Replicas; r != nil && *r == 5 {
		t.Fatal("scaled before the confirmation")
	}
	status, _, location := ds.post(form("action", "scale", "replicas", "5"), true)
	if status != http.StatusSeeOther || !strings.Contains(location, "scaled+to+5+pods") {
		t.Fatalf("scale: %d, Location %q", status, location)
	}
	if r := get().Spec.Replicas; r == nil || *r != 5 {
		t.Errorf("spec.replicas = %v after scaling to 5", r)
	}
	if _, body := ds.get(location); !strings.Contains(body, "scaled to 5 pods") {
		t.Errorf("the page after scaling does not say so:\n%s", body)
	}
	if status, body, _ := ds.post(form("action", "scale", "replicas", "-1"), true); status != http.StatusBadRequest || !strings.Contains(body, "at least 0") {
		t.Errorf("scale to -1: %d\n%s", status, body)
	}

	if status, _, _ := ds.post(form("action", "suspend"), true); status != http.StatusSeeOther || !get().Spec.Suspend {
		t.Errorf("suspend: %d, spec.suspend %v", status, get().Spec.Suspend)
	}
	if status, _, _ := ds.post(form("action", "resume"), true); status != http.StatusSeeOther || get().Spec.Suspend {
		t.Errorf("resume: %d, spec.suspend %v", status, get().Spec.Suspend)
	}

	if status, body, _ := ds.post(form("action", "drain", "pod", "orders-a"), true); status != http.StatusSeeOther {
		t.Errorf("drain: %d\n%s", status, body)
	}
	p := &corev1.Pod{}
	if err := w.client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "orders-a"}, p); err != nil || !contract.DrainRequested(p) {
		t.Errorf("orders-a is not asked to drain: %v %v", p.Annotations, err)
	}
	if status, _, _ := ds.post(form("action", "drain", "pod", "kube-apiserver"), true); status != http.StatusBadRequest {
		t.Errorf("draining a pod of no loop answered %d", status)
	}

	letters, err := readDeadLetters(ctx, mustQueue(t, ds, "orders"))
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters: %v %v", letters, err)
	}
	seq := fmt.Sprint(letters[0].Seq)
	if status, body, _ := ds.post(form("action", "requeue", "seq", seq), true); status != http.StatusSeeOther {
		t.Fatalf("requeue: %d\n%s", status, body)
	}
	if r := w.status("orders"); r.Queue.DeadLetters != 0 || pending(r, "high") != 1 {
		t.Errorf("after requeue: %d dead letters and %d pending in high, want 0 and 1", r.Queue.DeadLetters, pending(r, "high"))
	}
	if status, body, _ := ds.post(form("action", "requeue", "seq", seq), true); status == http.StatusSeeOther || !strings.Contains(body, "not found") {
		t.Errorf("requeueing it twice: %d\n%s", status, body)
	}

	status, _, location = ds.post(form("action", "submit", "kind", "sleep", "priority", "low", "payload", `{"ms": 5}`), true)
	if status != http.StatusSeeOther || !strings.Contains(location, "submitted+task") {
		t.Fatalf("submit: %d %q", status, location)
	}
	if got := pending(w.status("orders"), "low"); got != 1 {
		t.Errorf("low has %d pending after the test task, want 1", got)
	}
	if status, body, _ := ds.post(form("action", "submit", "kind", "sleep", "payload", `{nope`), true); status != http.StatusBadRequest || !strings.Contains(body, "not valid JSON") {
		t.Errorf("a test task that is not JSON: %d\n%s", status, body)
	}

	// A dead letter discarded is gone, and not queued.
	failLastAttempt(t, w.js, queueNames(ld), "low", errors.New("again"))
	letters, err = readDeadLetters(ctx, mustQueue(t, ds, "orders"))
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters: %v %v", letters, err)
	}
	if status, body, _ := ds.post(form("action", "discard", "seq", fmt.Sprint(letters[0].Seq)), true); status != http.StatusSeeOther {
		t.Fatalf("discard: %d\n%s", status, body)
	}
	if r := w.status("orders"); r.Queue.DeadLetters != 0 || pending(r, "low") != 0 {
		t.Errorf("after discard: %d dead letters and %d pending in low, want 0 and 0", r.Queue.DeadLetters, pending(r, "low"))
	}
}

func mustQueue(t *testing.T, ds *dash, name string) *loopQueue {
	t.Helper()
	st := ds.d.existing(client.ObjectKey{Namespace: "default", Name: name})
	if st == nil {
		t.Fatalf("no state for %s", name)
	}
	q, err := st.queue()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestDashboardShowsWhyTheAPIRefusedAnAction(t *testing.T) {
	w := newWorld(t)
	w.loop("orders", w.natsURL)
	ctx := t.Context()
	// viewer may read the loops, pods and events, but change nothing.
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "loops-viewer", Namespace: "default"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{loopsv1alpha1.GroupVersion.Group}, Resources: []string{"loopdeployments"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods", "events"}, Verbs: []string{"get", "list", "watch"}},
	}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "loops-viewer", Namespace: "default"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "loops-viewer"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "viewer"}}}
	for _, obj := range []client.Object{role, binding} {
		if err := w.client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(w.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "viewer"}
	ds := startDashboard(t, cfg)
	if status, body := ds.get("/loops/default/orders"); status != http.StatusOK {
		t.Fatalf("the viewer's page: %d\n%s", status, body)
	}
	status, body, _ := ds.post(url.Values{"action": {"scale"}, "namespace": {"default"}, "name": {"orders"}, "replicas": {"3"}}, true)
	if status != http.StatusForbidden || !strings.Contains(body, `User &#34;viewer&#34; cannot patch resource &#34;loopdeployments&#34;`) {
		t.Fatalf("scaling without the right: %d\n%s", status, body)
	}
}

// reCount finds a number in a rendered cell.
var reBacklog = regexp.MustCompile(`class="num backlog"[^>]*>(\d+)<`)

func TestDashboardLiveUpdatesComeFromWatchesWithoutLists(t *testing.T) {
	w := newWorld(t)
	w.loop("orders", w.natsURL)
	if err := w.client.Create(t.Context(), workerPod("orders-a", "orders")); err != nil {
		t.Fatal(err)
	}
	var counter requestCounter
	ds := startDashboard(t, counter.wrap(w.cfg))
	overview := ds.live("")
	page := ds.live("?namespace=default&name=orders")
	overview.next(t, 10*time.Second, "the first update", func(string) bool { return true })
	page.next(t, 10*time.Second, "the pod", func(u string) bool { return strings.Contains(u, `data-pod="orders-a"`) })

	// The queue connection reads its credentials and nothing else; wait
	// until it is up, so that what follows counts the page loads alone.
	mustQueueEventually(t, ds, "orders")
	before := counter.count()
	for range 20 {
		if status, _ := ds.get("/"); status != http.StatusOK {
			t.Fatal(status)
		}
		if status, _ := ds.get("/loops/default/orders"); status != http.StatusOK {
			t.Fatal(status)
		}
	}

	setQueueStatus(t, w.client, "orders", map[string]int64{"high": 1, "low": 777}, 0)
	_, took := overview.next(t, 5*time.Second, "the new backlog", func(u string) bool {
		m := reBacklog.FindStringSubmatch(u)
		return m != nil && m[1] == "778"
	})
	t.Logf("a status change reached the overview's live stream in %s", took)
	p := &corev1.Pod{}
	if err := w.client.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: "orders-a"}, p); err != nil {
		t.Fatal(err)
	}
	if _, err := requestDrain(t.Context(), &kube{client: w.client}, p, time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}
	_, took = page.next(t, 5*time.Second, "the pod draining", func(u string) bool {
		return strings.Contains(u, `<tr data-pod="orders-a" class="state-draining">`)
	})
	t.Logf("a drain request reached the loop page's live stream in %s", took)
	if n := counter.count() - before; n != 0 {
		counter.mu.Lock()
		t.Errorf("40 page loads and the live updates made %d requests to the API server besides the watches: %v", n, counter.reads[before:])
		counter.mu.Unlock()
	}
}

func mustQueueEventually(t *testing.T, ds *dash, name string) {
	t.Helper()
	waitUntil(t, 20*time.Second, "the queue connection of "+name, func() bool {
		st := ds.d.existing(client.ObjectKey{Namespace: "default", Name: name})
		if st == nil {
			return false
		}
		_, err := st.queue()
		return err == nil
	}, func() string { return "" })
}

// A queue that could not be reached is tried again at a change of its
// LoopDeployment, reconnectAfter after the last try at the earliest, and
// never twice at once.
func TestDashboardTriesAnUnreachableQueueAgainLater(t *testing.T) {
	now := time.Now()
	st := &loopState{tried: now, queueErr: "cannot reach NATS"}
	if st.retry(now.Add(reconnectAfter / 2)) {
		t.Error("tried again before reconnectAfter")
	}
	if !st.retry(now.Add(reconnectAfter)) {
		t.Fatal("not tried again after reconnectAfter")
	}
	if st.retry(now.Add(3 * reconnectAfter)) {
		t.Error("tried again while connecting")
	}
	st.connecting = false
	st.closed = true
	if st.retry(now.Add(4 * reconnectAfter)) {
		t.Error("tried again after the LoopDeployment was deleted")
	}
}

// `kubectl loops dashboard -A --no-browser` serves every namespace's loops
// on 127.0.0.1, prints its URL and stops when its context ends.
func TestDashboardCommandServesEveryNamespaceAndStops(t *testing.T) {
	w := newWorld(t)
	w.loop("orders", w.natsURL)
	ctx := t.Context()
	if err := w.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}}); err != nil {
		t.Fatal(err)
	}
	other := loopDeployment("invoices", w.natsURL)
	other.Namespace = "other"
	if err := w.client.Create(ctx, other); err != nil {
		t.Fatal(err)
	}

	out, printed := io.Pipe()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := newRootCommandWithClock(genericiooptions.IOStreams{In: strings.NewReader(""), Out: printed, ErrOut: io.Discard}, clock.RealClock{})
	cmd.SetArgs([]string{"dashboard", "-A", "--no-browser", "--kubeconfig", w.kubeconfig})
	done := make(chan error, 1)
	go func() {
		done <- cmd.ExecuteContext(runCtx)
		_ = printed.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the dashboard printed %q: %v (%v)", line, err, <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	rawURL, ok := strings.CutPrefix(line, "dashboard at ")
	if !ok || !strings.HasPrefix(rawURL, "http://127.0.0.1:") {
		t.Fatalf("the dashboard printed %q", line)
	}
	resp, err := http.Get(strings.Fields(rawURL)[0])
	status, body := (&dash{t: t}).read(resp, err)
	if status != http.StatusOK || !strings.Contains(body, "default/orders") || !strings.Contains(body, "other/invoices") || !strings.Contains(body, "all namespaces") {
		t.Errorf("the overview of every namespace: %d\n%s", status, body)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("the dashboard ended with %v", err)
	}
}

// TestDashboardShowsATasksResult: the result page of a task shows its
// record and the result its handler set (escaped), the last error of a
// task that failed for good, or why there is nothing, as `kubectl loops
// result` does.
func TestDashboardShowsATasksResult(t *testing.T) {
	w := newWorld(t)
	ld := w.loop("orders", w.natsURL)
	names := queueNames(ld)
	for _, id := range []string{"ok", "bad"} {
		if _, _, err := w.run("submit", "orders", "--kind", "sleep", "--priority", "low", "--id", id); err != nil {
			t.Fatal(err)
		}
	}
	consumer, err := w.js.Consumer(t.Context(), names.Stream, names.Consumer("low"))
	if err != nil {
		t.Fatal(err)
	}
	for handled := 0; handled < 2; {
		batch, err := consumer.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			d, err := queue.NewDelivery(m, 1, "low")
			if err != nil {
				t.Fatal(err)
			}
			if d.ID == "bad" {
				err = d.DeadLetter(t.Context(), w.js, names, errors.New("<b>boom</b>"))
			} else {
				d.Result = []byte("<script>done</script>")
				if err = d.RecordResult(t.Context(), w.js, names, "test-worker", time.Millisecond); err == nil {
					err = d.Msg.DoubleAck(t.Context())
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			handled++
		}
	}
	ds := startDashboard(t, w.cfg)
	mustQueueEventually(t, ds, "orders")
	for _, tc := range []struct {
		id, want string
	}{
		{"ok", "Completed (kind sleep, priority low) on attempt 1 (delivery 1) in 1ms by test-worker"},
		{"bad", "Failed for good (kind sleep) on attempt 1: &lt;b&gt;boom&lt;/b&gt;"},
		{"never", "No record of task never"},
	} {
		status, body := ds.get("/loops/default/orders/result?id=" + tc.id)
		if status != http.StatusOK || !strings.Contains(body, tc.want) {
			t.Errorf("result of %s: %d, want %q in\n%s", tc.id, status, tc.want, body)
		}
	}
	if _, body := ds.get("/loops/default/orders/result?id=ok"); !strings.Contains(body, "&lt;script&gt;done&lt;/script&gt;") || strings.Contains(body, "<script>done") {
		t.Errorf("the result is not shown escaped:\n%s", body)
	}
	if status, _ := ds.get("/loops/default/orders/result"); status != http.StatusBadRequest {
		t.Errorf("a result page without an id answered %d", status)
	}
}
