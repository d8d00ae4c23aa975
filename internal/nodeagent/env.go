package nodeagent

import (
	"context"
	"fmt"
	"math"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Environment variables the agent sets for every process.
const (
	// AdminAddrEnv holds the process's own loopback admin address, under
	// the name cmd/loop-worker reads for its --admin-addr flag; the
	// container port named "admin" maps to it.
	AdminAddrEnv = "ADMIN_ADDR"
	// KubeconfigEnv holds the path of the pod's kubeconfig.
	KubeconfigEnv = "KUBECONFIG"
)

// envList is an ordered environment in which a later value replaces an
// earlier one.
type envList struct {
	keys []string
	vals map[string]string
}

func (e *envList) set(k, v string) {
	if e.vals == nil {
		e.vals = map[string]string{}
	}
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *envList) lookup(k string) (string, bool) {
	v, ok := e.vals[k]
	return v, ok
}

func (e *envList) list() []string {
	out := make([]string, 0, len(e.keys))
	for _, k := range e.keys {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}

// buildEnv returns the process environment: the base environment, HOSTNAME,
// the container's envFrom and env (downward API, config maps, secrets,
// $(VAR) expansion) and then ADMIN_ADDR and KUBECONFIG. It also
// returns the lookup used to expand the command line.
func (r *podRunner) buildEnv(ctx context.Context, adminAddr string) ([]string, func(string) (string, bool), error) {
	var base envList
	for _, kv := range r.a.opts.BaseEnv {
		if k, v, ok := strings.Cut(kv, "="); ok {
			base.set(k, v)
		}
	}
	base.set("HOSTNAME", r.name)
	// Pod variables: what $(VAR) may refer to.
	var podEnv envList
	c := &r.container
	for _, from := range c.EnvFrom {
		data, err := r.envFromSource(ctx, from)
		if err != nil {
			return nil, nil, err
		}
		for k, v := range data {
			podEnv.set(from.Prefix+k, v)
		}
	}
	for _, ev := range c.Env {
		if ev.ValueFrom == nil {
			podEnv.set(ev.Name, expand(ev.Value, podEnv.lookup))
			continue
		}
		v, ok, err := r.envValueFrom(ctx, ev.ValueFrom)
		if err != nil {
			return nil, nil, fmt.Errorf("env %s: %w", ev.Name, err)
		}
		if ok {
			podEnv.set(ev.Name, v)
		}
	}
	podEnv.set(AdminAddrEnv, adminAddr)
	if r.kubeconfigPath != "" {
		podEnv.set(KubeconfigEnv, r.kubeconfigPath)
	}
	for _, k := range podEnv.keys {
		base.set(k, podEnv.vals[k])
	}
	return base.list(), podEnv.lookup, nil
}

func (r *podRunner) envFromSource(ctx context.Context, from corev1.EnvFromSource) (map[string]string, error) {
	switch {
	case from.ConfigMapRef != nil:
		cm, err := r.a.client.CoreV1().ConfigMaps(r.namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && optional(from.ConfigMapRef.Optional) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("envFrom config map %q: %w", from.ConfigMapRef.Name, err)
		}
		return cm.Data, nil
	case from.SecretRef != nil:
		s, err := r.a.client.CoreV1().Secrets(r.namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && optional(from.SecretRef.Optional) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("envFrom secret %q: %w", from.SecretRef.Name, err)
		}
		out := make(map[string]string, len(s.Data))
		for k, v := range s.Data {
			out[k] = string(v)
		}
		return out, nil
	}
	return nil, nil
}

func optional(b *bool) bool { return b != nil && *b }

// envValueFrom resolves one valueFrom; ok is false when an optional source
// is missing (the variable is then not set).
func (r *podRunner) envValueFrom(ctx context.Context, src *corev1.EnvVarSource) (string, bool, error) {
	pod := r.pod
	switch {
	case src.FieldRef != nil:
		path := src.FieldRef.FieldPath
		switch path {
		case "metadata.name":
			return pod.Name, true, nil
		case "metadata.namespace":
			return pod.Namespace, true, nil
		case "metadata.uid":
			return string(pod.UID), true, nil
		case "spec.nodeName":
			return pod.Spec.NodeName, true, nil
		case "spec.serviceAccountName":
			return pod.Spec.ServiceAccountName, true, nil
		case "status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs":
			return localIP, true, nil
		}
		for _, prefix := range []string{"metadata.labels", "metadata.annotations"} {
			if key, ok := strings.CutPrefix(path, prefix+"['"); ok && strings.HasSuffix(key, "']") {
				key = strings.TrimSuffix(key, "']")
				if prefix == "metadata.labels" {
					return pod.Labels[key], true, nil
				}
				return pod.Annotations[key], true, nil
			}
		}
		return "", false, fmt.Errorf("the test-only node agent does not support fieldRef %q", path)
	case src.ResourceFieldRef != nil:
		v, err := r.resourceValue(src.ResourceFieldRef)
		return v, err == nil, err
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, err := r.a.client.CoreV1().ConfigMaps(r.namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) && optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("config map %q: %w", ref.Name, err)
		}
		v, ok := cm.Data[ref.Key]
		if !ok && !optional(ref.Optional) {
			return "", false, fmt.Errorf("config map %q has no key %q", ref.Name, ref.Key)
		}
		return v, ok, nil
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, err := r.a.client.CoreV1().Secrets(r.namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) && optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("secret %q: %w", ref.Name, err)
		}
		v, ok := s.Data[ref.Key]
		if !ok && !optional(ref.Optional) {
			return "", false, fmt.Errorf("secret %q has no key %q", ref.Name, ref.Key)
		}
		return string(v), ok, nil
	}
	return "", false, fmt.Errorf("the test-only node agent does not support this valueFrom")
}

// resourceValue resolves a resourceFieldRef from the container's requests
// and limits; an unset limit is the node's allocatable amount.
func (r *podRunner) resourceValue(ref *corev1.ResourceFieldSelector) (string, error) {
	c := r.container
	if ref.ContainerName != "" {
		for _, cc := range r.pod.Spec.Containers {
			if cc.Name == ref.ContainerName {
				c = cc
			}
		}
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("resourceFieldRef %q", ref.Resource)
	}
	var q resource.Quantity
	var found bool
	switch kind {
	case "limits":
		q, found = c.Resources.Limits[corev1.ResourceName(name)]
	case "requests":
		q, found = c.Resources.Requests[corev1.ResourceName(name)]
	}
	if !found {
		switch name {
		case "cpu":
			q = resource.MustParse(r.a.opts.CPU)
		case "memory":
			q = resource.MustParse(r.a.opts.Memory)
		default:
			q = resource.MustParse("0")
		}
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == "cpu" {
		return fmt.Sprint(int64(math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue())))), nil
	}
	return fmt.Sprint(int64(math.Ceil(float64(q.Value()) / float64(divisor.Value())))), nil
}

// expand replaces $(NAME) with the value of NAME when it is defined, and
// $$ with $, as the kubelet does for env values, command and args.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) {
			switch s[i+1] {
			case '$':
				b.WriteByte('$')
				i++
				continue
			case '(':
				if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
					name := s[i+2 : i+2+end]
					if v, ok := lookup(name); ok {
						b.WriteString(v)
					} else {
						b.WriteString(s[i : i+3+end])
					}
					i += 2 + end
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// commandLine returns the arguments for the local binary: the container's
// command without its first element (the binary replaces the image's
// entrypoint), then its args, both expanded.
func commandLine(c *corev1.Container, lookup func(string) (string, bool)) []string {
	var args []string
	if len(c.Command) > 1 {
		for _, a := range c.Command[1:] {
			args = append(args, expand(a, lookup))
		}
	}
	for _, a := range c.Args {
		args = append(args, expand(a, lookup))
	}
	return args
}
