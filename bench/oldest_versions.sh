#!/usr/bin/env bash
# The README's test command (`make test`: tests, then every notebook at the smoke and at the rehearsal lesson) in a
# fresh virtual environment holding the oldest versions pyproject.toml admits (bench/oldest_versions.txt).
#
#   bench/oldest_versions.sh [PYTHON] [VENV]      e.g. bench/oldest_versions.sh python3.10 /tmp/oldest
#
# Needs PyPI (about 3 GB of wheels: torch's Linux wheels bring CUDA) and ~5-10 minutes on 2 cores after the download.
# The lessons train into a temporary runs folder (MINICLIP_RUNS), deleted at the end: runs/ is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
VENV=${2:-.venv-oldest}
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --only-binary :all: -r bench/oldest_versions.txt \
    "pytest>=7" "nbval>=0.11" "jupyterlab>=4" "tomli>=2; python_version < '3.11'"
"$VENV/bin/pip" install -q --no-deps -e .
"$VENV/bin/python" -c "import sys, torch, transformers; print('oldest versions:', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)"
MINICLIP_RUNS=$(mktemp -d)  # an empty runs folder of its own
trap 'rm -rf "$MINICLIP_RUNS"' EXIT
export MINICLIP_RUNS HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MINICLIP_SMOKE=1 MPLBACKEND=Agg
"$VENV/bin/python" -m pytest tests notebooks --nbval-lax --nbval-current-env -q
MINICLIP_LESSON=rehearsal "$VENV/bin/python" -m pytest notebooks --nbval-lax --nbval-current-env -q \
    --nbval-sanitize-with notebooks/rehearsal_nbval.cfg
