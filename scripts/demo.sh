#!/usr/bin/env bash
# The main job end to end on a generated package:
#   generate a bmctl-style package -> export it to a store -> inspect with skopeo.
# Everything happens under ${FERRY_DEMO_DIR:-./demo-work}; nothing else is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --workspace --bins --locked -q
BIN="$PWD/target/release"
WORK="${FERRY_DEMO_DIR:-$PWD/demo-work}"
rm -rf "$WORK"
mkdir -p "$WORK"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Generate a demo package (like bmpackages_X.tar.xz): 5 images, one multi-arch, multi-block xz"
"$BIN/ferry-fixture" --out "$WORK/bmpackages_demo.tar.xz" --format tar.xz-mt --seed 1 \
  --images 5 --layers 3 --layer-size 2MiB --incompressible --multi-arch-every 3 > "$WORK/fixture.json"
ls -lh "$WORK/bmpackages_demo.tar.xz"

step "2. Export it to a store (as onto removable media): ferry export --source ... --to ..."
"$BIN/ferry" export --source "$WORK/bmpackages_demo.tar.xz" --to "$WORK/usb/ferry-store"

step "3. Run it again (resume = rerun): nothing is rewritten"
"$BIN/ferry" export --source "$WORK/bmpackages_demo.tar.xz" --to "$WORK/usb/ferry-store"

step "4. The store is a plain OCI layout: skopeo reads every image by its full reference"
REF=gcr.io/anthos-baremetal-release/img-0:1.8.0
skopeo inspect "oci:$WORK/usb/ferry-store:$REF" | head -n 20
echo "..."
echo "manifest digest via skopeo: sha256:$(skopeo inspect --raw "oci:$WORK/usb/ferry-store:$REF" | sha256sum | cut -d' ' -f1)"
echo "manifest digest in package: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["images"][0]["digest"])' "$WORK/fixture.json")"

step "Done. Work files are in $WORK"
