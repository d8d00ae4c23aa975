package localcluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Kwok is the name of the kwok binary in the control plane's folder
// (hack/kube-bins.sh builds it from the Go module proxy), and of its log
// file.
const Kwok = "kwok"

// KwokStages is the stage file hack/kube-bins.sh writes beside kwok: kwok's
// "fast" node and pod stages (a node is Ready at once; a scheduled pod is
// Running and Ready at once; a pod with a deletionTimestamp is deleted at
// once, with a grace period of 0).
const KwokStages = "kwok-stages.yaml"

// KwokOptions configure StartKwok.
type KwokOptions struct {
	// NodeLabelSelector selects the nodes kwok manages
	// (--manage-nodes-with-label-selector); kwok leaves every other node,
	// and the pods bound to them, alone. Required.
	NodeLabelSelector string
	// CIDR is the range kwok gives pod IPs from, on nodes without a pod
	// CIDR. Default 10.128.0.0/16, room for many more pods than kwok's own
	// default of 10.0.0.0/24.
	CIDR string
	// NodeLeaseDurationSeconds is the duration of the node leases kwok
	// holds and renews for its nodes, which keeps kube-controller-manager
	// from marking them unreachable (the fast stages send no status
	// heartbeat). Default 40, a kubelet's default.
	NodeLeaseDurationSeconds int
	// Args are added to the generated command line (a later flag wins).
	Args []string
}

// StartKwok starts kwok as a process beside the cluster, with the admin
// kubeconfig and the stage file KwokStages as its configuration, managing
// only the nodes that opts.NodeLabelSelector selects. Its output goes to
// RunDir/logs/kwok.log; Cluster.Stop stops it, Process.Stop sooner.
//
// kwok makes those nodes Ready and the pods scheduled to them Running and
// Ready, and deletes pods that are being deleted; nothing runs. The
// caller creates the Node objects (with the label) and waits until they
// are Ready.
func (c *Cluster) StartKwok(opts KwokOptions) (*Process, error) {
	if opts.NodeLabelSelector == "" {
		return nil, errors.New("localcluster: kwok needs a node label selector, so that it leaves the other nodes alone")
	}
	if opts.CIDR == "" {
		opts.CIDR = "10.128.0.0/16"
	}
	if opts.NodeLeaseDurationSeconds <= 0 {
		opts.NodeLeaseDurationSeconds = 40
	}
	bin, stages := filepath.Join(c.binDir, Kwok), filepath.Join(c.binDir, KwokStages)
	for _, f := range []string{bin, stages} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("localcluster: %w: run `make kube-bins`, which builds kwok and writes its stages", err)
		}
	}
	args := append([]string{
		"--kubeconfig=" + c.KubeconfigPath,
		"--config=" + stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-label-selector=" + opts.NodeLabelSelector,
		"--node-lease-duration-seconds=" + strconv.Itoa(opts.NodeLeaseDurationSeconds),
		"--cidr=" + opts.CIDR,
	}, opts.Args...)
	return c.StartProcess(Kwok, bin, args, nil)
}
