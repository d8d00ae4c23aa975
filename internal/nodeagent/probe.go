package nodeagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type probeResult struct {
	gen      int
	liveness bool // a liveness result: ready false means the probe failed
	ready    bool
	detail   string
}

// probeTarget is the loopback port a probe reaches.
type probeTarget struct {
	port int
	err  error
}

// probeTarget maps the probe's port to a local one: the container port
// named "admin" (by name or number) is the process's admin port, and so is
// any port when the container declares no "admin" port (the process knows
// only ADMIN_ADDR). Other ports are used as they are.
func (r *podRunner) probeTarget(p *corev1.Probe, adminPort int) probeTarget {
	var port intstr.IntOrString
	switch {
	case p.HTTPGet != nil:
		port = p.HTTPGet.Port
	case p.TCPSocket != nil:
		port = p.TCPSocket.Port
	default:
		return probeTarget{}
	}
	hasAdmin := false
	for _, cp := range r.container.Ports {
		if cp.Name == "admin" {
			hasAdmin = true
		}
	}
	if !hasAdmin {
		return probeTarget{port: adminPort}
	}
	if port.Type == intstr.String {
		for _, cp := range r.container.Ports {
			if cp.Name == port.StrVal {
				if cp.Name == "admin" {
					return probeTarget{port: adminPort}
				}
				return probeTarget{port: int(cp.ContainerPort)}
			}
		}
		return probeTarget{err: fmt.Errorf("the container has no port named %q", port.StrVal)}
	}
	for _, cp := range r.container.Ports {
		if cp.Name == "admin" && int(cp.ContainerPort) == port.IntValue() {
			return probeTarget{port: adminPort}
		}
	}
	return probeTarget{port: port.IntValue()}
}

// runProbe runs a probe until ctx ends and sends each change of its state.
// A readiness probe starts not ready; a liveness probe starts healthy and
// sends a failure after failureThreshold failures in a row.
func runProbe(ctx context.Context, log logr.Logger, p *corev1.Probe, target probeTarget, gen int, liveness bool, out chan<- probeResult) {
	period := secondsOr(p.PeriodSeconds, 10)
	timeout := secondsOr(p.TimeoutSeconds, 1)
	successes := int(max(p.SuccessThreshold, 1))
	failures := int(max(p.FailureThreshold, 3))
	if p.FailureThreshold > 0 {
		failures = int(p.FailureThreshold)
	}
	send := func(ready bool, detail string) bool {
		select {
		case out <- probeResult{gen: gen, liveness: liveness, ready: ready, detail: detail}:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if p.HTTPGet == nil && p.TCPSocket == nil {
		log.Info("the test-only node agent does not run exec or gRPC probes; the probe counts as passing")
		if !liveness {
			send(true, "probe kind not supported")
		}
		return
	}
	if target.err != nil {
		log.Error(target.err, "the probe cannot run (a readiness probe then never passes, a liveness probe never fails)")
		return
	}
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelets do not verify probe certificates
	}}
	defer client.CloseIdleConnections()
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	if p.InitialDelaySeconds > 0 && !wait(time.Duration(p.InitialDelaySeconds)*time.Second) {
		return
	}
	ready := liveness
	okRun, failRun := 0, 0
	for {
		err := probeOnce(ctx, client, p, target.port, timeout)
		if err == nil {
			okRun, failRun = okRun+1, 0
		} else {
			okRun, failRun = 0, failRun+1
		}
		switch {
		case !ready && okRun >= successes:
			ready = true
			if !send(true, "probe succeeded") {
				return
			}
		case ready && failRun >= failures:
			ready = false
			if !send(false, err.Error()) {
				return
			}
		}
		if !wait(period) {
			return
		}
	}
}

func secondsOr(v int32, def int) time.Duration {
	if v <= 0 {
		return time.Duration(def) * time.Second
	}
	return time.Duration(v) * time.Second
}

func probeOnce(ctx context.Context, client *http.Client, p *corev1.Probe, port int, timeout time.Duration) error {
	if p.TCPSocket != nil {
		host := p.TCPSocket.Host
		if host == "" {
			host = localIP
		}
		d := net.Dialer{Timeout: timeout}
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	}
	g := p.HTTPGet
	host := g.Host
	if host == "" {
		host = localIP
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: g.Path}
	if u.Path == "" {
		u.Path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	for _, h := range g.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	req.Header.Set("User-Agent", "tenire-nodeagent-probe")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", u.String(), resp.Status)
	}
	return nil
}
