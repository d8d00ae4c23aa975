//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// Scenario 9: `kubectl drain` of a node that runs workers evicts them
// through the PodDisruptionBudget the operator made (maxUnavailable =
// drain.maxConcurrent, here 1): never fewer than replicas-1 pods serve,
// the evicted workers drain on SIGTERM, replacements run elsewhere, and no
// task is lost.
func TestDrainingANodeEvictsItsWorkersWithinThePodDisruptionBudget(t *testing.T) {
	const replicas = 6
	l := newLoop(t, "nodedrain", replicas, func(ld *loopsv1alpha1.LoopDeployment) {
		ld.Spec.Drain.MaxConcurrent = ptr.To(intstr.FromInt32(1))
	})
	watch := l.watchPods(1)
	watch.allowUndrained = true // evictions delete pods without a drain request

	var pdbs policyv1.PodDisruptionBudgetList
	if err := env.Client.List(t.Context(), &pdbs, client.InNamespace(l.ns)); err != nil {
		t.Fatal(err)
	}
	if len(pdbs.Items) != 1 {
		t.Fatalf("want one PodDisruptionBudget in %s, found %d", l.ns, len(pdbs.Items))
	}
	pdb := pdbs.Items[0]
	if mu := pdb.Spec.MaxUnavailable; mu == nil || mu.String() != "1" {
		t.Errorf("PodDisruptionBudget %s has maxUnavailable %v, want 1", pdb.Name, mu)
	}

	// The controller-manager learns the LoopDeployment kind by refreshing
	// its discovery every 30 s; a PDB synced before that fails
	// ("no matches for kind") and is retried with a growing backoff, or
	// at the next change of one of its pods. Poke a pod until the budget
	// is computed, as it would long be in a cluster where the CRD is old.
	poke := 0
	eventually(t, 2*time.Minute, "the PodDisruptionBudget to allow one disruption", func() (bool, error) {
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(&pdb), &pdb); err != nil {
			return false, err
		}
		st := pdb.Status
		if st.ObservedGeneration == pdb.Generation && st.ExpectedPods == replicas && st.DisruptionsAllowed == 1 {
			t.Logf("PodDisruptionBudget %s: expected %d, healthy %d, desired %d, disruptions allowed %d",
				pdb.Name, st.ExpectedPods, st.CurrentHealthy, st.DesiredHealthy, st.DisruptionsAllowed)
			return true, nil
		}
		poke++
		if poke%20 == 1 {
			p := l.pods()[0]
			patch := fmt.Appendf(nil, `{"metadata":{"annotations":{"e2e.tenire.io/poke":"%d"}}}`, poke)
			return false, env.Client.Patch(t.Context(), &p, client.RawPatch(types.MergePatchType, patch))
		}
		return false, nil
	})

	// The node with the most workers, of those the suite may drain (in
	// kind mode not the node of NATS, whose volume is bound to it).
	drainable, err := env.DrainableNodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	byNode := map[string][]string{}
	for _, p := range l.pods() {
		byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p.Name)
	}
	node := ""
	for n, pods := range byNode {
		if slices.Contains(drainable, n) && (node == "" || len(pods) > len(byNode[node])) {
			node = n
		}
	}
	if node == "" {
		t.Fatalf("no worker runs on a node that may be drained (%v); workers by node: %v", drainable, byNode)
	}
	t.Logf("workers by node: %v; draining %s (of %v)", byNode, node, drainable)
	t.Cleanup(func() {
		ctx, cancel := CleanupContext(time.Minute)
		defer cancel()
		if out, err := kubectlContext(ctx, "uncordon", node); err != nil {
			t.Errorf("kubectl uncordon %s: %v\n%s", node, err, out)
		}
	})

	l.submitSleeps(4000, 200, 1000)
	l.waitFinished(200)
	watch.trackServing()
	out, err := kubectl(t, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=4m")
	t.Logf("kubectl drain %s:\n%s", node, out)
	if err != nil {
		t.Fatalf("kubectl drain: %v", err)
	}
	if !strings.Contains(out, "evicting pod") {
		t.Errorf("kubectl drain evicted nothing")
	}
	if got := watch.fewestServing(); got < replicas-1 {
		t.Errorf("at one point only %d pods served; the PodDisruptionBudget allows %d", got, replicas-1)
	} else {
		t.Logf("at least %d pods served throughout the drain", got)
	}
	for _, p := range l.pods() {
		if p.Spec.NodeName == node && p.DeletionTimestamp == nil {
			t.Errorf("pod %s is still on the drained node %s", p.Name, node)
		}
	}
	nodeObj := &corev1.Node{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Name: node}, nodeObj); err != nil {
		t.Fatal(err)
	}
	if !nodeObj.Spec.Unschedulable {
		t.Errorf("node %s is not cordoned", node)
	}

	l.waitReady(replicas)
	l.waitAllAccounted(5 * time.Minute)
	watch.check(t)
}
