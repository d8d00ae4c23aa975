// Package manifests builds the operator's manifests from config/ with
// kustomize's Go library, as `kubectl kustomize` does, for the generators
// of hack/ (the single-file installer, the Helm chart's check) and the
// tests that apply them.
package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"
)

const (
	// Namespace is where config/default puts the operator.
	Namespace = "tenire-system"
	// ManagerDeployment is the operator's Deployment in config/default.
	ManagerDeployment = "loop-operator-controller-manager"
	// ManagerContainer is its container.
	ManagerContainer = "manager"
)

// Kustomize returns the output of `kustomize build dir` as YAML.
func Kustomize(dir string) ([]byte, error) {
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionLegacy // namespaces first, as kubectl kustomize does
	k := krusty.MakeKustomizer(opts)
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return m.AsYaml()
}

// Objects splits a multi-document YAML stream into objects.
func Objects(b []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := d.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// Installer is config/default built into one file for `kubectl apply -f`,
// with the operator's image set to image (config/ names
// ghcr.io/tenire/loop-operator:latest).
func Installer(repoRoot, image string) ([]byte, error) {
	b, err := Kustomize(filepath.Join(repoRoot, "config", "default"))
	if err != nil {
		return nil, err
	}
	objs, err := Objects(b)
	if err != nil {
		return nil, err
	}
	set := false
	var out bytes.Buffer
	for _, o := range objs {
		if o.GetKind() == "Deployment" && o.GetName() == ManagerDeployment {
			if err := setImage(o, ManagerContainer, image); err != nil {
				return nil, err
			}
			set = true
		}
		y, err := sigsyaml.Marshal(o.Object)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(y)
	}
	if !set {
		return nil, fmt.Errorf("config/default has no Deployment %s", ManagerDeployment)
	}
	return out.Bytes(), nil
}

func setImage(o *unstructured.Unstructured, container, image string) error {
	cs, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if err != nil {
		return err
	}
	for i, c := range cs {
		m := c.(map[string]any)
		if m["name"] == container {
			m["image"] = image
			cs[i] = m
			return unstructured.SetNestedSlice(o.Object, cs, "spec", "template", "spec", "containers")
		}
	}
	return fmt.Errorf("deployment %s has no container %s", o.GetName(), container)
}
