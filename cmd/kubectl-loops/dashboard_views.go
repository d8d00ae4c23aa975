package main

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	assets "github.com/tenire/loop-operator/cmd/kubectl-loops/dashboard"
)

// pages are the dashboard's templates: each page's set holds the layout,
// the partials and the page, whose "live" template is the part that live
// updates replace.
var pages = func() map[string]*template.Template {
	base := template.Must(template.New("").Funcs(template.FuncMap{
		"join": strings.Join,
	}).ParseFS(assets.Files, "templates/layout.html"))
	m := map[string]*template.Template{}
	for _, page := range []string{"overview", "loop", "confirm", "result", "task"} {
		m[page] = template.Must(template.Must(base.Clone()).ParseFS(assets.Files, "templates/"+page+".html"))
	}
	return m
}()

// loopRow is a LoopDeployment's line of the overview, and the head of its page.
type loopRow struct {
	Namespace, Name                          string
	Desired, Current, Ready, Draining        int32
	Suspended                                bool
	Backlog, InFlight, DeadLetters           int64
	QueueObserved                            string
	Rate, ErrorRate                          string
	Conditions                               []metav1.Condition
	QueueErr                                 string
	Priorities                               []string
	DrainTimeout                             time.Duration
	Revision, UpdateRevision, ObservedStatus string
}

type overviewView struct {
	Scope string
	Loops []loopRow
	CSRF  string
}

type loopView struct {
	loopRow
	CSRF     string
	Pods     []podRow
	Breakers []breakerRow
	Letters  []deadLetterRow
	DeadErr  string
	Events   []eventRow
	Charts   []chart
	Done     string
}

type podRow struct {
	Name, Phase, State, StateClass, Revision, Loop, InFlight, Kinds, Age string
	Ready, CanDrain                                                      bool
	Restarts                                                             int32
}

type breakerRow struct {
	Kind, State string
	Workers     []string
}

type deadLetterRow struct {
	deadLetter
	Payload string
}

type eventRow struct {
	Type, Reason, Object, Message, Age string
	Count                              int32
}

// chart is a line chart drawn as SVG on the server.
type chart struct {
	Title, Unit string
	Max         string
	Width       int
	Height      int
	Series      []series
	Span        string
}

type series struct {
	Name, Color, Points string
}

const maxEvents = 25

// rateStep is the least span of one point of the rate charts: workers
// announce every 2 s, so shorter spans would show their rhythm.
const rateStep = 5 * time.Second

var palette = []string{"#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2"}

// row describes a LoopDeployment from the cache and its state.
func (d *dashboard) row(ld *loopsv1alpha1.LoopDeployment, st *loopState) loopRow {
	s := ld.Status
	r := loopRow{
		Namespace: ld.Namespace, Name: ld.Name, Desired: ptr.Deref(ld.Spec.Replicas, 1), Current: s.Replicas,
		Ready: s.ReadyReplicas, Draining: s.DrainingReplicas, Suspended: ld.Spec.Suspend, Conditions: s.Conditions,
		Priorities: priorities(ld), DrainTimeout: drainTimeoutOf(ld), Revision: orNone(s.CurrentRevision), UpdateRevision: orNone(s.UpdateRevision),
		Rate: "–", ErrorRate: "–", QueueObserved: "never",
	}
	if q := s.Queue; q != nil {
		r.Backlog, r.InFlight, r.DeadLetters = q.Pending, q.InFlight, q.DeadLetters
		if q.ObservedTime != nil {
			r.QueueObserved = since(q.ObservedTime.Time, time.Now()) + " ago"
		}
	}
	if st != nil {
		st.mu.Lock()
		r.QueueErr = st.queueErr
		if rate, errRate, ok := rates(st.history, time.Minute); ok {
			r.Rate, r.ErrorRate = fmt.Sprintf("%.1f/s", rate), fmt.Sprintf("%.1f/s", errRate)
		}
		st.mu.Unlock()
	}
	return r
}

// rates are the tasks that ended and the failed attempts per second over
// the last span of the history (or what there is of it).
func rates(h []sample, span time.Duration) (rate, errRate float64, ok bool) {
	if len(h) < 2 {
		return 0, 0, false
	}
	last := h[len(h)-1]
	first := h[0]
	for _, s := range h {
		if last.At.Sub(s.At) <= span {
			first = s
			break
		}
	}
	dt := last.At.Sub(first.At).Seconds()
	if dt <= 0 {
		return 0, 0, false
	}
	return float64(last.Done-first.Done) / dt, float64(last.Failed-first.Failed) / dt, true
}

// listLoops lists the LoopDeployments from the cache, by namespace and name.
func (d *dashboard) listLoops(ctx context.Context) ([]loopsv1alpha1.LoopDeployment, error) {
	var list loopsv1alpha1.LoopDeploymentList
	if err := d.cache.List(ctx, &list); err != nil {
		return nil, err
	}
	sort.Slice(list.Items, func(i, j int) bool {
		a, b := list.Items[i], list.Items[j]
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
	})
	return list.Items, nil
}

func (d *dashboard) overview(ctx context.Context) (*overviewView, error) {
	items, err := d.listLoops(ctx)
	if err != nil {
		return nil, err
	}
	v := &overviewView{Scope: "namespace " + d.namespace, CSRF: d.csrf}
	if d.namespace == "" {
		v.Scope = "all namespaces"
	}
	for i := range items {
		v.Loops = append(v.Loops, d.row(&items[i], d.existing(client.ObjectKeyFromObject(&items[i]))))
	}
	return v, nil
}

// errNoLoop is a LoopDeployment the cache does not hold.
type errNoLoop struct{ key client.ObjectKey }

func (e errNoLoop) Error() string {
	return fmt.Sprintf("loopdeployment %s not found (or outside this dashboard's namespaces)", e.key)
}

func (d *dashboard) cachedLoop(ctx context.Context, key client.ObjectKey) (*loopsv1alpha1.LoopDeployment, error) {
	if d.namespace != "" && key.Namespace != d.namespace {
		return nil, errNoLoop{key}
	}
	ld := &loopsv1alpha1.LoopDeployment{}
	if err := d.cache.Get(ctx, key, ld); err != nil {
		return nil, errNoLoop{key}
	}
	return ld, nil
}

func (d *dashboard) loopPage(ctx context.Context, key client.ObjectKey) (*loopView, error) {
	ld, err := d.cachedLoop(ctx, key)
	if err != nil {
		return nil, err
	}
	st := d.existing(key)
	v := &loopView{loopRow: d.row(ld, st), CSRF: d.csrf}
	now := d.o.clock.Now()

	var pods corev1.PodList
	if err := d.cache.List(ctx, &pods, client.InNamespace(ld.Namespace), client.MatchingLabels{loopsv1alpha1.LabelName: ld.Name}); err != nil {
		return nil, err
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	var anns *announcements
	if st != nil {
		st.mu.Lock()
		anns = st.ann
		st.mu.Unlock()
	}
	names := map[string]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		names[p.Name] = true
		pr := describePod(p, d.o.clock)
		row := podRow{Name: p.Name, Phase: pr.Phase, Ready: pr.Ready, State: pr.State, StateClass: strings.Fields(pr.State + " ")[0],
			Revision: pr.Revision, Restarts: pr.Restarts, Age: since(pr.Created, now), InFlight: "–",
			CanDrain: !contract.DrainRequested(p) && p.DeletionTimestamp == nil}
		if anns != nil {
			if an, ok := anns.get(p.Name); ok {
				n := 0
				var kinds []string
				for kind, c := range an.Status.InFlightByKind {
					n += c
					if c > 0 {
						kinds = append(kinds, kind+" "+strconv.Itoa(c))
					}
				}
				slices.Sort(kinds)
				row.InFlight, row.Kinds, row.Loop = strconv.Itoa(n), strings.Join(kinds, ", "), an.Status.State
			}
		}
		v.Pods = append(v.Pods, row)
	}
	if anns != nil {
		v.Breakers = breakers(anns, names)
	}
	if st != nil {
		letters, derr := st.deadLetters(ctx)
		v.DeadErr = derr
		for _, dl := range letters {
			v.Letters = append(v.Letters, deadLetterRow{deadLetter: dl, Payload: clip(string(dl.payload), 200)})
		}
		st.mu.Lock()
		v.Charts = charts(st.history, v.Priorities, now)
		st.mu.Unlock()
	}
	v.Events, err = d.events(ctx, ld, names, now)
	return v, err
}

// breakers gathers the circuit breakers the live workers announced, by kind.
func breakers(anns *announcements, live map[string]bool) []breakerRow {
	byKind := map[string]map[string][]string{}
	for _, an := range anns.all() {
		if !live[an.Worker] {
			continue
		}
		for kind, state := range an.Status.Breakers {
			if byKind[kind] == nil {
				byKind[kind] = map[string][]string{}
			}
			byKind[kind][state] = append(byKind[kind][state], an.Worker)
		}
	}
	var rows []breakerRow
	for kind, states := range byKind {
		for state, workers := range states {
			slices.Sort(workers)
			rows = append(rows, breakerRow{Kind: kind, State: state, Workers: workers})
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		return rows[i].Kind < rows[j].Kind || (rows[i].Kind == rows[j].Kind && rows[i].State < rows[j].State)
	})
	return rows
}

// events are the cached events of a LoopDeployment and of its pods, the
// latest first.
func (d *dashboard) events(ctx context.Context, ld *loopsv1alpha1.LoopDeployment, pods map[string]bool, now time.Time) ([]eventRow, error) {
	var list corev1.EventList
	if err := d.cache.List(ctx, &list, client.InNamespace(ld.Namespace)); err != nil {
		return nil, err
	}
	var mine []corev1.Event
	for _, e := range list.Items {
		io := e.InvolvedObject
		if (io.Kind == "LoopDeployment" && io.Name == ld.Name) || (io.Kind == "Pod" && pods[io.Name]) {
			mine = append(mine, e)
		}
	}
	last := func(e *corev1.Event) time.Time {
		switch {
		case !e.LastTimestamp.IsZero():
			return e.LastTimestamp.Time
		case !e.EventTime.IsZero():
			return e.EventTime.Time
		}
		return e.CreationTimestamp.Time
	}
	sort.Slice(mine, func(i, j int) bool { return last(&mine[i]).After(last(&mine[j])) })
	var rows []eventRow
	for i := range mine {
		if i == maxEvents {
			break
		}
		e := &mine[i]
		rows = append(rows, eventRow{Type: e.Type, Reason: e.Reason, Object: strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name,
			Message: e.Message, Age: since(last(e), now), Count: max(e.Count, 1)})
	}
	return rows, nil
}

// charts draws the history: the backlog per priority, the task rate and
// failed attempts, and the mean time a task spends in a worker (tasks
// held ÷ tasks ending per second, Little's law).
func charts(h []sample, classes []string, now time.Time) []chart {
	// The charts span the history there is: since the dashboard started,
	// up to historyWindow.
	start := now.Add(-historyWindow)
	if len(h) > 0 && h[0].At.After(start) {
		start = h[0].At
	}
	backlog := chart{Title: "Backlog per priority", Unit: "tasks"}
	lines := make([][]point, 0, len(classes))
	for i, class := range classes {
		var pts []point
		for _, s := range h {
			if v, ok := s.Pending[class]; ok {
				pts = append(pts, point{s.At, float64(v)})
			}
		}
		if n := len(pts); n > 0 {
			pts = append(pts, point{now, pts[n-1].v}) // the backlog holds until the next status
		}
		lines = append(lines, pts)
		backlog.Series = append(backlog.Series, series{Name: class, Color: palette[i%len(palette)]})
	}
	backlog.draw(lines, start, now)

	rate := chart{Title: "Task rate", Unit: "per second",
		Series: []series{{Name: "ended", Color: palette[2]}, {Name: "failed attempts", Color: palette[1]}}}
	latency := chart{Title: "Time in a worker (in flight ÷ rate)", Unit: "seconds", Series: []series{{Name: "mean", Color: palette[4]}}}
	var ended, failed, lat []point
	prev := 0
	for i := 1; i < len(h); i++ {
		dt := h[i].At.Sub(h[prev].At).Seconds()
		if dt < rateStep.Seconds() {
			continue
		}
		r := float64(h[i].Done-h[prev].Done) / dt
		ended = append(ended, point{h[i].At, r})
		failed = append(failed, point{h[i].At, float64(h[i].Failed-h[prev].Failed) / dt})
		if r > 0 {
			lat = append(lat, point{h[i].At, float64(h[i].InFlight) / r})
		}
		prev = i
	}
	rate.draw([][]point{ended, failed}, start, now)
	latency.draw([][]point{lat}, start, now)
	return []chart{backlog, rate, latency}
}

type point struct {
	at time.Time
	v  float64
}

const chartW, chartH = 360, 120

// draw sets the chart's polylines, scaled to the largest value.
func (c *chart) draw(lines [][]point, start, now time.Time) {
	span := max(now.Sub(start), time.Second)
	c.Width, c.Height, c.Span = chartW, chartH, "last "+duration.HumanDuration(span)
	peak := 0.0
	for _, l := range lines {
		for _, p := range l {
			peak = math.Max(peak, p.v)
		}
	}
	if peak == 0 {
		peak = 1
	}
	c.Max = strconv.FormatFloat(peak, 'g', 3, 64)
	for i, l := range lines {
		var b strings.Builder
		for _, p := range l {
			x := float64(chartW) * p.at.Sub(start).Seconds() / span.Seconds()
			y := float64(chartH) - float64(chartH)*p.v/peak
			fmt.Fprintf(&b, "%.1f,%.1f ", math.Max(x, 0), y)
		}
		c.Series[i].Points = strings.TrimSpace(b.String())
	}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// render writes a whole page.
func render(w http.ResponseWriter, status int, page string, data any) {
	var buf bytes.Buffer
	if err := pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		http.Error(w, "rendering the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// staticFiles serves the embedded stylesheet and script.
func staticFiles() http.Handler {
	sub, err := fs.Sub(assets.Files, "static")
	if err != nil {
		panic(err)
	}
	return http.StripPrefix("/static/", http.FileServer(http.FS(sub)))
}
