#!/usr/bin/env bash
# The whole air-gap loop end to end on generated images:
#   connected side: images in a first registry -> ferry pack (a reproducible, metadata-first package)
#   disconnected side: export it to a store (removable media) -> verify -> diff against a private
#   registry (all missing) -> push -> diff (all in sync) -> pull an image back with skopeo copy
#   and check its manifest digest.
# Both registries are Debian's docker-registry on 127.0.0.1 with TLS from a private CA and
# htpasswd auth; they are stopped at the end.
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

step "1. The connected side: a registry holding 5 images (one multi-arch), as gcr.io would"
UP_DIR="$WORK/upstream"
UP=$(bash scripts/local-registry.sh start "$UP_DIR")
REG_DIR="$WORK/registry"
trap 'bash scripts/local-registry.sh stop "$UP_DIR"; bash scripts/local-registry.sh stop "$REG_DIR"' EXIT
"$BIN/ferry-fixture" --out "$WORK/images" --format dir --seed 1 \
  --images 5 --layers 3 --layer-size 2MiB --incompressible --multi-arch-every 3 > "$WORK/fixture.json"
"$BIN/ferry" push --source "$WORK/images" --private-registry "$UP" --cacert "$UP_DIR/ca.pem" \
  --username ferry --password-stdin < "$UP_DIR/password" > /dev/null
for i in 0 1 2 3 4; do echo "$UP/anthos-baremetal-release/img-$i:1.8.0"; done > "$WORK/images.txt"
echo "upstream registry: $UP; images to pack:"; cat "$WORK/images.txt"

step "1b. Pack them: ferry pack --images LIST --out PACKAGE (pulled in parallel into a cache, every byte checked)"
"$BIN/ferry" pack --images "$WORK/images.txt" --out "$WORK/bmpackages_demo.tar.zst" \
  --cache "$WORK/pack-cache" --cacert "$UP_DIR/ca.pem" --username ferry --password-stdin < "$UP_DIR/password"
ls -lh "$WORK/bmpackages_demo.tar.zst"
echo "first entries (metadata first, so it can be streamed):"
(zstd -dc "$WORK/bmpackages_demo.tar.zst" 2>/dev/null | tar -t 2>/dev/null || true) | head -n 4

step "1c. Pack again from an empty cache: byte-for-byte the same package"
"$BIN/ferry" pack --images "$WORK/images.txt" --out "$WORK/again.tar.zst" --jobs 1 \
  --cache "$WORK/pack-cache-2" --cacert "$UP_DIR/ca.pem" --username ferry --password-stdin < "$UP_DIR/password" > /dev/null
sha256sum "$WORK/bmpackages_demo.tar.zst" "$WORK/again.tar.zst"
if [ "$(sha256sum < "$WORK/bmpackages_demo.tar.zst")" != "$(sha256sum < "$WORK/again.tar.zst")" ]; then
  echo "demo.sh: two packs of the same images differ" >&2
  exit 1
fi
rm -rf "$WORK/again.tar.zst" "$WORK/pack-cache-2"

step "2. Export it to a store (as onto removable media): ferry export --source ... --to ..."
"$BIN/ferry" export --source "$WORK/bmpackages_demo.tar.zst" --to "$WORK/usb/ferry-store"

step "3. Run it again (resume = rerun): nothing is rewritten"
"$BIN/ferry" export --source "$WORK/bmpackages_demo.tar.zst" --to "$WORK/usb/ferry-store"

step "4. The store is a plain OCI layout: skopeo reads every image by its full reference"
REF=$UP/anthos-baremetal-release/img-0:1.8.0
skopeo inspect "oci:$WORK/usb/ferry-store:$REF" | head -n 20
echo "..."
echo "manifest digest via skopeo: sha256:$(skopeo inspect --raw "oci:$WORK/usb/ferry-store:$REF" | sha256sum | cut -d' ' -f1)"
echo "manifest digest in package: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["images"][0]["digest"])' "$WORK/fixture.json")"

step "5. Verify the store (as a scheduled audit would): every digest, in parallel"
"$BIN/ferry" verify "$WORK/usb/ferry-store"
"$BIN/ferry" verify --fast "$WORK/usb/ferry-store"

step "6. Start a private registry on 127.0.0.1 (TLS with a private CA, htpasswd)"
REG=$(bash scripts/local-registry.sh start "$REG_DIR")
echo "registry: $REG (CA: $REG_DIR/ca.pem, user: ferry)"
CREDS=(--cacert "$REG_DIR/ca.pem" --username ferry --password-stdin)

step "7. Diff before the push: every image is missing (exit code 1)"
set +e
"$BIN/ferry" diff --source "$WORK/usb/ferry-store" --private-registry "$REG/bm-mirror" "${CREDS[@]}" < "$REG_DIR/password"
echo "ferry diff exit code: $?"
set -e

step "8. Plan the push: --dry-run reads only the package's manifests and asks the registry; nothing is sent"
"$BIN/ferry" push --source "$WORK/bmpackages_demo.tar.zst" --private-registry "$REG/bm-mirror" "${CREDS[@]}" --dry-run < "$REG_DIR/password"

step "8b. Push the package, as bmctl push images would (--private-registry HOST:PORT/NAMESPACE --cacert ...): streamed from the package, no scratch copy"
"$BIN/ferry" push --source "$WORK/bmpackages_demo.tar.zst" --private-registry "$REG/bm-mirror" "${CREDS[@]}" < "$REG_DIR/password"

step "9. Diff after the push: every image is in sync (exit code 0)"
"$BIN/ferry" diff --source "$WORK/usb/ferry-store" --private-registry "$REG/bm-mirror" "${CREDS[@]}" < "$REG_DIR/password"
echo "ferry diff exit code: $?"

step "10. A real client pulls an image back through the mirror path (skopeo copy) and gets the package's digest"
mkdir -p "$WORK/certs.d" && cp "$REG_DIR/ca.pem" "$WORK/certs.d/ca.crt"
rm -rf "$WORK/pulled"
skopeo copy --all --preserve-digests --src-cert-dir "$WORK/certs.d" \
  --src-creds "ferry:$(cat "$REG_DIR/password")" \
  "docker://$REG/bm-mirror/anthos-baremetal-release/img-0:1.8.0" "oci:$WORK/pulled:img-0"
PULLED="sha256:$(skopeo inspect --raw "oci:$WORK/pulled:img-0" | sha256sum | cut -d' ' -f1)"
EXPECTED="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["images"][0]["digest"])' "$WORK/fixture.json")"
echo "pulled manifest digest: $PULLED"
echo "package's digest:       $EXPECTED"
if [ "$PULLED" != "$EXPECTED" ]; then
  echo "demo.sh: the pulled image is not the package's image" >&2
  exit 1
fi
echo "the pulled image is byte for byte the package's image"

step "Done. Work files are in $WORK (the registries are stopped now)"
