#!/usr/bin/env bash
# Builds ciel's images with ko and writes the release file: what `make release`
# runs.
#
#   KO_DOCKER_REPO=registry.example.com/ciel VERSION=v0.2.0 hack/release.sh
#
# 1. Renders config/ (interceptor, policies, the Triggers side with its Tasks
#    and Pipelines) with kustomize, labelling every object
#    app.kubernetes.io/version=$VERSION.
# 2. `ko resolve` builds every ko:// reference in it (the interceptor, the
#    reporter's none here, the ciel CLI of the Task and Pipeline defaults) for
#    linux/amd64 and linux/arm64, pushes each as an image index to
#    $KO_DOCKER_REPO/<name> (tag $VERSION) and replaces the reference with the
#    index's digest. The binaries get -X .../internal/version.version=$VERSION
#    (.ko.yaml), the images the OCI version label and annotation.
# 3. Refuses the result if any image of ours is left unpinned.
#
# Environment: KO_DOCKER_REPO, VERSION (required); KO (default: ko on PATH),
# KUSTOMIZE (a kustomize binary; default: kustomize, else `kubectl kustomize`),
# KO_DEFAULTBASEIMAGE (ko's own: another base image), OUT (default
# dist/release.yaml), REPORTER_OUT (default dist/reporter.yaml: the optional
# reporter install, rendered the same way), KO_FLAGS (more ko resolve flags).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

: "${KO_DOCKER_REPO:?set KO_DOCKER_REPO, the repository to push the images to, e.g. registry.example.com/ciel}"
: "${VERSION:?set VERSION, e.g. v0.2.0}"
# A Kubernetes label value and a semantic version (no build metadata: "+" is
# not allowed in labels).
if ! [[ $VERSION =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || [ ${#VERSION} -gt 63 ]; then
  echo "release: VERSION=$VERSION is not vMAJOR.MINOR.PATCH[-PRERELEASE] (at most 63 characters)" >&2
  exit 2
fi
KO=${KO:-ko}
OUT=${OUT:-dist/release.yaml}
REPORTER_OUT=${REPORTER_OUT:-dist/reporter.yaml}
export VERSION KO_DOCKER_REPO

render() { # render DIR: kustomize output of DIR (relative to a directory in dist/)
  if [ -n "${KUSTOMIZE:-}" ]; then "$KUSTOMIZE" build "$1"
  elif command -v kustomize >/dev/null; then kustomize build "$1"
  elif command -v kubectl >/dev/null; then kubectl kustomize "$1"
  else echo "release: neither kustomize nor kubectl found (make release installs kustomize into bin/)" >&2; return 1
  fi
}

mkdir -p dist "$(dirname "$OUT")" "$(dirname "$REPORTER_OUT")"
work=$(mktemp -d "$root/dist/.release.XXXXXX")
trap 'rm -rf "$work"' EXIT

resolve() { # resolve CONFIG_DIR OUTPUT
  local k="$work/$(basename "$1")"
  mkdir -p "$k"
  cat >"$k/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../../$1
labels:
  - pairs:
      app.kubernetes.io/version: $VERSION
    includeTemplates: true
YAML
  (cd "$k" && render .) >"$k/rendered.yaml"
  # shellcheck disable=SC2086 # KO_FLAGS is a list of flags
  "$KO" resolve --base-import-paths --tags="$VERSION" --sbom=none \
    --platform=linux/amd64,linux/arm64 \
    --image-label="org.opencontainers.image.version=$VERSION" \
    --image-label="org.opencontainers.image.source=https://github.com/ciel-ci/ciel" \
    --image-annotation="org.opencontainers.image.version=$VERSION" \
    ${KO_FLAGS:-} -f "$k/rendered.yaml" >"$k/resolved.yaml"

  # Nothing of ours may stay a ko:// reference, a tag or a foreign registry.
  local bad
  bad=$(grep -nE 'ko://|ghcr\.io/ciel-ci' "$k/resolved.yaml" || true)
  bad+=$(grep -noE "$(printf '%s' "$KO_DOCKER_REPO" | sed 's/[.[\*^$/]/\\&/g')/[^ \"']*" "$k/resolved.yaml" | grep -v '@sha256:[0-9a-f]\{64\}$' || true)
  if [ -n "$bad" ]; then
    echo "release: images left unpinned in $2:" >&2
    echo "$bad" >&2
    return 1
  fi
  {
    echo "# ciel $VERSION: kubectl apply --server-side -f $(basename "$2")"
    echo "# Built by hack/release.sh from config/$( [ "$1" = config ] || echo "${1#config/}/"); images in $KO_DOCKER_REPO, pinned by digest."
    cat "$k/resolved.yaml"
  } >"$2.tmp"
  mv "$2.tmp" "$2"
  echo "release: wrote $2" >&2
}

resolve config "$OUT"
resolve config/reporter "$REPORTER_OUT"
