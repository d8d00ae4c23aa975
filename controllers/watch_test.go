package controllers

import (
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// TestNotStatusOnlyPassesEveryChangeButTheStatus: the update events of a
// PodDisruptionBudget that a reconcile needs pass, the ones that change
// only its status (and the resource version with it) do not.
func TestNotStatusOnlyPassesEveryChangeButTheStatus(t *testing.T) {
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{
		Name: "orders", Namespace: "shop", Generation: 1, ResourceVersion: "11",
		Labels: map[string]string{"team": "a"}, Annotations: map[string]string{"note": "x"},
		Finalizers:      []string{"example.com/hold"},
		OwnerReferences: []metav1.OwnerReference{{Kind: "LoopDeployment", Name: "orders", UID: "u1", Controller: ptr.To(true)}},
	}}
	pdb.Spec.MaxUnavailable = ptr.To(intstr.FromString("25%"))
	pdb.Status.CurrentHealthy = 3

	cases := []struct {
		name   string
		old    client.Object
		change func(client.Object)
		want   bool
	}{
		{"the PDB's status alone", pdb, func(o client.Object) {
			n := o.(*policyv1.PodDisruptionBudget)
			n.Status.CurrentHealthy, n.Status.DisruptionsAllowed = 2, 1
		}, false},
		{"the PDB's spec (generation)", pdb, func(o client.Object) {
			n := o.(*policyv1.PodDisruptionBudget)
			n.Spec.MaxUnavailable, n.Generation = ptr.To(intstr.FromInt32(9)), 2
		}, true},
		{"a label", pdb, func(o client.Object) { o.SetLabels(map[string]string{"team": "b"}) }, true},
		{"an annotation", pdb, func(o client.Object) { o.SetAnnotations(nil) }, true},
		{"the finalizers", pdb, func(o client.Object) { o.SetFinalizers(nil) }, true},
		{"the deletion", pdb, func(o client.Object) { o.SetDeletionTimestamp(&metav1.Time{Time: time.Unix(1e9, 0)}) }, true},
		{"the PDB's owner", pdb, func(o client.Object) { o.SetOwnerReferences(nil) }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.old.DeepCopyObject().(client.Object)
			tc.change(n)
			n.SetResourceVersion("99")
			if got := notStatusOnly.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: n}); got != tc.want {
				t.Errorf("notStatusOnly passes an update of %s: %v, want %v", tc.name, got, tc.want)
			}
		})
	}
	// Creations, deletions and generic events are not its business.
	if !notStatusOnly.Create(event.CreateEvent{Object: pdb}) || !notStatusOnly.Delete(event.DeleteEvent{Object: pdb}) ||
		!notStatusOnly.Generic(event.GenericEvent{Object: pdb}) {
		t.Error("notStatusOnly drops a create, delete or generic event")
	}
}
