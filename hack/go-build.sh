# go-build.sh: shell functions that build a Go command of a module from the
# module proxy into a cache, once; sourced by hack/kube-bins.sh and
# hack/kind-node/build.sh. Each caller defines log MESSAGE and exports
# GOFLAGS=-mod=mod and CGO_ENABLED=0.

# go_module MODULE VERSION SRC_DIR prints a folder under SRC_DIR holding a
# module that requires MODULE at VERSION (written once).
go_module() {
  local mod=$1 version=$2 dir="$3/${1//\//_}-$2"
  if [[ ! -f $dir/go.mod ]]; then
    mkdir -p "$dir"
    printf 'module tenire.local/%s\n\ngo 1.26\n\nrequire %s %s\n' "${mod##*/}" "$mod" "$version" >"$dir/go.mod.tmp"
    mv "$dir/go.mod.tmp" "$dir/go.mod"
  fi
  echo "$dir"
}

# go_build_once OUT MODULE_DIR PACKAGE LDFLAGS builds PACKAGE of the module
# in MODULE_DIR into OUT unless OUT is already there. The binary is linked
# to a temporary name and renamed into place only when the build succeeded,
# so a half-written file never passes for a finished one. It counts its
# builds in go_built and stops the script (exit 1) when a build fails.
go_built=0
go_build_once() {
  local out=$1 dir=$2 pkg=$3 ldflags=$4 name
  name=$(basename "$out")
  if [[ -x $out ]]; then
    log "$name: cached"
    return 0
  fi
  log "$name: building $pkg (this can take minutes)"
  local start=$SECONDS tmp
  tmp="$(dirname "$out")/.$name.tmp.$$"
  mkdir -p "$(dirname "$out")"
  if ! (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg"); then
    rm -f "$tmp"
    log "$name: the build failed"
    exit 1
  fi
  mv -f "$tmp" "$out"
  go_built=$((go_built + 1))
  log "$name: built in $((SECONDS - start))s"
}
