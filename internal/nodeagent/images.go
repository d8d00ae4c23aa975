package nodeagent

import (
	"fmt"
	"strings"
)

// ImageRule maps container images to a local binary.
type ImageRule struct {
	// Match is a substring of the image reference, for example
	// "loop-worker" for ghcr.io/tenire/loop-worker:dev.
	Match string
	// Binary is the path of the local executable run for such an image.
	Binary string
}

// ImageMap is an ordered list of rules; the first that matches wins.
type ImageMap []ImageRule

// Resolve returns the binary for an image.
func (m ImageMap) Resolve(image string) (string, bool) {
	for _, r := range m {
		if r.Match != "" && strings.Contains(image, r.Match) {
			return r.Binary, true
		}
	}
	return "", false
}

// String lists the rules as MATCH=BINARY pairs separated by commas, the
// format ParseImageMap reads.
func (m ImageMap) String() string {
	parts := make([]string, len(m))
	for i, r := range m {
		parts[i] = r.Match + "=" + r.Binary
	}
	return strings.Join(parts, ",")
}

// ParseImageMap reads rules written as MATCH=BINARY pairs separated by
// commas, e.g. "loop-worker=/path/to/bin/loop-worker".
func ParseImageMap(s string) (ImageMap, error) {
	var m ImageMap
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		match, bin, ok := strings.Cut(part, "=")
		if !ok || match == "" || bin == "" {
			return nil, fmt.Errorf("nodeagent: image rule %q is not MATCH=BINARY", part)
		}
		m = append(m, ImageRule{Match: match, Binary: bin})
	}
	return m, nil
}
