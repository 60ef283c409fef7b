#!/usr/bin/env bash
# Builds the shopmind image, tags it from the crate version and the git commit, and records what
# was built to deploy/IMAGE_DIGEST (docs/RELEASING.md).
#
#   scripts/image.sh                         build REPOSITORY:VERSION and REPOSITORY:VERSION-COMMIT
#   scripts/image.sh --push                  the same, then push both and record the registry digest
#   scripts/image.sh --repository REG/shopmind [--push] [--platform linux/arm64]
#   scripts/image.sh --dry-run               print the version, tags and commands; no engine needed
#
# REPOSITORY defaults to $SHOPMIND_IMAGE_REPOSITORY, else `shopmind`. VERSION is the workspace
# version of Cargo.toml (what `shopmind --version` prints); COMMIT the first 12 hex digits of HEAD,
# with `-dirty` when the work tree has uncommitted changes (such a build is never pushed).
# deploy/IMAGE_DIGEST gets the tags, the commit, the image ID, the digest of each base image, and
# with --push the registry digest that the Helm chart pins by (image.digest).
# Needs a running Docker engine with BuildKit (Docker 23 or later); fails at once without one.
set -euo pipefail
cd "$(dirname "$0")/.."

repository="${SHOPMIND_IMAGE_REPOSITORY:-shopmind}"
push=0
dry_run=0
platform=""
while [ $# -gt 0 ]; do
  case "$1" in
    --push) push=1 ;;
    --dry-run) dry_run=1 ;;
    --repository) repository="${2:?--repository needs a value}"; shift ;;
    --platform) platform="${2:?--platform needs a value}"; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# The workspace version: [workspace.package] version in Cargo.toml.
version=$(python3 - <<'PY'
import tomllib
with open("Cargo.toml", "rb") as f:
    print(tomllib.load(f)["workspace"]["package"]["version"])
PY
)
if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "error: workspace version '$version' in Cargo.toml is not a semantic version" >&2
  exit 1
fi
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit-dirty"
fi
tags=("$repository:$version" "$repository:$version-$commit")
# The base images: NAME=image of each `ARG *_IMAGE=` before the first FROM.
mapfile -t bases < <(sed -n 's/^ARG \([A-Z_]*_IMAGE\)=\(.*\)$/\1=\2/p' Dockerfile)

build=(docker build --build-arg "VERSION=$version" --build-arg "GIT_COMMIT=$commit")
[ -n "$platform" ] && build+=(--platform "$platform")
for t in "${tags[@]}"; do build+=(-t "$t"); done
build+=(.)

if [ "$dry_run" = 1 ]; then
  echo "version: $version"
  echo "commit:  $commit"
  echo "tags:    ${tags[*]}"
  echo "bases:   ${bases[*]}"
  echo "build:   ${build[*]}"
  [ "$push" = 1 ] && echo "push:    docker push ${tags[0]} && docker push ${tags[1]}"
  exit 0
fi

if [ "$push" = 1 ] && [[ "$commit" == *-dirty || "$commit" == unknown ]]; then
  echo "error: refusing to push a build of an uncommitted work tree ($commit); commit first" >&2
  exit 1
fi
if ! command -v docker >/dev/null 2>&1; then
  echo "error: docker is not installed (scripts/image.sh builds with the Docker CLI and engine)" >&2
  exit 1
fi
if ! engine=$(docker version --format '{{.Server.Version}}' 2>&1); then
  echo "error: no Docker engine reachable (docker version: ${engine##*$'\n'})" >&2
  echo "       start dockerd, or point DOCKER_HOST at one; nothing was built" >&2
  exit 1
fi

# Each base resolved to its digest now, and the build pinned to those digests, so that the record
# names exactly what the image was built on.
base_digests=()
pins=()
for b in "${bases[@]}"; do
  name="${b%%=*}" image="${b#*=}"
  pull=(docker pull --quiet "$image")
  [ -n "$platform" ] && pull=(docker pull --quiet --platform "$platform" "$image")
  "${pull[@]}" >/dev/null
  digest_of=$(docker image inspect --format '{{index .RepoDigests 0}}' "$image")
  pins+=(--build-arg "$name=${image%@*}@${digest_of#*@}")
  base_digests+=("$image@${digest_of#*@}")
done

echo "image: building ${tags[*]} (Docker engine $engine)"
DOCKER_BUILDKIT=1 "${build[@]:0:2}" "${pins[@]}" "${build[@]:2}"
image_id=$(docker image inspect --format '{{.Id}}' "${tags[0]}")

digest=""
if [ "$push" = 1 ]; then
  for t in "${tags[@]}"; do docker push "$t"; done
  repo_digest=$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "${tags[0]}" \
    | grep -m1 "^$repository@" || true)
  digest="${repo_digest#*@}"
  if [ -z "$digest" ]; then
    echo "error: pushed, but no registry digest for $repository in 'docker image inspect'" >&2
    exit 1
  fi
fi

record=deploy/IMAGE_DIGEST
{
  echo "# Written by scripts/image.sh; the Helm chart pins by: --set image.repository=REPOSITORY"
  echo "# --set image.tag=TAG --set image.digest=DIGEST (DIGEST only after --push)."
  echo "repository=$repository"
  echo "tag=$version"
  echo "commit_tag=$version-$commit"
  echo "commit=$commit"
  echo "image_id=$image_id"
  echo "digest=$digest"
  for b in "${base_digests[@]}"; do echo "base=$b"; done
} > "$record"
echo "image: ${tags[*]}, image id $image_id${digest:+, digest $digest}; recorded in $record"
if [ -n "$digest" ]; then
  echo "helm upgrade --install shopmind deploy/helm/shopmind -n shopmind \\"
  echo "  --set image.repository=$repository --set image.tag=$version --set image.digest=$digest"
fi
