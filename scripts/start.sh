#!/usr/bin/env bash
# Set up everything and start CFR Studio: scripts/start.sh [PHOTO]
set -euo pipefail
cd "$(dirname "$0")/.."
CFR_EXTRAS=${CFR_EXTRAS:-dev} scripts/setup.sh
exec .venv/bin/cfr-studio "$@"
