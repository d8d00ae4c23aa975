//go:build e2e

package config_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tenire/loop-operator/internal/localcluster"
	"github.com/tenire/loop-operator/internal/manifests"
)

// testHelmChart installs the chart with the Helm SDK as helm install
// --create-namespace does, checks the operator's objects and that a
// LoopDeployment is accepted, upgrades it with other values and sees them,
// and uninstalls it: the release's objects are gone, the CRD stays (Helm
// neither upgrades nor deletes what crds/ installed).
func testHelmChart(t *testing.T, c *localcluster.Cluster, cl client.Client) {
	ctx := t.Context()
	ns := manifests.Namespace
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &c.KubeconfigPath, &ns
	cfg := &action.Configuration{}
	if err := cfg.Init(flags, ns, "secret", t.Logf); err != nil {
		t.Fatal(err)
	}
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}

	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace, install.CreateNamespace = "loop-operator", ns, true
	install.Timeout = 2 * time.Minute
	rel, err := install.RunWithContext(ctx, ch, map[string]any{"image": map[string]any{"tag": "e2e"}})
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	t.Logf("helm install: release %s revision %d, %s", rel.Name, rel.Version, rel.Info.Status)
	installed, err := manifests.Objects([]byte(rel.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, cl, "loopdeployments.loops.tenire.io")
	checkOperatorObjects(t, cl, ns, "ghcr.io/tenire/loop-operator:e2e")
	acceptLoopDeployment(t, cl, "default", "from-helm")

	// An upgrade with other values changes the objects.
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = ns
	rel, err = upgrade.RunWithContext(ctx, "loop-operator", ch, map[string]any{
		"image":        map[string]any{"tag": "e2e"},
		"replicaCount": 1,
		"logLevel":     "debug",
		"metrics":      map[string]any{"enabled": false},
	})
	if err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	t.Logf("helm upgrade: revision %d, %s", rel.Version, rel.Info.Status)
	d := &appsv1.Deployment{}
	if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: manifests.ManagerDeployment}, d); err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 1 || !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--zap-log-level=debug") {
		t.Errorf("after the upgrade: replicas %d, args %v; want 1 and --zap-log-level=debug", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Args)
	}
	svc := &unstructured.Unstructured{}
	svc.SetAPIVersion("v1")
	svc.SetKind("Service")
	svc.SetNamespace(ns)
	svc.SetName("loop-operator-controller-manager-metrics")
	waitGone(t, cl, []*unstructured.Unstructured{svc}) // metrics.enabled=false removes it

	// Uninstall: every object of the release is gone, with what the
	// Deployment made (ReplicaSets, pods); the CRD stays.
	uninstall := action.NewUninstall(cfg)
	uninstall.Wait, uninstall.Timeout = true, 2*time.Minute
	if _, err := uninstall.Run("loop-operator"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	waitGone(t, cl, installed)
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		rs := &appsv1.ReplicaSetList{}
		if err := cl.List(ctx, rs, client.InNamespace(ns)); err != nil {
			return false, err
		}
		return len(rs.Items) == 0, nil
	})
	if err != nil {
		t.Errorf("the operator's ReplicaSets are still there after helm uninstall: %v", err)
	}
	secrets := &unstructured.UnstructuredList{}
	secrets.SetAPIVersion("v1")
	secrets.SetKind("SecretList")
	if err := cl.List(ctx, secrets, client.InNamespace(ns), client.MatchingLabels{"owner": "helm"}); err != nil || len(secrets.Items) != 0 {
		t.Errorf("Helm's release records are still there: %d, %v", len(secrets.Items), err)
	}
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	if err := cl.Get(ctx, client.ObjectKey{Name: "loopdeployments.loops.tenire.io"}, crd); err != nil {
		t.Errorf("the CRD is gone after helm uninstall (Helm keeps what crds/ installed): %v", err)
	}
	// What remains is the user's to remove, as docs/install.md says.
	if err := cl.Delete(ctx, crd); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(fmt.Errorf("deleting the CRD: %w", err))
	}
	waitGone(t, cl, []*unstructured.Unstructured{crd})
}
