#!/usr/bin/env bash
# Installs the system packages ferry's demo, tests and benchmarks use, if missing.
# Debian packages only; needs root (or sudo). Safe to run repeatedly.
set -euo pipefail

# command-or-file -> Debian package
declare -A NEED=(
  [skopeo]=skopeo                       # third-party client: inspect/copy OCI layouts, registries
  [umoci]=umoci                         # third-party OCI layout builder for interop tests
  [docker-registry]=docker-registry     # distribution v2.8: the real registry in tests
  [xz]=xz-utils                         # CLI baseline in benchmarks, fixture checks
  [zstd]=zstd                           # CLI baseline in benchmarks
  [curl]=curl                           # readiness checks in scripts/
  [python3]=python3                     # free-port lookup in scripts/local-registry.sh
  [openssl]=openssl                     # private CA and certificates for TLS registries; sha256 ceiling and peer in bench-verify
  [htpasswd]=apache2-utils              # bcrypt htpasswd files for the registry
  [tinyproxy]=tinyproxy                 # a real HTTP CONNECT proxy for HTTPS_PROXY tests
  [cc]=gcc                              # C compiler for liblzma/zstd bindings
  [pkg-config]=pkg-config
  [/usr/bin/time]=time               # peak RSS in benchmarks
  [ping]=iputils-ping                   # round-trip check in scripts/bench-diff.sh
  [ip]=iproute2                         # network namespaces and veth pairs in bench-diff.sh / bench-push.sh
  [tc]=iproute2                         # netem delay / tbf rate cap on those links
  [iperf3]=iperf3                       # the WAN link's own capacity, measured in bench-push.sh
  [man]=man-db                          # man -w / man -l: the generated man pages are checked
  [zsh]=zsh                             # the generated zsh completion script is checked in zsh
  [fish]=fish                           # the generated fish completions are run in fish
  [debootstrap]=debootstrap             # a fresh Debian root the .deb is installed into (test-package.sh)
  [dpkg-shlibdeps]=dpkg-dev             # cargo-deb computes the .deb's Depends with it
  [containerd]=containerd               # a real runtime pulls through ferry's printed hosts.toml (tests/e2e/runtimes.rs)
  [podman]=podman                       # a real runtime pulls through ferry's printed registries.conf + certs.d; podman save writes the field formats (tests/e2e/formats_field.rs)
  [faketime]=faketime                   # ferry-pack reproducibility: the same package on another day of the clock (tests/e2e/pack_roundtrip.rs)
  [buildah]=buildah                     # builds small images from scratch offline for the field-format tests (tests/e2e/formats_field.rs)
)

missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
