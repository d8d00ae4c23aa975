// Package config_test checks the manifests users apply from config/.
package config_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/tenire/loop-operator/internal/testenv"
)

// build renders the kustomization in dir as kubectl apply -k would.
func build(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

// one returns the only object of kind in objs, converted to out.
func one(t *testing.T, objs []*unstructured.Unstructured, kind string, out any) {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(found), kind)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(found[0].Object, out); err != nil {
		t.Fatalf("reading the %s: %v", kind, err)
	}
}

// TestNATSManifestsAreAcceptedByAnAPIServer applies config/nats and
// config/nats/cluster to a real API server (server-side dry run, after
// creating their namespace), which validates every object.
func TestNATSManifestsAreAcceptedByAnAPIServer(t *testing.T) {
	c, err := client.New(testenv.Start(t), client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"nats", "nats/cluster"} {
		t.Run(dir, func(t *testing.T) {
			for _, o := range build(t, dir) {
				if o.GetKind() == "Namespace" {
					if err := c.Create(t.Context(), o); client.IgnoreAlreadyExists(err) != nil {
						t.Fatalf("creating the namespace %s: %v", o.GetName(), err)
					}
					continue
				}
				if err := c.Create(t.Context(), o, client.DryRunAll); err != nil {
					t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
				}
			}
		})
	}
}

// TestTheNATSClusterHangsTogether checks config/nats/cluster: a routed
// cluster of as many servers as the StatefulSet runs, reachable by pod name
// through a headless Service, started in parallel, one down at a time at
// most, and a nats.conf that nats-server accepts.
func TestTheNATSClusterHangsTogether(t *testing.T) {
	objs := build(t, "nats/cluster")
	var (
		sts appsv1.StatefulSet
		svc corev1.Service
		pdb policyv1.PodDisruptionBudget
		cm  corev1.ConfigMap
	)
	one(t, objs, "StatefulSet", &sts)
	one(t, objs, "Service", &svc)
	one(t, objs, "PodDisruptionBudget", &pdb)
	one(t, objs, "ConfigMap", &cm)

	replicas := int(*sts.Spec.Replicas)
	if replicas != 3 {
		t.Errorf("the StatefulSet runs %d servers, want 3", replicas)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: the servers must start together (a leader needs a majority)", sts.Spec.PodManagementPolicy)
	}
	if sts.Spec.ServiceName != svc.Name || svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("the Service %s (serviceName %s) must be headless (%q) and publish pods before they are ready (%v)",
			svc.Name, sts.Spec.ServiceName, svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("the PodDisruptionBudget's maxUnavailable is %v, want 1", pdb.Spec.MaxUnavailable)
	}
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if sts.Spec.Template.Labels[k] != v {
			t.Errorf("the PodDisruptionBudget selects %s=%s, which the servers do not carry", k, v)
		}
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Errorf("%d volume claim templates, want one (the JetStream store)", len(sts.Spec.VolumeClaimTemplates))
	}

	conf := cm.Data["nats.conf"]
	container := sts.Spec.Template.Spec.Containers[0]
	if !slices.Contains(container.Args, "--config=/etc/nats/nats.conf") {
		t.Errorf("the server runs with %v, not the ConfigMap's nats.conf", container.Args)
	}
	port := 0
	for _, p := range container.Ports {
		if p.Name == "cluster" {
			port = int(p.ContainerPort)
		}
	}
	if !strings.Contains(conf, "listen: 0.0.0.0:"+strconv.Itoa(port)) {
		t.Errorf("nats.conf's cluster does not listen on the container's cluster port %d", port)
	}
	var want []string
	for i := range replicas {
		want = append(want, fmt.Sprintf("nats://%s-%d.%s:%d", sts.Name, i, svc.Name, port))
	}
	got := regexp.MustCompile(`nats://[a-z0-9.-]+:\d+`).FindAllString(conf, -1)
	if !slices.Equal(got, want) {
		t.Errorf("nats.conf routes to %v, want one route per server: %v", got, want)
	}

	// nats-server itself checks the file (-t), with the environment the
	// pods give it.
	bins, err := testenv.Assets()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), filepath.Join(bins, "nats-server"), "-c", path, "-t")
	cmd.Env = append(os.Environ(), "POD_NAME=nats-0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("nats-server -t rejects nats.conf: %v\n%s", err, out)
	}
}
