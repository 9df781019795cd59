#!/usr/bin/env bash
# Set kb up in ./.venv, index the bundled sample documents and answer two questions, all offline.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
.venv/bin/kb ingest examples/docs --kb sample
.venv/bin/kb ask "How long is the refund window?" --kb sample
.venv/bin/kb ask "删除的笔记会在回收站保留多久？" --kb sample
