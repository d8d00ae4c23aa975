package nodeagent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

const localIP = "127.0.0.1"

// pushStatus writes the runner's view of the pod into pods/status. It
// starts from the pod as the API has it and changes only the fields a
// kubelet owns, so conditions set by others (the worker's Drained
// condition) survive; a conflict reads the pod again and retries.
func (r *podRunner) pushStatus(ctx context.Context) {
	pods := r.a.client.CoreV1().Pods(r.namespace)
	first := true
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := r.pod
		if !first {
			got, err := pods.Get(ctx, r.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur = got
		}
		first = false
		if cur.UID != r.uid {
			return apierrors.NewNotFound(corev1.Resource("pods"), r.name)
		}
		next := cur.DeepCopy()
		r.fillStatus(next)
		if apiequality.Semantic.DeepEqual(cur.Status, next.Status) {
			return nil
		}
		updated, err := pods.UpdateStatus(ctx, next, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		r.pod = updated
		return nil
	})
	switch {
	case err == nil:
		r.dirty = false
	case apierrors.IsNotFound(err):
		r.dirty = false
		r.log.V(1).Info("the pod is gone; status not written")
	default:
		if ctx.Err() == nil {
			r.log.Error(err, "writing the pod status")
		}
		r.statusRetryAt = time.Now().Add(time.Second)
	}
}

// fillStatus sets the kubelet-owned status fields of pod.
func (r *podRunner) fillStatus(pod *corev1.Pod) {
	st := &pod.Status
	st.Phase = r.phase
	st.Reason, st.Message = r.reason, r.message
	st.HostIP = localIP
	st.HostIPs = []corev1.HostIP{{IP: localIP}}
	if r.everStarted {
		st.PodIP = localIP
		st.PodIPs = []corev1.PodIP{{IP: localIP}}
	}
	if st.StartTime == nil {
		st.StartTime = &r.startTime
	}

	terminal := r.phase == corev1.PodSucceeded || r.phase == corev1.PodFailed
	containersReady := r.ready && !terminal
	notReady := []string{}
	if !containersReady {
		notReady = append(notReady, r.container.Name)
	}
	if _, ok := findCondition(st.Conditions, corev1.PodScheduled); !ok {
		setCondition(st, corev1.PodScheduled, corev1.ConditionTrue, "", "")
	}
	sandbox := corev1.ConditionTrue
	if terminal {
		sandbox = corev1.ConditionFalse
	}
	setCondition(st, corev1.PodReadyToStartContainers, sandbox, "", "")
	setCondition(st, corev1.PodInitialized, corev1.ConditionTrue, "", "")
	ready := containersReady
	reason, message := "", ""
	switch {
	case terminal:
		reason = "PodCompleted"
	case !containersReady:
		reason, message = "ContainersNotReady", fmt.Sprintf("containers with unready status: %v", notReady)
	}
	if reason != "" {
		setCondition(st, corev1.ContainersReady, corev1.ConditionFalse, reason, message)
	} else {
		setCondition(st, corev1.ContainersReady, corev1.ConditionTrue, "", "")
	}
	if ready {
		var missing []string
		for _, g := range pod.Spec.ReadinessGates {
			if c, ok := findCondition(st.Conditions, g.ConditionType); !ok || c.Status != corev1.ConditionTrue {
				missing = append(missing, string(g.ConditionType))
			}
		}
		if len(missing) > 0 {
			ready = false
			reason, message = "ReadinessGatesNotReady", fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist or is not True", missing)
		}
	}
	if ready {
		setCondition(st, corev1.PodReady, corev1.ConditionTrue, "", "")
	} else {
		setCondition(st, corev1.PodReady, corev1.ConditionFalse, reason, message)
	}

	started := r.state.Running != nil
	st.ContainerStatuses = make([]corev1.ContainerStatus, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: "nodeagent://" + c.Image}
		if c.Name == r.container.Name {
			r.mu.Lock()
			cs.RestartCount = r.restartCount
			if r.proc != nil {
				cs.ContainerID = r.proc.containerID()
			}
			r.mu.Unlock()
			if t := r.state.Terminated; t != nil {
				cs.ContainerID = t.ContainerID
			}
			cs.State = r.state
			cs.LastTerminationState = r.lastState
			cs.Ready = containersReady
			cs.Started = &started
			if r.binary != "" {
				cs.ImageID = "nodeagent://" + r.binary
			}
		} else {
			// Not run by the agent: reported running so the pod can be
			// ready.
			yes := !terminal
			cs.Ready = yes
			cs.Started = &yes
			if terminal {
				cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: r.startTime, FinishedAt: metav1.Now()}}
			} else {
				cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: r.startTime}}
			}
		}
		// Keep the times of an unchanged terminated state stable.
		for _, old := range pod.Status.ContainerStatuses {
			if old.Name == c.Name && old.State.Terminated != nil && cs.State.Terminated != nil && c.Name != r.container.Name {
				cs.State.Terminated.FinishedAt = old.State.Terminated.FinishedAt
			}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		// Init containers are not run; they are reported as completed.
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "nodeagent://" + c.Image, Ready: true,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: r.startTime, FinishedAt: r.startTime}},
		})
	}
}

func findCondition(conds []corev1.PodCondition, t corev1.PodConditionType) (corev1.PodCondition, bool) {
	for _, c := range conds {
		if c.Type == t {
			return c, true
		}
	}
	return corev1.PodCondition{}, false
}

// setCondition sets one condition, keeping its transition time when its
// status does not change, and leaves every other condition alone.
func setCondition(st *corev1.PodStatus, t corev1.PodConditionType, s corev1.ConditionStatus, reason, message string) {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status != s {
			c.LastTransitionTime = metav1.Now()
		}
		c.Status, c.Reason, c.Message = s, reason, message
		return
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: s, Reason: reason, Message: message, LastTransitionTime: metav1.Now()})
}
