# Sourced by the scripts that install a pinned Node package folder (`npm ci`): Node BullMQ for
# the cross-producer tests, the TypeScript client check. Needs Node.js 20+ and npm.

ensure_npm_ci() {  # $1: folder with package.json and package-lock.json; $2: what it is
    local dir="$1" what="$2" major
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "error: node and npm are not on PATH; $what needs Node.js 20+" >&2
        return 1
    fi
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$major" -lt 20 ]; then
        echo "error: Node.js $(node --version) is too old for $what (needs 20+)" >&2
        return 1
    fi
    # Quick when the install is already there and newer than the lock file.
    if [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
        return 0
    fi
    echo "installing $what (npm ci in $dir)" >&2
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
}
