// Command crdtrim removes the descriptions from the parts of a generated
// CustomResourceDefinition's schema that document someone else's type, so
// that the CRD fits in the annotation of a client-side `kubectl apply`
// (256 KiB). make manifests runs it on config/crd/bases after controller-gen.
//
//	go run ./hack/crdtrim -path spec.template file.yaml...
//
// Only the "description" of the schema nodes under each -path (a dotted
// path of property names from the root of openAPIV3Schema) goes: types,
// required lists, formats, enums, defaults and x-kubernetes-* rules stay,
// and so does the description of the node at the path itself. The
// LoopDeployment's pod template is a corev1.PodTemplateSpec, documented by
// `kubectl explain pod.spec`; our own fields keep their documentation.
//
// The output is deterministic and crdtrim is idempotent: running it twice
// changes nothing the second time.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

type paths []string

func (p *paths) String() string     { return strings.Join(*p, ",") }
func (p *paths) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	var ps paths
	flag.Var(&ps, "path", "dotted path of properties from the root of openAPIV3Schema whose subtree loses its descriptions (repeatable)")
	flag.Parse()
	if len(ps) == 0 || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: crdtrim -path spec.template FILE...")
		os.Exit(2)
	}
	for _, f := range flag.Args() {
		if err := trimFile(f, ps); err != nil {
			fmt.Fprintln(os.Stderr, "crdtrim:", err)
			os.Exit(1)
		}
	}
}

func trimFile(name string, ps []string) error {
	in, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	out, err := Trim(in, ps)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if bytes.Equal(in, out) {
		return nil
	}
	return os.WriteFile(name, out, 0o644)
}

// Trim returns the CRD of in (YAML, one document, an optional leading
// "---" kept) with the descriptions under each path removed in every
// version's schema. A path that is missing from a version is an error, so
// that a renamed field does not silently bring the descriptions back.
func Trim(in []byte, ps []string) ([]byte, error) {
	body := in
	header := ""
	if bytes.HasPrefix(body, []byte("---\n")) {
		header, body = "---\n", body[len("---\n"):]
	}
	var crd map[string]any
	if err := yaml.Unmarshal(body, &crd); err != nil {
		return nil, err
	}
	spec, _ := crd["spec"].(map[string]any)
	versions, _ := spec["versions"].([]any)
	if len(versions) == 0 {
		return nil, errors.New("not a CustomResourceDefinition with spec.versions")
	}
	for _, v := range versions {
		ver, _ := v.(map[string]any)
		schema, _ := ver["schema"].(map[string]any)
		root, _ := schema["openAPIV3Schema"].(map[string]any)
		if root == nil {
			return nil, fmt.Errorf("version %v has no openAPIV3Schema", ver["name"])
		}
		for _, p := range ps {
			node := root
			for _, name := range strings.Split(p, ".") {
				props, _ := node["properties"].(map[string]any)
				next, _ := props[name].(map[string]any)
				if next == nil {
					return nil, fmt.Errorf("version %v: no property %q on the path %s", ver["name"], name, p)
				}
				node = next
			}
			stripChildren(node)
		}
	}
	out, err := yaml.Marshal(crd)
	if err != nil {
		return nil, err
	}
	return append([]byte(header), out...), nil
}

// stripChildren removes the descriptions of every schema below s, not s's own.
func stripChildren(s map[string]any) {
	for _, child := range children(s) {
		delete(child, "description")
		stripChildren(child)
	}
}

// children lists the sub-schemas of a schema node: properties,
// additionalProperties, items, allOf, anyOf, oneOf and not. A property named
// "description" is a sub-schema, not a description, and is kept.
func children(s map[string]any) []map[string]any {
	var out []map[string]any
	add := func(v any) {
		if m, ok := v.(map[string]any); ok {
			out = append(out, m)
		}
	}
	if props, ok := s["properties"].(map[string]any); ok {
		for _, p := range props {
			add(p)
		}
	}
	add(s["additionalProperties"])
	add(s["items"])
	add(s["not"])
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		if l, ok := s[k].([]any); ok {
			for _, v := range l {
				add(v)
			}
		}
	}
	return out
}
