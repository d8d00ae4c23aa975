package main

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

//nolint:dupword // a property named "description" with its description, on purpose
const sample = `---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: things.example.com
spec:
  versions:
  - name: v1
    schema:
      openAPIV3Schema:
        description: Thing is ours.
        properties:
          spec:
            description: spec is ours.
            properties:
              template:
                description: template is documented.
                properties:
                  description:
                    description: a property named description.
                    type: string
                  list:
                    description: gone.
                    items:
                      description: gone too.
                      required:
                      - name
                      type: object
                    type: array
                type: object
            type: object
            x-kubernetes-validations:
            - message: kept
              rule: self.size() > 0
        type: object
`

func TestTrimRemovesOnlyDescriptionsUnderThePath(t *testing.T) {
	out, err := Trim([]byte(sample), []string{"spec.template"})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, gone := range []string{"gone.", "gone too.", "a property named description."} {
		if strings.Contains(s, gone) {
			t.Errorf("%q is still there:\n%s", gone, s)
		}
	}
	for _, kept := range []string{"---\n", "Thing is ours.", "spec is ours.", "template is documented.", "rule: self.size() > 0", "- name", "type: array"} {
		if !strings.Contains(s, kept) {
			t.Errorf("%q is missing:\n%s", kept, s)
		}
	}
	var crd map[string]any
	if err := yaml.Unmarshal(out, &crd); err != nil {
		t.Fatal(err)
	}
	again, err := Trim(out, []string{"spec.template"})
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != s {
		t.Errorf("a second run changed the output")
	}
}

func TestTrimFailsOnAMissingPath(t *testing.T) {
	if _, err := Trim([]byte(sample), []string{"spec.podTemplate"}); err == nil {
		t.Fatal("a path that names no property was accepted")
	}
}
