// Package images runs the project's two images in real containers under
// Docker, as a kubelet would run them: non-root, every capability
// dropped, no privilege escalation, a read-only root file system. Its
// tests carry the build tag images: `make test-images` builds the archives
// (make images), makes sure a Docker daemon answers (hack/docker-up.sh)
// and runs them; CI does. Without a Docker daemon they fail under CI=true
// and are skipped otherwise.
package images
