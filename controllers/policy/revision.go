package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	loopsv1alpha1 "github.com/tenire/loop-operator/api/v1alpha1"
)

// revisionInput is everything in a spec that ends up in a worker pod. The
// replica count, suspend, the drain budget and the update strategy do not change a
// pod, so they are left out: changing them never rolls the pods.
type revisionInput struct {
	Template     corev1.PodTemplateSpec  `json:"template"`
	Loop         loopsv1alpha1.LoopSpec  `json:"loop"`
	Queue        loopsv1alpha1.QueueSpec `json:"queue"`
	DrainTimeout *metav1.Duration        `json:"drainTimeout"`
}

// RevisionLength is the length of a revision: ten lower-case hexadecimal
// digits, a valid label value.
const RevisionLength = 10

// Revision returns the hash of the pod template, the loop and queue
// settings and the drain timeout of spec, defaults applied. Two specs that
// give the same pods have the same revision; any change to what a pod runs
// gives a new one, which starts a rolling update.
func Revision(spec loopsv1alpha1.LoopDeploymentSpec) (string, error) {
	spec = loopsv1alpha1.WithDefaults(spec)
	in := revisionInput{
		Template:     spec.Template,
		Loop:         spec.Loop,
		Queue:        spec.Queue,
		DrainTimeout: spec.Drain.Timeout,
	}
	// encoding/json sorts map keys, so the encoding is deterministic.
	b, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("encoding the spec for its revision: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:RevisionLength], nil
}
