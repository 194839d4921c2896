#!/usr/bin/env bash
# image.sh VERSION IMAGE builds faultbox's OCI image offline with podman:
# the static binary alone (CGO_ENABLED=0, FROM scratch), tagged
# IMAGE:VERSION and IMAGE:latest. The binary gets the file capability
# cap_net_admin+p so that the image's non-root user can attach where the
# container is granted NET_ADMIN (docs/kubernetes.md). The image's creation
# time is the commit's, so one commit builds one image ID.
set -euo pipefail

die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }
step() { printf 'image: %s\n' "$*"; }

[ $# -eq 2 ] || die "usage: $0 VERSION IMAGE"
version=$1 image=$2
root=$(cd "$(dirname "$0")/.." && pwd)
ctx=$root/bin/image

[ "$(id -u)" -eq 0 ] || die "must run as root (setcap, and podman's storage for root)"
for tool in podman setcap getcap go; do
	command -v "$tool" >/dev/null || die "$tool not found: run scripts/deps.sh"
done
# Absolute: podman's copier reads it again from inside a chroot.
CONTAINERS_CONF=$(realpath "${CONTAINERS_CONF:-$root/deploy/podman/containers.conf}")
export CONTAINERS_CONF

rm -rf "$ctx"
mkdir -p "$ctx/empty" "$ctx/run/faultbox"
chmod 0700 "$ctx/run/faultbox"
bin=$ctx/faultbox
step "go build (static) $version"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
	-ldflags "-s -w -X main.version=$version" -o "$bin" ./cmd/faultbox)
setcap cap_net_admin+p "$bin"
getcap "$bin" | grep -q 'cap_net_admin[=+]p' || die "setcap did not take on $bin (a file system without xattrs?)"

revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
created=$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)
# The images these tags name now: one a rebuild leaves untagged is removed
# (and --layers=false leaves no intermediate images).
old=$(podman image inspect -f '{{.Id}}' "$image:$version" "$image:latest" 2>/dev/null | sort -u || true)
step "podman build $image:$version"
podman build --quiet --pull=never --layers=false --timestamp "$created" \
	--build-arg VERSION="$version" --build-arg REVISION="$revision" \
	-f "$root/deploy/image/Containerfile" -t "$image:$version" -t "$image:latest" "$ctx" >/dev/null

for id in $old; do
	if [ "$(podman image inspect -f '{{len .RepoTags}}' "$id" 2>/dev/null)" = 0 ]; then
		podman rmi "$id" >/dev/null 2>&1 || true # still used by a container: left
	fi
done

# The image must run and say the version it is tagged with.
got=$(podman run --rm --network none "$image:$version" version) || die "the image does not run: $got"
case $got in
"faultbox $version "*) ;;
*) die "the image says \"$got\", not version $version" ;;
esac
step "built $image:$version ($(podman image inspect -f '{{.Size}}' "$image:$version") bytes, id $(podman image inspect -f '{{.Id}}' "$image:$version" | cut -c1-12)), also tagged latest"
step "save it with: podman save -o faultbox.tar $image:$version   (kind load image-archive, ctr -n k8s.io images import)"
