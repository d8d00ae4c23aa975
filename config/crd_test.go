package config_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// crdFile is the generated CRD, trimmed by hack/crdtrim (make manifests).
var crdFile = filepath.Join("crd", "bases", "loops.tenire.io_loopdeployments.yaml")

// maxCRDJSON bounds the CRD as a client-side kubectl apply stores it: the
// object as compact JSON in the annotation
// kubectl.kubernetes.io/last-applied-configuration, whose limit (all
// annotations together) is 256 KiB. Half of it leaves room to grow.
const maxCRDJSON = 128 << 10

func readCRD(t *testing.T) (*apiextensionsv1.CustomResourceDefinition, []byte) {
	t.Helper()
	raw, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := json.Unmarshal(js, crd); err != nil {
		t.Fatal(err)
	}
	return crd, js
}

func TestCRDFitsAClientSideApply(t *testing.T) {
	_, js := readCRD(t)
	if len(js) > maxCRDJSON {
		t.Fatalf("the CRD is %d bytes as JSON, over the stated limit of %d (a client-side kubectl apply keeps it in an annotation limited to 256 KiB): trim more in make manifests (hack/crdtrim)", len(js), maxCRDJSON)
	}
	t.Logf("the CRD is %d bytes as JSON (limit %d)", len(js), maxCRDJSON)
}

func TestCRDDocumentsOurFieldsOnly(t *testing.T) {
	crd, _ := readCRD(t)
	for _, v := range crd.Spec.Versions {
		root := v.Schema.OpenAPIV3Schema
		// Our fields, everywhere but the pod template, keep their documentation.
		var walk func(path string, s *apiextensionsv1.JSONSchemaProps)
		walk = func(path string, s *apiextensionsv1.JSONSchemaProps) {
			for name, p := range s.Properties {
				sub := path + "." + name
				if sub == ".metadata" { // the standard ObjectMeta, documented by the API server
					continue
				}
				if strings.TrimSpace(p.Description) == "" {
					t.Errorf("%s: %s has no description (kubectl explain loopdeployment%s would show none)", v.Name, sub, sub)
				}
				if sub == ".spec.template" {
					continue
				}
				walk(sub, &p)
				if p.Items != nil && p.Items.Schema != nil {
					walk(sub, p.Items.Schema)
				}
				if p.AdditionalProperties != nil && p.AdditionalProperties.Schema != nil {
					walk(sub, p.AdditionalProperties.Schema)
				}
			}
		}
		walk("", root)

		// The pod template keeps its validation, without the descriptions
		// that kubectl explain pod.spec gives.
		tmpl := root.Properties["spec"].Properties["template"]
		podSpec := tmpl.Properties["spec"]
		containers := podSpec.Properties["containers"]
		if podSpec.Description != "" || containers.Description != "" {
			t.Errorf("%s: the pod template still has descriptions (hack/crdtrim did not run)", v.Name)
		}
		if containers.Type != "array" || containers.Items == nil || !contains(containers.Items.Schema.Required, "name") {
			t.Errorf("%s: the pod template lost its validation: containers is %q, items required %v", v.Name, containers.Type, containers.Items)
		}
		if len(root.Properties["spec"].XValidations) == 0 {
			t.Errorf("%s: the CEL rules of spec are gone", v.Name)
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
