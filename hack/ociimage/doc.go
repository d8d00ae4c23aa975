// Command ociimage assembles the project's images without Docker: a static
// binary on an empty base with a passwd entry for the non-root user 65532
// and the CA bundle, written as an image archive that `docker load` and
// `kind load image-archive` accept. It mirrors hack/Dockerfile (whose base,
// distroless/static:nonroot, holds the same three things).
//
//	ociimage build  --binary bin/manager --entrypoint /manager --tag ghcr.io/tenire/loop-operator:dev --out bin/images/manager.tar
//	ociimage verify --archive bin/images/manager.tar --entrypoint /manager
//
// verify reads an archive back and checks what CI must be sure of: the
// entrypoint is a regular, executable, statically linked ELF file in the
// image, and the image runs as a non-root user.
package main
