package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// writeStorageSource writes a kind module folder whose const_storage.go
// holds src.
func writeStorageSource(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, storageFile), src, 0o644)
	return dir
}

const kindStorageSource = `package nodeimage

const storageProvisionerImage = "docker.io/kindest/local-path-provisioner:v1"
const storageHelperImage = "docker.io/kindest/local-path-helper:v1"

var defaultStorageImages = []string{storageProvisionerImage, storageHelperImage}

const defaultStorageManifest = ` + "`" + `
kind: Deployment
      containers:
        - image: ` + "` + storageProvisionerImage + `" + `
          command: [local-path-provisioner, start, --helper-image, ` + "` + storageHelperImage + `" + `]
---
  helperPod.yaml: |-
      - image: ` + "` + storageHelperImage + `" + `
` + "`" + `
`

func TestTheStorageManifestIsKindsWithTheLocalImages(t *testing.T) {
	dir := writeStorageSource(t, kindStorageSource)
	var out bytes.Buffer
	err := run([]string{"storage-manifest", "--kind-src", dir,
		"--provisioner-image", "tenire.local/local-path-provisioner:v0.0.33",
		"--helper-image", "tenire.local/kind-node-tools:abc"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	want := `
kind: Deployment
      containers:
        - image: tenire.local/local-path-provisioner:v0.0.33
          command: [local-path-provisioner, start, --helper-image, tenire.local/kind-node-tools:abc]
---
  helperPod.yaml: |-
      - image: tenire.local/kind-node-tools:abc
`
	if got != want {
		t.Errorf("storage-manifest printed\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(got, "kindest") {
		t.Error("the manifest still names one of kind's images")
	}
}

func TestAStorageManifestOfAnotherShapeIsRefused(t *testing.T) {
	for name, src := range map[string]string{
		"missing":     "package nodeimage\n\nconst other = `x`\n",
		"unknown":     "package nodeimage\n\nconst defaultStorageManifest = `a` + someOtherImage + `b` + storageHelperImage + storageProvisionerImage\n",
		"unused":      "package nodeimage\n\nconst defaultStorageManifest = `a` + storageProvisionerImage\n",
		"not-strings": "package nodeimage\n\nconst defaultStorageManifest = `a` + fmt.Sprint(storageHelperImage, storageProvisionerImage)\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeStorageSource(t, src)
			err := run([]string{"storage-manifest", "--kind-src", dir, "--provisioner-image", "p:1", "--helper-image", "h:1"}, &bytes.Buffer{})
			if err == nil {
				t.Fatal("storage-manifest accepted it")
			}
			t.Log(err)
		})
	}
	if err := run([]string{"storage-manifest", "--kind-src", t.TempDir()}, &bytes.Buffer{}); err == nil {
		t.Error("storage-manifest without images succeeded")
	}
	if err := run([]string{"storage-manifest", "--kind-src", t.TempDir(), "--provisioner-image", "p:1", "--helper-image", "h:1"}, &bytes.Buffer{}); err == nil {
		t.Error("storage-manifest without kind's source succeeded")
	}
}
