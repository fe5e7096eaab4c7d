# Sourced by scripts/run and scripts/test: make sure a virtual environment with the project
# (and, when asked, its dev extra) is installed, reinstalling only when pyproject.toml changed.
VENV="${SENSOR_BILLING_VENV:-.venv}"

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

ensure_venv() {  # $1: pip extra spec, e.g. "." or ".[dev]"
    local spec="$1" python stamp wanted
    if [ ! -x "$VENV/bin/python" ]; then
        python=$(find_python) || return 1
        echo "creating virtual environment $VENV with $python" >&2
        "$python" -m venv "$VENV"
    fi
    stamp="$VENV/.sensor-billing-installed"
    wanted="$spec $(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        echo "installing $spec into $VENV" >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
        echo "$wanted" >"$stamp"
    fi
}
