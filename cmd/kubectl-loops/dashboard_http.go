package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/loopclient"
)

// minUpdateGap is the least time between two live updates of one page: a
// burst of changes (200 workers announcing) makes one update per gap.
const minUpdateGap = 150 * time.Millisecond

func (d *dashboard) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.serveOverview)
	mux.HandleFunc("GET /loops/{namespace}/{name}", d.serveLoop)
	mux.HandleFunc("GET /loops/{namespace}/{name}/result", d.serveResult)
	mux.HandleFunc("GET /live", d.serveLive)
	mux.HandleFunc("POST /action", d.serveAction)
	mux.Handle("GET /static/", staticFiles())
	return d.guard(mux)
}

// guard refuses requests whose Host is not a loopback name (a web page
// elsewhere rebinding its DNS name to 127.0.0.1) and sets headers that
// keep the pages from being framed or from running other scripts.
func (d *dashboard) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			http.Error(w, "the dashboard answers on a loopback address only", http.StatusForbidden)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func (d *dashboard) serveOverview(w http.ResponseWriter, r *http.Request) {
	v, err := d.overview(r.Context())
	if err != nil {
		d.fail(w, err)
		return
	}
	render(w, http.StatusOK, "overview", v)
}

func (d *dashboard) serveLoop(w http.ResponseWriter, r *http.Request) {
	v, err := d.loopPage(r.Context(), client.ObjectKey{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")})
	if err != nil {
		d.fail(w, err)
		return
	}
	v.Done = r.URL.Query().Get("done")
	render(w, http.StatusOK, "loop", v)
}

// taskView is the page of one task's result (?id=).
type taskView struct {
	Namespace, Name, ID string
	// Found is false when the task has no record (yet, or any more).
	Found                    bool
	Failed                   bool
	Kind, Priority, Worker   string
	Attempts, Deliveries     uint64
	Duration, Finished, Err  string
	Payload                  string
	PayloadBinary, Retention string
}

// serveResult shows how a task ended, as `kubectl loops result` does:
// its result record and the result its handler set, or its last error.
func (d *dashboard) serveResult(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ld, err := d.cachedLoop(ctx, client.ObjectKey{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")})
	if err != nil {
		d.fail(w, err)
		return
	}
	v := taskView{Namespace: ld.Namespace, Name: ld.Name, ID: strings.TrimSpace(r.URL.Query().Get("id"))}
	qs := contract.QueueOf(ld)
	v.Retention = qs.ResultRetention.String()
	a := &action{Namespace: ld.Namespace, Name: ld.Name}
	if v.ID == "" {
		d.actionFailed(w, a, fmt.Errorf("%w: give the task's id", errBadRequest))
		return
	}
	_, q, err := d.queueOf(ld)
	if err != nil {
		d.actionFailed(w, a, err)
		return
	}
	c, err := loopclient.New(q.js, qs)
	if err != nil {
		d.actionFailed(w, a, err)
		return
	}
	res, err := lookupResult(ctx, c, v.ID)
	failed, isFailed := errors.AsType[*loopclient.FailedError](err)
	switch {
	case isFailed:
		v.Found, v.Failed, v.Kind, v.Attempts, v.Err = true, true, failed.Kind, failed.Attempts, failed.Err
	case errors.Is(err, loopclient.ErrNoResult):
	case err != nil:
		d.actionFailed(w, a, err)
		return
	default:
		v.Found, v.Kind, v.Priority, v.Worker = true, res.Kind, res.Priority, res.Worker
		v.Attempts, v.Deliveries, v.Duration, v.Finished = res.Attempts, res.Deliveries, res.Duration.String(), res.Finished.Format(time.RFC3339)
		if utf8.Valid(res.Payload) {
			v.Payload = string(res.Payload)
		} else {
			v.PayloadBinary = fmt.Sprintf("%d bytes, not UTF-8", len(res.Payload))
		}
	}
	render(w, http.StatusOK, "task", v)
}

// serveLive streams the live part of a page as server-sent events: one at
// once, then one after each change the watches or the announcements
// bring (?namespace=&name= for a LoopDeployment's page, none for the
// overview).
func (d *dashboard) serveLive(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	key := client.ObjectKey{Namespace: r.URL.Query().Get("namespace"), Name: r.URL.Query().Get("name")}
	if (key.Name == "") != (key.Namespace == "") {
		http.Error(w, "give both namespace and name, or neither", http.StatusBadRequest)
		return
	}
	sub, unsubscribe := d.hub.subscribe(key)
	defer unsubscribe()
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	gap := time.NewTimer(0)
	defer gap.Stop()
	for {
		if err := d.writeLive(ctx, w, key); err != nil {
			d.log.V(1).Info("live update ended", "error", err.Error())
			return
		}
		flusher.Flush()
		gap.Reset(minUpdateGap)
		select {
		case <-ctx.Done():
			return
		case <-gap.C:
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-sub.c:
			if !ok {
				return
			}
		}
	}
}

func (d *dashboard) writeLive(ctx context.Context, w http.ResponseWriter, key client.ObjectKey) error {
	var buf bytes.Buffer
	var err error
	if key.Name == "" {
		var v *overviewView
		if v, err = d.overview(ctx); err == nil {
			err = pages["overview"].ExecuteTemplate(&buf, "live", v)
		}
	} else {
		var v *loopView
		if v, err = d.loopPage(ctx, key); err == nil {
			err = pages["loop"].ExecuteTemplate(&buf, "live", v)
		}
	}
	if err != nil {
		buf.Reset()
		buf.WriteString(`<p class="error">` + template.HTMLEscapeString(err.Error()) + `</p>`)
	}
	var out strings.Builder
	out.WriteString("event: update\n")
	for line := range strings.SplitSeq(buf.String(), "\n") {
		out.WriteString("data: " + strings.TrimSuffix(line, "\r") + "\n")
	}
	out.WriteString("\n")
	_, werr := w.Write([]byte(out.String()))
	return werr
}

// The actions, as their forms name them.
const (
	actScale   = "scale"
	actSuspend = "suspend"
	actResume  = "resume"
	actDrain   = "drain"
	actRequeue = "requeue"
	actDiscard = "discard"
	actSubmit  = "submit"
)

// action is a request to change something, as its form posts it.
type action struct {
	Kind      string // scale, suspend, resume, drain, requeue, discard, submit
	Namespace string
	Name      string
	Replicas  string
	Pod       string
	Seq       string
	TaskKind  string
	Priority  string
	Payload   string
	Question  string
	CSRF      string
}

func (a *action) values() url.Values {
	return url.Values{"action": {a.Kind}, "namespace": {a.Namespace}, "name": {a.Name}, "replicas": {a.Replicas}, "pod": {a.Pod},
		"seq": {a.Seq}, "kind": {a.TaskKind}, "priority": {a.Priority}, "payload": {a.Payload}}
}

// Fields are the form fields the confirmation posts again.
func (a *action) Fields() []struct{ Name, Value string } {
	var out []struct{ Name, Value string }
	for _, k := range []string{"action", "namespace", "name", "replicas", "pod", "seq", "kind", "priority", "payload"} {
		if v := a.values().Get(k); v != "" {
			out = append(out, struct{ Name, Value string }{k, v})
		}
	}
	return out
}

type resultView struct {
	Namespace, Name, Message string
	Status                   int
}

// serveAction asks for a confirmation of an action, then carries it out
// with the user's credentials. Every action needs the page's CSRF token.
func (d *dashboard) serveAction(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(d.csrf)) != 1 {
		http.Error(w, "missing or wrong CSRF token: reload the dashboard", http.StatusForbidden)
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" && origin != "null" {
		if u, err := url.Parse(origin); err != nil || u.Host != r.Host {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
	}
	f := r.PostForm
	a := &action{Kind: f.Get("action"), Namespace: f.Get("namespace"), Name: f.Get("name"), Replicas: f.Get("replicas"),
		Pod: f.Get("pod"), Seq: f.Get("seq"), TaskKind: f.Get("kind"), Priority: f.Get("priority"), Payload: f.Get("payload"), CSRF: d.csrf}
	ctx := r.Context()
	ld, err := d.cachedLoop(ctx, client.ObjectKey{Namespace: a.Namespace, Name: a.Name})
	if err != nil {
		d.fail(w, err)
		return
	}
	question, err := d.question(ctx, ld, a)
	if err != nil {
		d.actionFailed(w, a, err)
		return
	}
	if f.Get("confirm") != "yes" {
		a.Question = question
		render(w, http.StatusOK, "confirm", a)
		return
	}
	done, err := d.act(ctx, ld, a)
	if err != nil {
		d.log.Info("action failed", "action", a.Kind, "loopdeployment", a.Namespace+"/"+a.Name, "error", err.Error())
		d.actionFailed(w, a, err)
		return
	}
	d.log.Info("action done", "action", a.Kind, "loopdeployment", a.Namespace+"/"+a.Name, "result", done)
	http.Redirect(w, r, "/loops/"+url.PathEscape(a.Namespace)+"/"+url.PathEscape(a.Name)+"?done="+url.QueryEscape(done), http.StatusSeeOther)
}

// errBadRequest marks what the user gave wrong.
var errBadRequest = errors.New("bad request")

// question checks an action's fields and says what it will do.
func (d *dashboard) question(ctx context.Context, ld *loopsv1alpha1.LoopDeployment, a *action) (string, error) {
	ref := "loopdeployment " + ld.Namespace + "/" + ld.Name
	switch a.Kind {
	case actScale:
		n, err := strconv.ParseInt(a.Replicas, 10, 32)
		if err != nil || n < 0 {
			return "", fmt.Errorf("%w: replicas must be a whole number of at least 0, not %q", errBadRequest, a.Replicas)
		}
		return fmt.Sprintf("Scale %s from %d to %d pods? Pods scaled away drain first: no task is lost.", ref, ptr.Deref(ld.Spec.Replicas, 1), n), nil
	case actSuspend:
		return fmt.Sprintf("Suspend %s? Every pod drains and none starts until it is resumed; tasks wait in the queue.", ref), nil
	case actResume:
		return fmt.Sprintf("Resume %s?", ref), nil
	case actDrain:
		p, err := d.loopPod(ctx, ld, a.Pod)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Drain pod %s of %s? It finishes its tasks within %s, hands back the rest and is replaced.", p.Name, ref, drainTimeoutOf(ld)), nil
	case actRequeue, actDiscard:
		if _, err := strconv.ParseUint(a.Seq, 10, 64); err != nil {
			return "", fmt.Errorf("%w: no dead letter %q", errBadRequest, a.Seq)
		}
		if a.Kind == actRequeue {
			return fmt.Sprintf("Send dead letter %s of %s back to its queue?", a.Seq, ref), nil
		}
		return fmt.Sprintf("Discard dead letter %s of %s for good?", a.Seq, ref), nil
	case actSubmit:
		if a.TaskKind == "" {
			return "", fmt.Errorf("%w: a test task needs a kind", errBadRequest)
		}
		if _, err := (&submitOptions{payload: a.Payload}).readPayload([]string{ld.Name}, nil); err != nil {
			return "", fmt.Errorf("%w: %w", errBadRequest, err)
		}
		return fmt.Sprintf("Submit a %s task to %s?", a.TaskKind, ref), nil
	}
	return "", fmt.Errorf("%w: unknown action %q", errBadRequest, a.Kind)
}

// act carries out a confirmed action and says what it did.
func (d *dashboard) act(ctx context.Context, ld *loopsv1alpha1.LoopDeployment, a *action) (string, error) {
	k := &kube{config: d.k.config, client: d.k.client, namespace: ld.Namespace}
	switch a.Kind {
	case actScale:
		n, _ := strconv.ParseInt(a.Replicas, 10, 32)
		if err := d.patchSpec(ctx, ld, fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)); err != nil {
			return "", err
		}
		return fmt.Sprintf("scaled to %d pods", n), nil
	case actSuspend, actResume:
		if err := d.patchSpec(ctx, ld, fmt.Sprintf(`{"spec":{"suspend":%t}}`, a.Kind == actSuspend)); err != nil {
			return "", err
		}
		return a.Kind + "d", nil
	case actDrain:
		p, err := d.loopPod(ctx, ld, a.Pod)
		if err != nil {
			return "", err
		}
		already, err := requestDrain(ctx, k, p, d.o.clock.Now(), drainTimeoutOf(ld))
		if err != nil {
			return "", err
		}
		if already {
			return "pod " + p.Name + " is already draining", nil
		}
		return fmt.Sprintf("pod %s drain requested (deadline in %s)", p.Name, drainTimeoutOf(ld)), nil
	case actRequeue, actDiscard:
		st, q, err := d.queueOf(ld)
		if err != nil {
			return "", err
		}
		seq, _ := strconv.ParseUint(a.Seq, 10, 64)
		dl, err := deadLetterAt(ctx, q, seq)
		if err != nil {
			return "", err
		}
		if a.Kind == actRequeue {
			err = requeueDeadLetter(ctx, q, dl)
		} else {
			err = discardDeadLetter(ctx, q, dl)
		}
		st.mu.Lock()
		st.deadStale = true
		st.mu.Unlock()
		d.hub.publish(st.key)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("dead letter %s (%s) %sd", dl.ID, dl.Kind, a.Kind), nil
	case actSubmit:
		_, q, err := d.queueOf(ld)
		if err != nil {
			return "", err
		}
		payload, err := (&submitOptions{payload: a.Payload}).readPayload([]string{ld.Name}, nil)
		if err != nil {
			return "", err
		}
		producer, err := loopclient.New(q.js, contract.QueueOf(ld))
		if err != nil {
			return "", err
		}
		receipt, err := producer.Submit(ctx, loopclient.Task{ID: taskIDs("", 1)[0], Kind: a.TaskKind, Priority: a.Priority, Payload: payload})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("submitted task %s (kind %s)", receipt.ID, a.TaskKind), nil
	}
	return "", fmt.Errorf("%w: unknown action %q", errBadRequest, a.Kind)
}

// queueOf returns a LoopDeployment's state and open queue connection.
func (d *dashboard) queueOf(ld *loopsv1alpha1.LoopDeployment) (*loopState, *loopQueue, error) {
	st := d.existing(client.ObjectKeyFromObject(ld))
	if st == nil {
		return nil, nil, errors.New("the queue is not reachable yet")
	}
	q, err := st.queue()
	return st, q, err
}

func (d *dashboard) patchSpec(ctx context.Context, ld *loopsv1alpha1.LoopDeployment, patch string) error {
	target := &loopsv1alpha1.LoopDeployment{}
	target.Namespace, target.Name = ld.Namespace, ld.Name
	if err := d.k.client.Patch(ctx, target, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		return fmt.Errorf("patching loopdeployment %s/%s: %w", ld.Namespace, ld.Name, err)
	}
	return nil
}

// loopPod returns a pod of the LoopDeployment from the cache.
func (d *dashboard) loopPod(ctx context.Context, ld *loopsv1alpha1.LoopDeployment, name string) (*corev1.Pod, error) {
	p := &corev1.Pod{}
	if err := d.cache.Get(ctx, client.ObjectKey{Namespace: ld.Namespace, Name: name}, p); err != nil || p.Labels[loopsv1alpha1.LabelName] != ld.Name {
		return nil, fmt.Errorf("%w: loopdeployment %s has no pod %q", errBadRequest, ld.Name, name)
	}
	return p.DeepCopy(), nil
}

// actionFailed shows why an action failed: the API server's own message
// (Forbidden names the verb and resource the user lacks) with its status.
func (d *dashboard) actionFailed(w http.ResponseWriter, a *action, err error) {
	status := http.StatusBadGateway
	var apiStatus apierrors.APIStatus
	switch {
	case errors.As(err, &apiStatus) && apiStatus.Status().Code != 0:
		status = int(apiStatus.Status().Code)
	case errors.Is(err, errBadRequest):
		status = http.StatusBadRequest
	}
	render(w, status, "result", resultView{Namespace: a.Namespace, Name: a.Name, Message: err.Error(), Status: status})
}

func (d *dashboard) fail(w http.ResponseWriter, err error) {
	var missing errNoLoop
	if errors.As(err, &missing) {
		render(w, http.StatusNotFound, "result", resultView{Message: err.Error(), Status: http.StatusNotFound})
		return
	}
	render(w, http.StatusInternalServerError, "result", resultView{Message: err.Error(), Status: http.StatusInternalServerError})
}
