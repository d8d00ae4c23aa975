package loop

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is the JSON document served at /status.
type Status struct {
	// Name is Config.Name.
	Name string `json:"name"`
	// State is the lifecycle state.
	State string `json:"state"`
	// Pool describes the worker pool.
	Pool PoolStatus `json:"pool"`
	// InFlightByKind counts the held tasks (running or waiting) by kind.
	InFlightByKind map[string]int `json:"inFlightByKind"`
	// Counters counts the tasks that ended, by outcome.
	Counters map[string]uint64 `json:"counters"`
	// Breakers maps the kinds that have failed so far to their breaker
	// state; a kind not listed is Closed.
	Breakers map[string]string `json:"breakers"`
	// Drain is the last drain's report, once drained.
	Drain *DrainReport `json:"drain,omitempty"`
}

// PoolStatus describes the worker pool in Status.
type PoolStatus struct {
	Workers    int `json:"workers"`
	Idle       int `json:"idle"`
	Running    int `json:"running"`
	Queued     int `json:"queued"`
	MinWorkers int `json:"minWorkers"`
	MaxWorkers int `json:"maxWorkers"`
	// Stuck counts the goroutines still running a handler the loop
	// abandoned past its timeout and grace; each holds a slot.
	Stuck int `json:"stuck"`
}

// Status returns the loop's status.
func (l *Loop) Status() Status {
	ps := l.poolStats()
	s := Status{
		Name:  l.cfg.Name,
		State: l.State().String(),
		Pool: PoolStatus{Workers: ps.Workers, Idle: ps.Idle, Running: ps.Running, Queued: ps.Queued,
			MinWorkers: l.cfg.MinWorkers, MaxWorkers: l.cfg.MaxWorkers, Stuck: int(l.stuck.Load())},
		InFlightByKind: map[string]int{},
		Counters:       map[string]uint64{},
		Breakers:       map[string]string{},
	}
	for i, o := range outcomeIndex {
		s.Counters[o] = l.counters[i].Load()
	}
	for kind, st := range l.breakers.States() {
		s.Breakers[kind] = st.String()
	}
	l.mu.Lock()
	for f := range l.held {
		s.InFlightByKind[f.d.Kind]++
	}
	if l.report != nil {
		r := *l.report
		s.Drain = &r
	}
	l.mu.Unlock()
	return s
}

func (l *Loop) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := l.State()
		switch {
		case st == Starting && l.waitingFor.Load() != nil:
			http.Error(w, "not ready: Starting: "+*l.waitingFor.Load(), http.StatusServiceUnavailable)
		case st != Running:
			http.Error(w, "not ready: "+st.String(), http.StatusServiceUnavailable)
		case l.nc == nil || !l.nc.IsConnected():
			http.Error(w, "not ready: not connected to NATS", http.StatusServiceUnavailable)
		case l.stuck.Load() >= int64(l.cfg.MaxWorkers):
			http.Error(w, fmt.Sprintf("not ready: all %d pool slots are held by handlers stuck past their timeout", l.cfg.MaxWorkers), http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok")
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(l.cfg.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", l.private(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(l.Status())
	}))
	mux.HandleFunc("POST /drain", l.private(func(w http.ResponseWriter, r *http.Request) {
		timeout := l.cfg.DrainTimeout
		if v := r.URL.Query().Get("timeout"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				http.Error(w, fmt.Sprintf("bad timeout %q: want a Go duration such as 30s", v), http.StatusBadRequest)
				return
			}
			timeout = d
		}
		l.requestDrain(drainRequest{deadline: time.Now().Add(timeout), cause: DrainCauseHTTP})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]string{"state": l.State().String(), "drain": "requested"})
	}))
	return mux
}

// Environment variables that Config's defaults read.
const (
	// EnvAdminToken holds the admin token (Config.AdminToken).
	EnvAdminToken = "LOOP_ADMIN_TOKEN"
	// EnvAdminTokenFile names a file holding it (Config.AdminTokenFile).
	EnvAdminTokenFile = "LOOP_ADMIN_TOKEN_FILE"
)

// private guards /status and /drain: loopback clients pass; others need
// the admin token as a bearer token, compared in constant time.
func (l *Loop) private(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if isLoopback(r.RemoteAddr) {
			h(w, r)
			return
		}
		token, err := l.adminToken()
		switch {
		case err != nil:
			l.log.Error(err, "reading the admin token file")
			http.Error(w, "admin token unavailable", http.StatusInternalServerError)
			return
		case token == "":
			http.Error(w, fmt.Sprintf("forbidden: %s answers loopback clients only; configure an admin token (%s or %s) to call it from elsewhere",
				r.URL.Path, EnvAdminToken, EnvAdminTokenFile), http.StatusForbidden)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="loop-admin"`)
			http.Error(w, "unauthorized: "+r.URL.Path+" needs the header Authorization: Bearer <admin token>", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

// adminToken returns the configured admin token, "" when there is none.
func (l *Loop) adminToken() (string, error) {
	if l.cfg.AdminToken != "" {
		return l.cfg.AdminToken, nil
	}
	if l.cfg.AdminTokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(l.cfg.AdminTokenFile)
	if err != nil {
		return "", err
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("admin token file %s is empty", l.cfg.AdminTokenFile)
	}
	return token, nil
}

// isLoopback reports whether a request's remote address is on the
// loopback interface.
func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
