package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/tenire/loop-operator/internal/testenv"
)

// podRunner runs one pod: its process, restarts, probe, status and
// deletion. All its state is owned by the run goroutine except what mu
// guards (read by Agent.Process and Agent.Kill).
type podRunner struct {
	a         *Agent
	log       logr.Logger
	uid       types.UID
	namespace string
	name      string
	node      string
	created   time.Time
	dir       string

	notify   chan struct{}
	latestMu sync.Mutex
	latest   *corev1.Pod
	gone     bool

	mu           sync.Mutex
	proc         *proc
	adminAddr    string
	restartCount int32

	// Owned by run.
	pod            *corev1.Pod
	container      corev1.Container
	binary         string
	wantRun        bool // false once the pod is terminal or cannot run
	everStarted    bool
	phase          corev1.PodPhase
	reason         string
	message        string
	startTime      metav1.Time
	state          corev1.ContainerState
	lastState      corev1.ContainerState
	ready          bool
	dirty          bool
	statusRetryAt  time.Time
	nextStart      time.Time
	backoff        time.Duration
	terminating    bool
	apiGone        bool
	killAt         time.Time
	killed         bool
	livenessKill   bool // SIGTERM sent because the liveness probe failed
	exitCh         chan exitInfo
	probeCh        chan probeResult
	probeGen       int
	probeCancel    context.CancelFunc
	probeWG        sync.WaitGroup
	tokenPath      string
	kubeconfigPath string
	apiProxy       *apiProxy // the pod's road to the API server; guarded by mu
	tokenRefreshAt time.Time
	noToken        bool
}

type proc struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time
}

func (p *proc) containerID() string { return "nodeagent://" + strconv.Itoa(p.pid) }

type exitInfo struct {
	proc   *proc
	code   int32
	signal int32
	at     time.Time
}

func newPodRunner(a *Agent, pod *corev1.Pod) *podRunner {
	dir := filepath.Join(a.opts.RunDir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, shortUID(pod.UID)))
	return &podRunner{
		a:         a,
		log:       a.log.WithValues("pod", pod.Namespace+"/"+pod.Name, "uid", pod.UID, "node", pod.Spec.NodeName),
		uid:       pod.UID,
		namespace: pod.Namespace,
		name:      pod.Name,
		node:      pod.Spec.NodeName,
		created:   time.Now(),
		dir:       dir,
		container: pickContainer(pod),
		latest:    pod,
		notify:    make(chan struct{}, 1),
		exitCh:    make(chan exitInfo, 1),
		probeCh:   make(chan probeResult),
	}
}

func shortUID(uid types.UID) string {
	s := string(uid)
	if len(s) > 8 {
		s = s[:8]
	}
	return s
}

// update hands the runner the latest version of its pod.
func (r *podRunner) update(pod *corev1.Pod) {
	r.latestMu.Lock()
	r.latest = pod
	r.latestMu.Unlock()
	r.poke()
}

// goneFromAPI tells the runner that its pod was removed from the API.
func (r *podRunner) goneFromAPI() {
	r.latestMu.Lock()
	r.gone = true
	r.latestMu.Unlock()
	r.poke()
}

func (r *podRunner) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *podRunner) logPath() string { return filepath.Join(r.dir, r.containerName()+".log") }

func (r *podRunner) containerName() string {
	if r.container.Name == "" {
		return "container"
	}
	return r.container.Name
}

func (r *podRunner) info() ProcessInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	pi := ProcessInfo{UID: r.uid, Node: r.node, AdminAddr: r.adminAddr, RestartCount: r.restartCount,
		LogPath: r.logPath(), KubeconfigPath: r.kubeconfigPath, Dir: r.dir}
	if r.proc != nil {
		pi.PID = r.proc.pid
	}
	return pi
}

func (r *podRunner) kill() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return fmt.Errorf("nodeagent: pod %s/%s has no running process", r.namespace, r.name)
	}
	r.log.Info("sending SIGKILL on request", "pid", r.proc.pid)
	if err := syscall.Kill(-r.proc.pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("nodeagent: killing pod %s/%s: %w", r.namespace, r.name, err)
	}
	return nil
}

// pickContainer returns the container to run: "worker", else the first.
func pickContainer(pod *corev1.Pod) corev1.Container {
	for _, c := range pod.Spec.Containers {
		if c.Name == "worker" {
			return c
		}
	}
	if len(pod.Spec.Containers) > 0 {
		return pod.Spec.Containers[0]
	}
	return corev1.Container{}
}

func (r *podRunner) run(ctx context.Context) {
	defer func() {
		if r.probeCancel != nil {
			r.probeCancel()
		}
		r.probeWG.Wait()
		r.mu.Lock()
		proxy := r.apiProxy
		r.mu.Unlock()
		if proxy != nil {
			proxy.close()
		}
	}()
	r.latestMu.Lock()
	r.pod = r.latest
	r.latestMu.Unlock()
	r.startTime = metav1.Now()
	if r.pod.Status.StartTime != nil {
		r.startTime = *r.pod.Status.StartTime
	}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		r.log.Error(err, "creating the pod folder")
	}
	switch r.pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		// Already over (e.g. the agent restarted): only honour deletion.
		r.phase = r.pod.Status.Phase
	default:
		r.phase = corev1.PodPending
		bin, ok := r.a.opts.Images.Resolve(r.container.Image)
		if !ok {
			r.phase = corev1.PodFailed
			r.reason = "UnknownImage"
			r.message = fmt.Sprintf("the test-only node agent maps no local binary to image %q (rules: %s)", r.container.Image, r.a.opts.Images.String())
			r.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "UnknownImage", Message: r.message}}
			r.log.Info("cannot run the pod", "reason", r.reason, "message", r.message)
		} else {
			r.binary = bin
			r.wantRun = true
			r.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
			r.log.Info("running the pod as a local process", "container", r.container.Name, "image", r.container.Image, "binary", bin)
		}
		r.dirty = true
	}
	r.applyLatest()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		if r.terminating && r.proc == nil {
			r.finishDeletion(ctx)
			return
		}
		if (r.terminating || r.livenessKill) && r.proc != nil && !r.killed && !now.Before(r.killAt) {
			r.signal(syscall.SIGKILL, "the grace period is over")
			r.killed = true
		}
		if !r.terminating && r.proc == nil && r.wantRun && !now.Before(r.nextStart) {
			r.startContainer(ctx)
		}
		if r.proc != nil && !r.noToken && !r.tokenRefreshAt.IsZero() && !now.Before(r.tokenRefreshAt) {
			if err := r.ensureToken(ctx); err != nil {
				r.log.Error(err, "renewing the pod's token")
				r.tokenRefreshAt = now.Add(10 * time.Second)
			}
		}
		if r.dirty && !now.Before(r.statusRetryAt) {
			r.pushStatus(ctx)
		}

		wake := now.Add(time.Hour)
		earlier := func(t time.Time, when bool) {
			if when && t.Before(wake) {
				wake = t
			}
		}
		earlier(r.nextStart, !r.terminating && r.proc == nil && r.wantRun)
		earlier(r.statusRetryAt, r.dirty)
		earlier(r.killAt, (r.terminating || r.livenessKill) && !r.killed && r.proc != nil)
		earlier(r.tokenRefreshAt, r.proc != nil && !r.noToken && !r.tokenRefreshAt.IsZero())
		timer.Reset(max(time.Until(wake), time.Millisecond))

		select {
		case <-ctx.Done():
			r.shutdown()
			return
		case <-r.notify:
			r.applyLatest()
		case e := <-r.exitCh:
			r.onExit(e)
		case res := <-r.probeCh:
			if res.liveness {
				r.onLivenessFailure(res)
				continue
			}
			if res.gen == r.probeGen && r.proc != nil && res.ready != r.ready {
				r.ready = res.ready
				r.dirty = true
				r.log.Info("readiness changed", "ready", res.ready, "detail", res.detail)
			}
		case <-timer.C:
		}
	}
}

// applyLatest takes in the pod's latest version and starts termination when
// it is being deleted or gone.
func (r *podRunner) applyLatest() {
	r.latestMu.Lock()
	pod, gone := r.latest, r.gone
	r.latestMu.Unlock()
	if pod != nil && pod.UID == r.uid {
		r.pod = pod
	}
	if gone {
		r.apiGone = true
	}
	if !gone && r.pod.DeletionTimestamp == nil {
		return
	}
	grace := int64(30)
	if r.pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *r.pod.Spec.TerminationGracePeriodSeconds
	}
	if !gone && r.pod.DeletionGracePeriodSeconds != nil {
		grace = *r.pod.DeletionGracePeriodSeconds
	}
	killAt := time.Now().Add(time.Duration(grace) * time.Second)
	if r.terminating {
		// A second delete may shorten the grace period, never lengthen it.
		if !gone && killAt.Before(r.killAt) {
			r.log.Info("the grace period was shortened", "gracePeriodSeconds", grace)
			r.killAt = killAt
		}
		return
	}
	r.terminating = true
	r.killAt = killAt
	r.log.Info("the pod is being deleted", "gracePeriodSeconds", grace, "goneFromAPI", gone, "running", r.proc != nil)
	if r.proc != nil {
		if grace <= 0 {
			r.signal(syscall.SIGKILL, "grace period 0")
			r.killed = true
		} else {
			r.signal(syscall.SIGTERM, "the pod is being deleted")
		}
	}
}

// signal sends sig as a container runtime does: SIGKILL to the whole
// process group (everything in the container), any other signal (the stop
// signal) to the main process only, which decides what its children get.
func (r *podRunner) signal(sig syscall.Signal, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return
	}
	target, what := r.proc.pid, "the main process"
	if sig == syscall.SIGKILL {
		target, what = -r.proc.pid, "the process group"
	}
	r.log.Info("signalling "+what, "signal", sig.String(), "pid", r.proc.pid, "why", why)
	if err := syscall.Kill(target, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		r.log.Error(err, "signalling "+what, "signal", sig.String())
	}
}

// startContainer starts the process, or records why it cannot and schedules
// another attempt.
func (r *podRunner) startContainer(ctx context.Context) {
	fail := func(reason string, err error) {
		r.log.Error(err, "cannot start the container", "reason", reason)
		r.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}}
		r.nextStart = time.Now().Add(r.nextBackoff(0))
		r.dirty = true
	}
	if err := r.ensureToken(ctx); err != nil {
		fail("CreateContainerConfigError", err)
		return
	}
	port, err := testenv.FreePort()
	if err != nil {
		fail("CreateContainerError", err)
		return
	}
	adminAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	env, lookup, err := r.buildEnv(ctx, adminAddr)
	if err != nil {
		fail("CreateContainerConfigError", err)
		return
	}
	args := commandLine(&r.container, lookup)
	f, err := os.OpenFile(r.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fail("CreateContainerError", fmt.Errorf("opening the log: %w", err))
		return
	}
	defer f.Close()
	restarts := r.restartCount
	if r.everStarted {
		restarts++
	}
	fmt.Fprintf(f, "=== nodeagent %s: starting %s %q (restart %d, admin %s)\n", time.Now().UTC().Format(time.RFC3339Nano), r.binary, args, restarts, adminAddr)
	cmd := exec.Command(r.binary, args...)
	cmd.Env = env
	cmd.Dir = r.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fail("RunContainerError", fmt.Errorf("starting %s: %w", r.binary, err))
		return
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, started: time.Now()}
	r.mu.Lock()
	r.proc = p
	r.adminAddr = adminAddr
	r.restartCount = restarts
	r.mu.Unlock()
	r.everStarted = true
	go func() {
		_ = cmd.Wait()
		e := exitInfo{proc: p, at: time.Now(), code: int32(cmd.ProcessState.ExitCode())}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.signal = int32(ws.Signal())
			e.code = 128 + e.signal
		}
		r.exitCh <- e
	}()
	r.log.Info("started the process", "pid", p.pid, "adminAddr", adminAddr, "restartCount", restarts, "log", r.logPath())
	r.phase = corev1.PodRunning
	r.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(p.started)}}
	r.ready = false
	r.dirty = true
	r.probeGen++
	pctx, cancel := context.WithCancel(ctx)
	r.probeCancel = cancel
	gen := r.probeGen
	if probe := r.container.ReadinessProbe; probe != nil {
		target := r.probeTarget(probe, port)
		r.probeWG.Go(func() { runProbe(pctx, r.log.WithValues("probe", "readiness"), probe, target, gen, false, r.probeCh) })
	} else {
		r.ready = true
	}
	if probe := r.container.LivenessProbe; probe != nil {
		target := r.probeTarget(probe, port)
		r.probeWG.Go(func() { runProbe(pctx, r.log.WithValues("probe", "liveness"), probe, target, gen, true, r.probeCh) })
	}
}

// onLivenessFailure stops a process whose liveness probe failed: SIGTERM,
// then SIGKILL after the grace period; the exit is then handled like any
// other (restart per the restart policy).
func (r *podRunner) onLivenessFailure(res probeResult) {
	if res.gen != r.probeGen || r.proc == nil || res.ready || r.terminating || r.livenessKill {
		return
	}
	grace := int64(30)
	if g := r.container.LivenessProbe.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	} else if g := r.pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	r.log.Info("the liveness probe failed; stopping the container", "detail", res.detail, "gracePeriodSeconds", grace)
	r.livenessKill = true
	r.killed = false
	r.killAt = time.Now().Add(time.Duration(grace) * time.Second)
	r.signal(syscall.SIGTERM, "the liveness probe failed")
}

// nextBackoff returns the delay before the next start: it doubles from
// RestartBackoff up to MaxRestartBackoff, and starts over after a process
// that ran for longer than twice the maximum.
func (r *podRunner) nextBackoff(ran time.Duration) time.Duration {
	o := r.a.opts
	switch {
	case r.backoff == 0 || ran > 2*o.MaxRestartBackoff:
		r.backoff = o.RestartBackoff
	default:
		r.backoff = min(2*r.backoff, o.MaxRestartBackoff)
	}
	return r.backoff
}

func (r *podRunner) onExit(e exitInfo) {
	r.mu.Lock()
	if r.proc != e.proc {
		r.mu.Unlock()
		return
	}
	r.proc = nil
	r.mu.Unlock()
	// A container ends with its main process: what it started and left
	// behind (an exec task's child) goes with it, as the runtime's teardown
	// of the container's PID namespace does.
	if err := syscall.Kill(-e.proc.pid, syscall.SIGKILL); err == nil {
		r.log.Info("killed what the exited process left behind in its process group", "pid", e.proc.pid)
	}
	if !r.terminating {
		r.livenessKill, r.killed = false, false
	}
	if r.probeCancel != nil {
		r.probeCancel()
		r.probeCancel = nil
	}
	r.ready = false
	reason := "Completed"
	if e.code != 0 {
		reason = "Error"
	}
	r.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: e.code, Signal: e.signal, Reason: reason,
		StartedAt: metav1.NewTime(e.proc.started), FinishedAt: metav1.NewTime(e.at), ContainerID: e.proc.containerID(),
	}}
	r.dirty = true
	r.log.Info("the process exited", "pid", e.proc.pid, "exitCode", e.code, "signal", e.signal, "ran", e.at.Sub(e.proc.started).Round(time.Millisecond).String())
	if r.terminating {
		return
	}
	policy := r.pod.Spec.RestartPolicy
	if policy == "" || policy == corev1.RestartPolicyAlways || (policy == corev1.RestartPolicyOnFailure && e.code != 0) {
		delay := r.nextBackoff(e.at.Sub(e.proc.started))
		r.lastState = r.state
		r.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", delay, r.container.Name, r.name, r.namespace, r.uid)}}
		r.nextStart = time.Now().Add(delay)
		return
	}
	r.wantRun = false
	if e.code == 0 {
		r.phase = corev1.PodSucceeded
	} else {
		r.phase = corev1.PodFailed
	}
}

// finishDeletion reports the final status and removes the pod from the API
// with grace period 0 and a UID precondition, as a kubelet does.
func (r *podRunner) finishDeletion(ctx context.Context) {
	if r.apiGone {
		r.log.Info("the pod is gone from the API and its process has stopped")
		return
	}
	if r.phase != corev1.PodSucceeded && r.phase != corev1.PodFailed && r.everStarted {
		r.phase = corev1.PodSucceeded
		if t := r.state.Terminated; t != nil && t.ExitCode != 0 {
			r.phase = corev1.PodFailed
		}
		r.dirty = true
	}
	for attempt := 0; ; attempt++ {
		if r.dirty {
			r.pushStatus(ctx)
		}
		err := r.a.client.CoreV1().Pods(r.namespace).Delete(ctx, r.name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			Preconditions:      &metav1.Preconditions{UID: &r.uid},
		})
		if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			r.log.Info("the pod is deleted", "phase", r.phase)
			return
		}
		r.log.Error(err, "deleting the pod", "attempt", attempt)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(min(attempt+1, 5)) * time.Second):
		}
	}
}

// shutdown stops the process when the agent stops, touching nothing in the
// API.
func (r *podRunner) shutdown() {
	if r.proc == nil {
		return
	}
	r.signal(syscall.SIGTERM, "the node agent is stopping")
	select {
	case e := <-r.exitCh:
		r.onExit(e)
		return
	case <-time.After(r.a.opts.StopTimeout):
	}
	r.signal(syscall.SIGKILL, "the node agent is stopping and the process ignored SIGTERM")
	r.onExit(<-r.exitCh)
}
