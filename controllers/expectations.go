package controllers

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/tenire/loop-operator/api/v1alpha1/contract"
)

// ExpectationTimeout is how long the reconciler waits for its informer
// cache to show a pod it created or asked to drain before it stops waiting
// (a watch event lost for good, or a pod deleted before the cache saw it).
const ExpectationTimeout = time.Minute

// expectationRecheck is how soon a reconcile that waits for its cache
// looks again.
const expectationRecheck = time.Second

// expectKind is the change the reconciler made to a pod and waits to see.
type expectKind int

const (
	// expectCreated: the pod was created; the cache must list it.
	expectCreated expectKind = iota
	// expectDrainRequested: the pod was asked to drain; the cache must show
	// the annotations (or no pod any more).
	expectDrainRequested
	// expectDeleted: the pod was deleted; the cache must show it
	// terminating or no pod any more.
	expectDeleted
)

type expectation struct {
	kind expectKind
	at   time.Time
}

// expectations remembers, per LoopDeployment, the pod changes the
// reconciler made that its cache may not show yet. While one is unmet the
// reconciler neither creates pods nor starts drains, so a lagging cache can
// neither overshoot replicas, remove a pod twice over, nor exceed
// maxConcurrent. It is memory only:
// a new process starts with a freshly listed cache and nothing to wait for.
type expectations struct {
	clock clock.PassiveClock
	mu    sync.Mutex
	m     map[types.NamespacedName]map[string]expectation
}

func newExpectations(clk clock.PassiveClock) *expectations {
	return &expectations{clock: clk, m: map[types.NamespacedName]map[string]expectation{}}
}

// expect records that pod of key was changed by kind.
func (e *expectations) expect(key types.NamespacedName, pod string, kind expectKind) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m[key] == nil {
		e.m[key] = map[string]expectation{}
	}
	e.m[key][pod] = expectation{kind: kind, at: e.clock.Now()}
}

// met drops the expectations of key that pods (the cache's view) meets or
// that expired, and reports whether none is left; when some are, retry is
// when the oldest of them expires.
func (e *expectations) met(key types.NamespacedName, pods []*corev1.Pod) (ok bool, retry time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pending := e.m[key]
	if len(pending) == 0 {
		return true, 0
	}
	byName := make(map[string]*corev1.Pod, len(pods))
	for _, p := range pods {
		byName[p.Name] = p
	}
	now := e.clock.Now()
	for name, x := range pending {
		p, found := byName[name]
		done := false
		switch x.kind {
		case expectCreated:
			done = found
		case expectDrainRequested:
			done = !found || contract.DrainRequested(p) || p.DeletionTimestamp != nil
		case expectDeleted:
			done = !found || p.DeletionTimestamp != nil
		}
		if expired := now.Sub(x.at) >= ExpectationTimeout; done || expired {
			delete(pending, name)
			continue
		}
		if left := ExpectationTimeout - now.Sub(x.at); retry == 0 || left < retry {
			retry = left
		}
	}
	if len(pending) == 0 {
		delete(e.m, key)
		return true, 0
	}
	return false, retry
}

// forget drops every expectation of key (the LoopDeployment is gone).
func (e *expectations) forget(key types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
