# The Tenire loop operator. `make help` lists the targets.

# The version the binaries print (--version) and the images' label carry;
# make release VERSION=v1.2.3 sets it (and the images' tags).
VERSION ?= dev
LDFLAGS = -X main.version=$(VERSION)
# Image names: the operator's and the default worker's.
IMG ?= ghcr.io/tenire/loop-operator:$(VERSION)
WORKER_IMG ?= ghcr.io/tenire/loop-worker:$(VERSION)
# The kind path (needs Docker; make kind builds kind into bin/).
KIND ?= $(LOCALBIN)/kind
KIND_CLUSTER ?= tenire
# The kind node image: empty for the one hack/kind-node/build.sh builds here
# without a registry (make kind-node-image); where a registry is reachable,
# kind's own, e.g. kindest/node:v1.37.2.
KIND_NODE_IMAGE ?=
# The NATS image of make kind-create: empty for the one make nats-image
# assembles here from the nats-server module this project tests against
# (tenire.local/nats-server:VERSION); where a registry is reachable, the
# image config/nats names (nats:2.12-alpine) or any other.
NATS_IMG ?=
# The image of examples/custom-worker that make kind-load loads for the
# kind suite (make custom-worker-image).
CUSTOM_WORKER_IMG ?= tenire.local/custom-worker:dev
NATS_BASE_IMG = nats:2.12-alpine
NATS_VERSION = $(shell go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
NATS_LOCAL_IMG = tenire.local/nats-server:$(NATS_VERSION)
CONTAINER_TOOL ?= docker

# Where the real control plane is built (outside the repository); see hack/kube-bins.sh.
KUBE_BINS_DIR = $(shell bash hack/kube-bins.sh --print-dir)

# Get the currently used golang install path (in GOPATH/bin, unless GOBIN is set).
ifeq (,$(shell go env GOBIN))
GOBIN=$(shell go env GOPATH)/bin
else
GOBIN=$(shell go env GOBIN)
endif

# Setting SHELL to bash allows bash commands to be executed by recipes.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Demo

.PHONY: demo
demo: ## The operator at work on a local control plane (no Docker): scale down under load, nothing lost.
	bash hack/demo.sh

.PHONY: demo-down
demo-down: ## Stop the demo's local cluster.
	@if [ -x bin/localcluster ]; then bin/localcluster down --dir "$${DEMO_DIR:-$(CURDIR)/bin/demo}"; else echo "no demo cluster (bin/localcluster is missing)"; fi

##@ Benchmarks

.PHONY: bench
bench: kube-bins ## Measure the pool, the queue path, the operator (one loop and many), drains and autoscaling beside their anchors; writes docs/benchmarks.md (part 8 at the goal size, 1,000 × 10; about 80 min, on an idle machine).
	go run ./hack/bench -out docs/benchmarks.md

.PHONY: bench-smoke
bench-smoke: kube-bins ## Run every part of make bench once with small sizes (CI): checks that it works, measures nothing.
	go run ./hack/bench -quick -out bin/bench/smoke.md

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC manifests from the markers in api/ and controllers/, trimmed to fit a client-side kubectl apply.
	"$(CONTROLLER_GEN)" rbac:roleName=manager-role crd:generateEmbeddedObjectMeta=true paths="./..." output:crd:artifacts:config=config/crd/bases
	go run ./hack/crdtrim -path spec.template config/crd/bases/loops.tenire.io_loopdeployments.yaml
	cp config/crd/bases/loops.tenire.io_loopdeployments.yaml charts/loop-operator/crds/

.PHONY: generate
generate: controller-gen ## Generate the DeepCopy methods of the API types.
	"$(CONTROLLER_GEN)" object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run go fmt against the code.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet against the code.
	go vet ./...

.PHONY: kube-bins
kube-bins: ## Build the real control plane (apiserver, controller-manager, scheduler, etcd, kwok) into the cache, once.
	bash hack/kube-bins.sh

.PHONY: test
test: manifests generate fmt vet kube-bins node-deps ## Run the unit and envtest suites with -race (not e2e).
	KUBEBUILDER_ASSETS="$(KUBE_BINS_DIR)" go test -race -count=1 $$(go list ./... | grep -v /test/e2e) -coverprofile cover.out

# The Node.js producer example's pinned dependencies, which its test in
# make test runs; npm ci again only when the lock file changes.
NODE_PRODUCER = examples/node-producer
.PHONY: node-deps
node-deps: $(NODE_PRODUCER)/node_modules/.package-lock.json ## Install the Node.js producer example's pinned dependencies (npm ci), for its test.
$(NODE_PRODUCER)/node_modules/.package-lock.json: $(NODE_PRODUCER)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "make test runs the Node.js producer example: install Node.js 18 or later and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix $(NODE_PRODUCER) --no-audit --no-fund --cache "$(HOME)/.cache/npm"
	@touch $@

# Every Go fuzz test, as package:Target; make fuzz runs each for FUZZTIME.
FUZZ_TARGETS = ./worker/queue:FuzzNewDelivery ./worker/queue:FuzzDeliveryCounts ./worker/settings:FuzzParse \
	./worker/pool:FuzzQueue ./api/v1alpha1/contract:FuzzParseDrainRequest
FUZZTIME ?= 15s
# The Go that fuzzes. Go 1.26's fuzzing coordinator can fail a target with
# a bare "context deadline exceeded" when -fuzztime ends while a worker is
# still busy (go.dev/issue/75804, no input at fault, none written); Go 1.27
# has the fix. The go command fetches this toolchain from the module proxy
# (about 76 MB, once); everything else builds with the machine's Go.
FUZZ_GOTOOLCHAIN ?= go1.27.3

.PHONY: fuzz
fuzz: ## Fuzz the task envelope and headers, the delivery counts, the settings, the pool's queue and the drain annotations, FUZZTIME (15s) each; CI runs it.
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "fuzzing $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
	  GOTOOLCHAIN=$(FUZZ_GOTOOLCHAIN) go test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done
	@test "$$(grep -rh --include='*_test.go' '^func Fuzz' . | wc -l)" -eq "$(words $(FUZZ_TARGETS))" || \
	  { echo "FUZZ_TARGETS does not list every fuzz test (grep -rn '^func Fuzz' .)"; exit 1; }

# The end-to-end tests outside test/e2e (files tagged e2e in these
# packages). make test already runs the rest of these packages; test-e2e
# runs only these, before test/e2e rather than beside it, so that the
# timing-sensitive scenarios do not share the CPUs with a second run of the
# unit tests.
E2E_PACKAGES = ./internal/... ./controllers/... ./config/...
E2E_OTHER_TESTS = TestClusterAndNATS TestUpDown TestNodeAgent TestWithTheControllerManager TestInstallOnALocalControlPlane

.PHONY: test-e2e
test-e2e: kube-bins ## Run the end-to-end suites (local control plane, node agent, manager and workers as processes, NATS; the installers of config/ and charts/).
	@found="$$(grep -rl --include='*_test.go' '^//go:build e2e' internal controllers config | xargs sed -n 's/^func \(Test[A-Za-z0-9_]*\)(.*/\1/p' | grep -vx TestMain | sort | xargs)"; \
	  test "$$found" = "$(sort $(E2E_OTHER_TESTS))" || \
	  { echo "E2E_OTHER_TESTS ($(sort $(E2E_OTHER_TESTS))) is not the e2e tests outside test/e2e ($$found)"; exit 1; }
	KUBEBUILDER_ASSETS="$(KUBE_BINS_DIR)" go test -tags e2e -race -count=1 -timeout 20m -run '^($(subst $(eval) ,|,$(E2E_OTHER_TESTS)))$$' $(E2E_PACKAGES)
	KUBEBUILDER_ASSETS="$(KUBE_BINS_DIR)" go test -tags e2e -race -count=1 -timeout 60m $(if $(E2E_LOCAL_RUN),-run '$(E2E_LOCAL_RUN)') ./test/...

# A go test -run pattern for the scenarios of make test-e2e in test/e2e;
# empty runs them all.
E2E_LOCAL_RUN ?=

# The scenarios that only the local control plane runs: those of test/e2e
# in files built without kind ("e2e && !kind"), less the benchmarks, which
# make bench-smoke runs.
E2E_LOCAL_ONLY = $(shell grep -l '^//go:build e2e && !kind' test/e2e/*_test.go | xargs grep -ho '^func Test[A-Za-z0-9_]*' | cut -d' ' -f2 | grep -vx TestMain | grep -v '^TestBench' | sort)

# What .ci/run runs on the local control plane: the e2e tests outside
# test/e2e and the scenarios that have no kind variant. Every other scenario
# runs in kind (make kind-path, on real kubelets and containers), so that CI
# runs each scenario once and stays within its hour; make test-e2e still
# runs them all here.
.PHONY: test-e2e-local-only
test-e2e-local-only: E2E_LOCAL_RUN = ^($(subst $(eval) ,|,$(E2E_LOCAL_ONLY)))$$
test-e2e-local-only: test-e2e ## Run make test-e2e with only the scenarios that have no kind variant (CI runs the others in make kind-path).
	@test -n "$(E2E_LOCAL_ONLY)" || { echo "no local-only scenario found in test/e2e"; exit 1; }

.PHONY: lint
lint: golangci-lint ## Run golangci-lint on everything, the e2e suite included, then on the kind variant of the e2e suite and on the image tests.
	"$(GOLANGCI_LINT)" run
	"$(GOLANGCI_LINT)" run --build-tags e2e,kind ./test/e2e/...
	"$(GOLANGCI_LINT)" run --build-tags images ./test/images/...

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and apply its fixes.
	"$(GOLANGCI_LINT)" run --fix

.PHONY: verify-generated
verify-generated: manifests generate ## Fail when generated files differ from what is committed.
	@git diff --exit-code -- config api || { echo "generated files are stale: run make manifests generate and commit"; exit 1; }

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager, loop-worker and kubectl-loops binaries into bin/.
	go build -ldflags="$(LDFLAGS)" -o bin/manager ./cmd/manager
	go build -ldflags="$(LDFLAGS)" -o bin/loop-worker ./cmd/loop-worker
	go build -ldflags="$(LDFLAGS)" -o bin/kubectl-loops ./cmd/kubectl-loops

.PHONY: install-plugin
install-plugin: ## Install the kubectl plugin (kubectl loops) into GOBIN, which must be on PATH.
	go install -ldflags="$(LDFLAGS)" ./cmd/kubectl-loops
	@echo "installed $(GOBIN)/kubectl-loops; kubectl plugin list should show it"

.PHONY: run
run: manifests generate fmt vet ## Run the manager against the cluster of the current kubeconfig.
	go run ./cmd/manager --leader-elect=false

.PHONY: build-installer
build-installer: manifests ## Write dist/install.yaml: config/default (CRD, RBAC, admission policy, operator with image $(IMG)) as one file for kubectl apply -f.
	go run ./hack/installer -image $(IMG) -out dist/install.yaml

# The plugin's platforms in a release (krew's archives).
PLUGIN_PLATFORMS = linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
RELEASE_DIR = dist/release

.PHONY: release
release: ## Make release VERSION=vX.Y.Z into dist/release: installer, chart package, image archives, plugin archives, SHA256SUMS; and dist/krew/loops.yaml.
	@[[ "$(VERSION)" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]] || { echo "make release needs VERSION=vX.Y.Z (got $(VERSION))"; exit 1; }
	rm -rf $(RELEASE_DIR) && mkdir -p $(RELEASE_DIR)
	go run ./hack/installer -image $(IMG) -out $(RELEASE_DIR)/install.yaml
	go run ./hack/release chart -version $(VERSION) -out $(RELEASE_DIR)
	$(MAKE) images VERSION=$(VERSION) IMG=$(IMG) WORKER_IMG=$(WORKER_IMG)
	cp bin/images/manager.tar $(RELEASE_DIR)/loop-operator-image_$(VERSION).tar
	cp bin/images/loop-worker.tar $(RELEASE_DIR)/loop-worker-image_$(VERSION).tar
	@set -e; for p in $(PLUGIN_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; dir=bin/plugin/$${os}_$${arch}; mkdir -p $$dir; \
	  echo "kubectl-loops $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -trimpath -ldflags="-s -w $(LDFLAGS)" -o $$dir/kubectl-loops ./cmd/kubectl-loops; \
	  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C $$dir -cf - kubectl-loops | gzip -n > $(RELEASE_DIR)/kubectl-loops_$${os}_$${arch}.tar.gz; \
	done
	cd $(RELEASE_DIR) && sha256sum * | grep -v SHA256SUMS > SHA256SUMS
	go run ./hack/release krew -version $(VERSION) -sums $(RELEASE_DIR)/SHA256SUMS -out dist/krew/loops.yaml
	@echo "release $(VERSION) in $(RELEASE_DIR):"; ls -l $(RELEASE_DIR) dist/krew

##@ Images and kind

.PHONY: images
images: ## Build both images as archives in bin/images without Docker, and verify entrypoint, user and static binary.
	@mkdir -p bin/static bin/images
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $(LDFLAGS)" -o bin/static/manager ./cmd/manager
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $(LDFLAGS)" -o bin/static/loop-worker ./cmd/loop-worker
	go run ./hack/ociimage build --binary bin/static/manager --entrypoint /manager --tag $(IMG) --version $(VERSION) --out bin/images/manager.tar
	go run ./hack/ociimage build --binary bin/static/loop-worker --entrypoint /loop-worker --tag $(WORKER_IMG) --version $(VERSION) --out bin/images/loop-worker.tar
	go run ./hack/ociimage verify --archive bin/images/manager.tar --entrypoint /manager
	go run ./hack/ociimage verify --archive bin/images/loop-worker.tar --entrypoint /loop-worker

.PHONY: custom-worker-image
custom-worker-image: ## Build the image of examples/custom-worker without Docker as bin/images/custom-worker.tar ($(CUSTOM_WORKER_IMG)), for make test-e2e-kind.
	@mkdir -p bin/static bin/images
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o bin/static/custom-worker ./examples/custom-worker
	go run ./hack/ociimage build --binary bin/static/custom-worker --entrypoint /custom-worker --tag $(CUSTOM_WORKER_IMG) --version $(VERSION) --out bin/images/custom-worker.tar
	go run ./hack/ociimage verify --archive bin/images/custom-worker.tar --entrypoint /custom-worker

.PHONY: nats-image
nats-image: ## Build the NATS image of the kind path without a registry: nats-server of go.mod, static, as bin/images/nats.tar ($(NATS_LOCAL_IMG)).
	@mkdir -p bin/static bin/images
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o bin/static/nats-server github.com/nats-io/nats-server/v2
	go run ./hack/ociimage build --binary bin/static/nats-server --entrypoint /nats-server --tag $(NATS_LOCAL_IMG) --version $(NATS_VERSION) --source https://github.com/nats-io/nats-server --out bin/images/nats.tar
	go run ./hack/ociimage verify --archive bin/images/nats.tar --entrypoint /nats-server

.PHONY: docker-up
docker-up: ## Make sure a Docker daemon answers: install Debian's docker.io and start dockerd when needed (hack/docker-up.sh).
	bash hack/docker-up.sh

.PHONY: test-images
test-images: images nats-image docker-up ## Run the images in real containers as a kubelet would (read-only root, non-root, no capabilities): the worker standalone and bound to a queue, the manager against a real API server, the kind path's NATS as config/nats runs it.
	KUBEBUILDER_ASSETS="$(KUBE_BINS_DIR)" NATS_IMG="$(NATS_LOCAL_IMG)" go test -tags images -race -count=1 -timeout 10m ./test/images/ -v

.PHONY: docker-build
docker-build: ## Build both images with Docker from hack/Dockerfile (kind path).
	$(CONTAINER_TOOL) build -f hack/Dockerfile --build-arg VERSION=$(VERSION) --target manager -t $(IMG) .
	$(CONTAINER_TOOL) build -f hack/Dockerfile --build-arg VERSION=$(VERSION) --target loop-worker -t $(WORKER_IMG) .

# The nodes of the kind cluster: a control plane and three workers.
KIND_CONFIG ?= hack/kind-config.yaml
# The kubeconfig of test-e2e-kind; empty: the kind cluster's own, written
# to bin/ by `kind get kubeconfig`.
KIND_KUBECONFIG ?=

.PHONY: kind-node-image
kind-node-image: docker-up ## Build the kind node image without a registry (hack/kind-node/build.sh: Debian, kind's base files, Kubernetes from source), cached under ~/.cache/tenire, and load it into Docker.
	bash hack/kind-node/build.sh

.PHONY: kind-create
kind-create: kind $(if $(KIND_NODE_IMAGE),docker-up,kind-node-image) $(if $(NATS_IMG),,nats-image) ## Create the kind cluster $(KIND_CLUSTER) (nodes of $(KIND_CONFIG), image $(KIND_NODE_IMAGE) or the local one) and deploy the development NATS (config/nats, image $(NATS_IMG) or the local one) into it.
	$(KIND) create cluster --name $(KIND_CLUSTER) --config $(KIND_CONFIG) --image "$(or $(KIND_NODE_IMAGE),$(shell bash hack/kind-node/build.sh --print-image))"
	$(if $(NATS_IMG),,$(KIND) load image-archive bin/images/nats.tar --name $(KIND_CLUSTER))
	kubectl kustomize config/nats | sed 's|image: $(NATS_BASE_IMG)$$|image: $(or $(NATS_IMG),$(NATS_LOCAL_IMG))|' | kubectl apply -f -
	kubectl -n nats rollout status statefulset/nats --timeout=3m

.PHONY: kind-load
kind-load: kind images custom-worker-image ## Load both images, as make images assembles them (no Docker build, no registry), and the custom worker example's into the kind cluster $(KIND_CLUSTER).
	$(KIND) load image-archive bin/images/manager.tar --name $(KIND_CLUSTER)
	$(KIND) load image-archive bin/images/loop-worker.tar --name $(KIND_CLUSTER)
	$(KIND) load image-archive bin/images/custom-worker.tar --name $(KIND_CLUSTER)

.PHONY: kind-delete
kind-delete: kind ## Delete the kind cluster $(KIND_CLUSTER).
	$(KIND) delete cluster --name $(KIND_CLUSTER)

.PHONY: test-e2e-kind
test-e2e-kind: ## Run the end-to-end suite (the scenarios of E2E_RUN, all when empty) against the kind cluster $(KIND_CLUSTER); needs make kind-create kind-load deploy first.
	@kubeconfig="$(KIND_KUBECONFIG)"; \
	if [ -z "$$kubeconfig" ]; then \
	  command -v $(KIND) >/dev/null || { echo "$(KIND) is not installed: make test-e2e-kind needs Docker and kind (docs/development.md)"; exit 1; }; \
	  mkdir -p "$(LOCALBIN)"; kubeconfig="$(LOCALBIN)/kind-$(KIND_CLUSTER).kubeconfig"; \
	  $(KIND) get kubeconfig --name $(KIND_CLUSTER) > "$$kubeconfig" || { echo "no kind cluster $(KIND_CLUSTER): run make kind-create kind-load deploy first"; exit 1; }; \
	fi; \
	kubectl --kubeconfig "$$kubeconfig" get --raw /readyz >/dev/null || { echo "the cluster of $$kubeconfig does not answer"; exit 1; }; \
	kubectl --kubeconfig "$$kubeconfig" -n nats get statefulset nats >/dev/null || { echo "no NATS in the cluster: run make kind-create (or kubectl apply -k config/nats)"; exit 1; }; \
	kubectl --kubeconfig "$$kubeconfig" -n tenire-system get deployment loop-operator-controller-manager >/dev/null || { echo "the operator is not deployed: run make kind-load deploy"; exit 1; }; \
	echo "KUBECONFIG=$$kubeconfig go test -tags e2e,kind ./test/e2e/ (worker image $(WORKER_IMG))"; \
	KUBECONFIG="$$kubeconfig" E2E_WORKER_IMAGE="$(WORKER_IMG)" E2E_CUSTOM_WORKER_IMAGE="$(CUSTOM_WORKER_IMG)" go test -tags e2e,kind -race -count=1 -timeout 60m $(if $(E2E_RUN),-run '$(E2E_RUN)') ./test/e2e/

# The scenarios of make test-e2e-kind and make kind-path: a go test -run
# pattern; empty runs them all.
E2E_RUN ?=

.PHONY: kind-path
kind-path: kind ## The whole kind path in a new cluster $(KIND_CLUSTER) (hack/kind-path.sh): kind-create, kind-load, deploy, the README's sample through kubectl loops submit --wait, test-e2e-kind (E2E_RUN), then kind-delete; KEEP_CLUSTER=1 keeps it.
	KIND_CLUSTER="$(KIND_CLUSTER)" E2E_RUN="$(E2E_RUN)" bash hack/kind-path.sh

.PHONY: lint-e2e-kind
lint-e2e-kind: golangci-lint ## Lint only the kind variant of the e2e suite (build tags e2e,kind); make lint runs this too.
	"$(GOLANGCI_LINT)" run --build-tags e2e,kind ./test/e2e/...

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests ## Install the CRD into the cluster of the current kubeconfig.
	kubectl apply -f config/crd/bases

.PHONY: deploy
deploy: manifests ## Deploy the operator (CRD, RBAC, manager with image $(IMG)) to the cluster of the current kubeconfig.
	kubectl kustomize config/default | sed 's|image: ghcr.io/tenire/loop-operator:latest|image: $(IMG)|' | kubectl apply --server-side --force-conflicts -f -
	kubectl -n tenire-system rollout status deployment/loop-operator-controller-manager --timeout=3m

.PHONY: undeploy
undeploy: ## Remove the operator from the cluster of the current kubeconfig.
	kubectl kustomize config/default | kubectl delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: uninstall
uninstall: manifests ## Remove the CRD from the cluster of the current kubeconfig.
	kubectl delete --ignore-not-found=$(ignore-not-found) -f config/crd/bases

##@ Dependencies

## Location to install dependencies to
LOCALBIN ?= $(shell pwd)/bin
$(LOCALBIN):
	mkdir -p "$(LOCALBIN)"

## Tool Binaries
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint

## Tool Versions
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
KIND_VERSION ?= v0.33.0

.PHONY: kind
kind: $(LOCALBIN)/kind ## Build kind $(KIND_VERSION) into bin/ if necessary.
$(LOCALBIN)/kind: $(LOCALBIN)
	$(call go-install-tool,$(LOCALBIN)/kind,sigs.k8s.io/kind,$(KIND_VERSION))

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Download controller-gen locally if necessary.
$(CONTROLLER_GEN): $(LOCALBIN)
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Download golangci-lint locally if necessary.
$(GOLANGCI_LINT): $(LOCALBIN)
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

# go-install-tool will 'go install' any package with custom target and name of binary, if it doesn't exist
# $1 - target path with name of binary
# $2 - package url which can be installed
# $3 - specific version of package
define go-install-tool
@[ -f "$(1)-$(3)" ] && [ "$$(readlink -- "$(1)" 2>/dev/null)" = "$(1)-$(3)" ] || { \
set -e; \
package=$(2)@$(3) ;\
echo "Downloading $${package}" ;\
rm -f "$(1)" ;\
GOBIN="$(LOCALBIN)" go install $${package} ;\
mv "$(LOCALBIN)/$$(basename "$(1)")" "$(1)-$(3)" ;\
} ;\
ln -sf "$$(realpath "$(1)-$(3)")" "$(1)"
endef
