#!/usr/bin/env bash
# Serve models exported by keras_deconvnet.export.export_saved_model (TF Serving's
# layout BASE/NAME/VERSION/) with the official tensorflow/serving container.
#
# Usage:
#   serving/docker-run.sh BASE_DIR [extra tensorflow_model_server flags...]
#
# Ports: REST 8501 (GET /v1/models/NAME, POST /v1/models/NAME:predict), gRPC 8500
# (PredictionService), published on 127.0.0.1 only unless BIND_ADDRESS=0.0.0.0.
# Every model directory of BASE_DIR is served with all its versions (as `deconvnet
# serve` does); batching uses serving/batching_parameters.txt. The container sees
# BASE_DIR at /models; its models.config (base_path "/models/NAME") and the batching
# file are written to CONFIG_DIR, which is kept, so a printed command runs again.
#
# Environment:
#   TF_SERVING_IMAGE  container image (default tensorflow/serving:latest; pin a
#                     release >= the TensorFlow that exported the models, or
#                     tensorflow/serving:latest-gpu with GPU=1)
#   REST_PORT=8501  GRPC_PORT=8500  BIND_ADDRESS=127.0.0.1
#   BATCHING=1      0 turns server-side batching off
#   GPU=0           1 adds --gpus all
#   SKIP_CHECK=0    1 skips `deconvnet serve --check` before starting
#   DRY_RUN=0       1 prints the generated model config and the docker command only
#   CONFIG_DIR      where the container's config is written (default
#                   BASE_DIR/.docker-run; TF Serving ignores hidden directories)
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
BASE_DIR="$(cd "$1" && pwd)"
shift
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE="${TF_SERVING_IMAGE:-tensorflow/serving:latest}"
REST_PORT="${REST_PORT:-8501}"
GRPC_PORT="${GRPC_PORT:-8500}"
BIND_ADDRESS="${BIND_ADDRESS:-127.0.0.1}"
PYTHON="${PYTHON:-python3}"

# The container sees BASE_DIR at /models: write a config with container paths into a
# directory that stays (a temporary one would vanish before the printed command runs).
CONFIG_DIR="${CONFIG_DIR:-$BASE_DIR/.docker-run}"
if ! mkdir -p "$CONFIG_DIR" 2>/dev/null || [[ ! -w "$CONFIG_DIR" ]]; then
  echo "error: cannot write the container config to $CONFIG_DIR; set CONFIG_DIR to a" \
    "writable directory that stays" >&2
  exit 1
fi
CONFIG_DIR="$(cd "$CONFIG_DIR" && pwd)"
NEW_CONFIG="$(mktemp "$CONFIG_DIR/.models.config.XXXXXX")"
trap 'rm -f "$NEW_CONFIG"' EXIT
{
  echo "model_config_list {"
  for model in "$BASE_DIR"/*/; do
    name="$(basename "$model")"
    compgen -G "$model[0-9]*/saved_model.pb" > /dev/null || continue
    echo "  config {"
    echo "    name: \"$name\""
    echo "    base_path: \"/models/$name\""
    echo "    model_platform: \"tensorflow\""
    echo "    model_version_policy { all {} }"
    echo "  }"
  done
  echo "}"
} > "$NEW_CONFIG"
if ! grep -q "config {" "$NEW_CONFIG"; then
  echo "error: no model in $BASE_DIR (expected NAME/VERSION/saved_model.pb)" >&2
  exit 1
fi
chmod a+r "$NEW_CONFIG"
mv -f "$NEW_CONFIG" "$CONFIG_DIR/models.config"
cp "$HERE/batching_parameters.txt" "$CONFIG_DIR/batching_parameters.txt"
chmod -R a+rX "$CONFIG_DIR"

if [[ "${SKIP_CHECK:-0}" != 1 ]] && "$PYTHON" -c "import keras_deconvnet.serving" 2>/dev/null; then
  "$PYTHON" -m keras_deconvnet.serving.rest_server --check "$BASE_DIR" --signatures serving_default
fi

command=(docker run --rm --init
  -p "$BIND_ADDRESS:$REST_PORT:8501" -p "$BIND_ADDRESS:$GRPC_PORT:8500"
  --mount "type=bind,source=$BASE_DIR,target=/models,readonly"
  --mount "type=bind,source=$CONFIG_DIR,target=/config,readonly")
if [[ "${GPU:-0}" == 1 ]]; then
  command+=(--gpus all)
fi
command+=("$IMAGE"
  --port=8500 --rest_api_port=8501
  --model_config_file=/config/models.config)
if [[ "${BATCHING:-1}" == 1 ]]; then
  command+=(--enable_batching --batching_parameters_file=/config/batching_parameters.txt)
fi
command+=("$@")

if [[ "${DRY_RUN:-0}" == 1 ]]; then
  cat "$CONFIG_DIR/models.config"
  printf '%q ' "${command[@]}"
  echo
  exit 0
fi
echo "REST: http://$BIND_ADDRESS:$REST_PORT/v1/models/NAME  gRPC: $BIND_ADDRESS:$GRPC_PORT" >&2
"${command[@]}"
