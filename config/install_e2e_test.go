//go:build e2e

package config_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tenire/loop-operator/internal/localcluster"
	"github.com/tenire/loop-operator/internal/manifests"
)

// lastApplied is the annotation of a client-side kubectl apply.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// TestInstallOnALocalControlPlane installs the operator's objects on a real
// control plane the ways docs/install.md describes, one after the other on
// the same cluster: the CRD with kubectl apply -f, the single-file
// installer, the Helm chart. Nothing runs the operator's image (the local
// cluster has no container runtime): the tests check what the API server
// accepts and keeps.
func TestInstallOnALocalControlPlane(t *testing.T) {
	c := localcluster.StartForTest(t, localcluster.Options{WithoutScheduler: true})
	cl, err := client.New(c.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the CRD applies client-side", func(t *testing.T) {
		ctx := t.Context()
		objs := readObjects(t, crdFile)
		if kubectl, err := exec.LookPath("kubectl"); err == nil {
			// The real thing: kubectl apply -f, client-side, which creates the
			// CRD with its last-applied annotation.
			out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.KubeconfigPath, "apply", "-f", crdFile).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl apply -f %s: %v\n%s", crdFile, err, out)
			}
			t.Logf("kubectl apply -f %s: %s", crdFile, strings.TrimSpace(string(out)))
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := cl.Get(ctx, client.ObjectKey{Name: "loopdeployments.loops.tenire.io"}, crd); err != nil || crd.Annotations[lastApplied] == "" {
				t.Fatalf("the CRD after kubectl apply: %v, last-applied annotation of %d bytes", err, len(crd.Annotations[lastApplied]))
			}
		} else {
			t.Log("kubectl is not on PATH: the CRD is applied the way kubectl apply does it, from Go")
			applyClientSide(t, cl, objs)
		}
		waitEstablished(t, cl, "loopdeployments.loops.tenire.io")
		acceptLoopDeployment(t, cl, "default", "crd-only")
		deleteAll(t, cl, objs)
	})

	t.Run("the single-file installer applies client-side", func(t *testing.T) {
		b, err := manifests.Installer(root, "ghcr.io/tenire/loop-operator:e2e")
		if err != nil {
			t.Fatal(err)
		}
		objs, err := manifests.Objects(b)
		if err != nil {
			t.Fatal(err)
		}
		applyClientSide(t, cl, objs)
		waitEstablished(t, cl, "loopdeployments.loops.tenire.io")
		checkOperatorObjects(t, cl, manifests.Namespace, "ghcr.io/tenire/loop-operator:e2e")
		acceptLoopDeployment(t, cl, "default", "from-installer")
		deleteAll(t, cl, objs)
	})

	t.Run("the Helm chart installs, upgrades and uninstalls", func(t *testing.T) {
		testHelmChart(t, c, cl)
	})
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.Objects(b)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// applyClientSide creates each object as a client-side kubectl apply does
// on a first apply: with the object itself, as compact JSON, in the
// last-applied annotation, which the API server limits (all annotations
// together) to 256 KiB.
func applyClientSide(t *testing.T, cl client.Client, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		o = o.DeepCopy()
		js, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		ann := o.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[lastApplied] = string(js) + "\n"
		o.SetAnnotations(ann)
		err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			err := cl.Create(ctx, o)
			if meta.IsNoMatchError(err) {
				return false, nil // a CRD created just before is not served yet
			}
			return true, err
		})
		if err != nil {
			t.Fatalf("applying %s %s client-side: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

func waitEstablished(t *testing.T, cl client.Client, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := cl.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("CRD %s not established: %v", name, err)
	}
}

// acceptLoopDeployment creates a LoopDeployment (the schema and its CEL
// rules accept it) and checks that one that breaks a rule is refused.
func acceptLoopDeployment(t *testing.T, cl client.Client, ns, name string) {
	t.Helper()
	ld := readObjects(t, filepath.Join("samples", "loops_v1alpha1_loopdeployment.yaml"))[0]
	ld.SetNamespace(ns)
	ld.SetName(name)
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := cl.Create(ctx, ld.DeepCopy())
		if meta.IsNoMatchError(err) {
			return false, nil
		}
		return true, err
	})
	if err != nil {
		t.Fatalf("the sample LoopDeployment was refused: %v", err)
	}
	bad := ld.DeepCopy()
	bad.SetName(name + "-bad")
	if err := unstructured.SetNestedField(bad.Object, int64(-1), "spec", "replicas"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Create(t.Context(), bad); !apierrors.IsInvalid(err) {
		t.Errorf("a LoopDeployment with replicas -1: got %v, want Invalid", err)
	}
	if err := cl.Delete(t.Context(), ld); err != nil {
		t.Fatal(err)
	}
}

// checkOperatorObjects checks the operator's Deployment (image, service
// account, security settings) and that its ClusterRole lets it manage
// LoopDeployments and pods.
func checkOperatorObjects(t *testing.T, cl client.Client, ns, image string) {
	t.Helper()
	ctx := t.Context()
	d := &unstructured.Unstructured{}
	d.SetAPIVersion("apps/v1")
	d.SetKind("Deployment")
	if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: manifests.ManagerDeployment}, d); err != nil {
		t.Fatalf("the operator's Deployment: %v", err)
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 || cs[0].(map[string]any)["image"] != image {
		t.Errorf("the operator's containers: %v, want one with image %s", cs, image)
	}
	sa, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "serviceAccountName")
	nonRoot, _, _ := unstructured.NestedBool(d.Object, "spec", "template", "spec", "securityContext", "runAsNonRoot")
	if sa != "loop-operator-controller-manager" || !nonRoot {
		t.Errorf("the operator's pod: service account %q, runAsNonRoot %v", sa, nonRoot)
	}
	for _, o := range []struct{ apiVersion, kind, ns, name string }{
		{"v1", "ServiceAccount", ns, "loop-operator-controller-manager"},
		{"rbac.authorization.k8s.io/v1", "ClusterRole", "", "loop-operator-manager-role"},
		{"rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "loop-operator-manager-rolebinding"},
		{"rbac.authorization.k8s.io/v1", "Role", ns, "loop-operator-leader-election-role"},
		{"v1", "Service", ns, "loop-operator-controller-manager-metrics"},
	} {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(o.apiVersion)
		u.SetKind(o.kind)
		if err := cl.Get(ctx, client.ObjectKey{Namespace: o.ns, Name: o.name}, u); err != nil {
			t.Errorf("%s %s: %v", o.kind, o.name, err)
		}
	}
}

// deleteAll deletes the objects, last first, as kubectl delete -f does, and
// waits until they are gone.
func deleteAll(t *testing.T, cl client.Client, objs []*unstructured.Unstructured) {
	t.Helper()
	for i := len(objs) - 1; i >= 0; i-- {
		if err := cl.Delete(t.Context(), objs[i].DeepCopy()); client.IgnoreNotFound(err) != nil {
			t.Fatalf("deleting %s %s: %v", objs[i].GetKind(), objs[i].GetName(), err)
		}
	}
	waitGone(t, cl, objs)
}

func waitGone(t *testing.T, cl client.Client, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(o.GroupVersionKind())
			err := cl.Get(ctx, client.ObjectKeyFromObject(o), u)
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				return true, nil
			}
			return false, err
		})
		if err != nil {
			t.Fatalf("%s %s is still there: %v", o.GetKind(), fmt.Sprint(client.ObjectKeyFromObject(o)), err)
		}
	}
}
