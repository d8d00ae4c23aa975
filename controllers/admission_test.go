package controllers

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/tenire/loop-operator/api/v1alpha1/contract"
	"github.com/tenire/loop-operator/internal/testenv"
)

// TestAWorkerTokenMayPatchOnlyItsOwnPod applies config/admission's policy
// to the real API server, gives two pods the workers' ServiceAccount and
// Role, mints a token bound to each pod (TokenRequest, as the kubelet does
// for a projected token), and checks that a worker's token can report
// Drained on its own pod but not on the other, which RBAC alone allows.
func TestAWorkerTokenMayPatchOnlyItsOwnPod(t *testing.T) {
	ctx := t.Context()
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "admission-"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	sa := WorkerServiceAccountName("orders")
	for _, obj := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: sa}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: sa}, Rules: workerRules},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: sa},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: sa},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns.Name, Name: sa}}},
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	pods := map[string]*corev1.Pod{}
	tokens := map[string]string{}
	for _, name := range []string{"orders-a", "orders-b"} {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name},
			Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "worker", Image: "w"}}},
		}
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		tr, err := admin.CoreV1().ServiceAccounts(ns.Name).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To[int64](600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: p.Name, UID: p.UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods[name], tokens[name] = p, tr.Status.Token
	}

	patch, err := json.Marshal(map[string]any{"status": map[string]any{
		"conditions": []corev1.PodCondition{contract.DrainedCondition(false, "0 finished, 0 handed back", time.Now())},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		token, pod  string
		wantAllowed bool
	}{
		{"a worker reports Drained on its own pod", "orders-a", "orders-a", true},
		{"a worker cannot report Drained on another pod", "orders-a", "orders-b", false},
		{"the other worker cannot report on the first pod either", "orders-b", "orders-a", false},
	}
	patchAs := func(token, pod string) error {
		wc := rest.AnonymousClientConfig(cfg)
		wc.BearerToken = tokens[token]
		worker, err := kubernetes.NewForConfig(wc)
		if err != nil {
			return err
		}
		_, err = worker.CoreV1().Pods(ns.Name).Patch(ctx, pod, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
		return err
	}
	if err := patchAs("orders-a", "orders-b"); err != nil {
		t.Fatalf("without the policy, RBAC should let a worker patch any pod's status of its namespace: %v", err)
	}
	policy, binding := readWorkerPodsPolicy(t)
	for _, obj := range []client.Object{policy, binding} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(ctx, obj) })
	}
	// The API server loads a new policy asynchronously: wait until it
	// denies, then check every case.
	gomega.NewWithT(t).Eventually(func() error { return patchAs("orders-a", "orders-b") }, 30*time.Second, 100*time.Millisecond).
		Should(gomega.MatchError(gomega.ContainSubstring("a loop worker may update only its own pod")))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := patchAs(tt.token, tt.pod)
			switch {
			case tt.wantAllowed && err != nil:
				t.Fatalf("patching its own pod's status: %v", err)
			case !tt.wantAllowed && err == nil:
				t.Fatal("the patch of another pod's status was allowed")
			case !tt.wantAllowed && (!apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "a loop worker may update only its own pod")):
				t.Fatalf("refused for another reason than the policy: %v", err)
			}
		})
	}
}

// readWorkerPodsPolicy reads config/admission's policy and its binding.
func readWorkerPodsPolicy(t *testing.T) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	t.Helper()
	f, err := os.Open("../config/admission/worker_pods_policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for _, into := range []any{policy, binding} {
		doc, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatal(err)
		}
	}
	return policy, binding
}
