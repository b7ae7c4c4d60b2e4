#!/usr/bin/env bash
# The serve image, built and run for real: scripts/build-image.sh builds
# deploy/Dockerfile with buildah (no Docker daemon needed), then this runs the
# image's entrypoint with the image's own environment, a model mounted
# read-only at /models and a data volume at /data, and checks /health, the
# image's HEALTHCHECK command, a completion, a rating stored in the volume by
# the non-root user, and a clean exit on the image's stop signal.
# Skips (77) without buildah/debootstrap (scripts/setup-image.sh), without
# root, or where buildah cannot create containers here.
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/lib/serve.sh"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bee="${BEE_BIN:-$root/build/bee}"
command -v buildah >/dev/null && command -v debootstrap >/dev/null ||
  { echo "SKIP: buildah/debootstrap not installed (scripts/setup-image.sh)"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: building and running the image needs root"; exit 77; }
store="$root/.cache/containers"
bh() { buildah --root "$store/storage" --runroot "$store/run" --storage-driver vfs "$@"; }
mkdir -p "$store"
probe=$(bh from scratch 2>&1) || { echo "SKIP: buildah cannot create containers here: $probe"; exit 77; }
bh rm "$probe" >/dev/null
# buildah's chroot isolation runs steps in new mount/UTS/IPC namespaces
unshare -m -u -i -f true 2>/dev/null || { echo "SKIP: no new namespaces here (unshare failed), buildah run cannot work"; exit 77; }

base="${BEE_TMPDIR:-/tmp}"
mkdir -p "$base"
dir="$(mktemp -d "$base/image.XXXXXX")"
tag=localhost/bee:test ctr="" run=""
cleanup() {
  [ -n "$run" ] && kill "$run" 2>/dev/null
  pkill -KILL -f '^/usr/local/bin/bee serve' 2>/dev/null || true
  [ -n "$ctr" ] && bh rm "$ctr" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "not ok - $*"; [ -f "$dir/log" ] && sed 's/^/  log: /' "$dir/log"; exit 1; }

"$root/scripts/build-image.sh" --tag "$tag" || fail "image build"

cfg() { bh inspect --type image --format "$1" "$tag"; }
[ "$(cfg '{{.Docker.Config.User}}')" = "10001:10001" ] || fail "image user is '$(cfg '{{.Docker.Config.User}}')', not 10001:10001"
[ "$(cfg '{{.Docker.Config.StopSignal}}')" = "SIGTERM" ] || fail "stop signal"
[ "$(cfg '{{.Docker.Config.Entrypoint}}')" = '[/usr/local/bin/bee serve]' ] || fail "entrypoint $(cfg '{{.Docker.Config.Entrypoint}}')"
cfg '{{.Docker.Config.ExposedPorts}}' | grep -q '8080/tcp' || fail "port 8080 not exposed"
hc="$(cfg '{{index .Docker.Config.Healthcheck.Test 3}}')" || fail "no HEALTHCHECK in the image"
echo "ok - image $tag: user 10001, entrypoint bee serve, SIGTERM, port 8080, healthcheck"

# The volumes: the model read-only, /data writable by the image's user only.
mkdir -p "$dir/models" "$dir/data"
cp "$root/models/bee-default.gguf" "$dir/models/model.gguf"
chown 10001:10001 "$dir/data" && chmod 700 "$dir/data"
ctr=$(bh from --pull=never "$tag")
: >"$dir/log"
# BEE_PORT=0: an ephemeral port (the host's network is shared); the rest of
# the settings are the image's ENV (model path, host, feedback db, drain).
bh run --isolation chroot --network host -v "$dir/models:/models:ro" -v "$dir/data:/data" -e BEE_PORT=0 \
  "$ctr" -- /usr/local/bin/bee serve 2>>"$dir/log" >>"$dir/log" &
run=$!
SERVE_WAIT_S=60 serve_wait "$dir/log" "$run" 0.0.0.0 || fail "the container exited or was not ready in 60 s"
port=$SERVE_PORT
http_request GET /health | head -1 | grep -q ' 200 ' || fail "/health"
bh run --isolation chroot --network host -e BEE_PORT="$port" "$ctr" -- bash -c "$hc" || fail "the image's HEALTHCHECK command failed"
echo "ok - serving on port $port; /health 200 and the HEALTHCHECK command passes"

resp="$(http_request POST /v1/completions '{"prompt":"春","max_tokens":8,"seed":1}')"
grep -q ' 200 ' <<<"$resp" && grep -q '"completion_tokens":8' <<<"$resp" || fail "completion: $resp"
id="$(sed -nE 's/.*"id":"([^"]+)".*/\1/p' <<<"$resp" | head -1)"
[ -n "$id" ] || fail "no response id in: $resp"
fb="$(http_request POST /v1/feedback "{\"response_id\":\"$id\",\"rating\":1,\"correction\":\"春眠不觉晓\"}")"
grep -q ' 200 ' <<<"$fb" || fail "feedback: $fb"
echo "ok - completion $id and its rating accepted"

pid="$(pgrep -n -f '^/usr/local/bin/bee serve')" || fail "no bee process"
kill -TERM "$pid"
rc=0; wait "$run" || rc=$?
run=""
[ "$rc" -eq 0 ] || fail "exit status $rc after SIGTERM"
grep -q stopped "$dir/log" || fail "no clean stop"
[ "$(stat -c %u "$dir/data/feedback.sqlite")" = 10001 ] || fail "feedback db not owned by the image's user"
"$bee" feedback export --db "$dir/data/feedback.sqlite" -o "$dir/out" >/dev/null || fail "export from the volume"
grep -q '春眠不觉晓' "$dir/out/sft.jsonl" || fail "the rating did not survive in the volume"
echo "ok - SIGTERM: exit 0; the rating is in /data/feedback.sqlite on the volume"
