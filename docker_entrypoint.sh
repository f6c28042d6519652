#!/bin/sh
# Entrypoint of the crm-substrate image (run under tini, which forwards signals).
#
#   docker run IMAGE mcp --http 0.0.0.0:8765     -> crm-mcp --http 0.0.0.0:8765
#   docker run IMAGE sync --watch                -> crm-sync --watch
#   docker run IMAGE crm-backfill --recreate     -> runs as given
#   docker run IMAGE sh                          -> any other command runs as given
#
# Settings come from /data/config.json (or --config, or the environment) and are read
# by the binaries themselves: this script reads no setting, so there is nothing here
# to drift from that file. Every branch execs, so the binary receives SIGTERM directly.
set -eu

usage() {
    cat <<'EOF'
usage: <command> [args...]

  mcp       crm-mcp       MCP server (stdio; --http ADDR for Streamable HTTP)
  sync      crm-sync      incremental index sync (--watch --interval SECS loops)
  backfill  crm-backfill  full index build (--recreate drops the collection first)
  resolve   crm-resolve   deterministic entity resolution
  fuzzy     crm-fuzzy     LLM adjudication of flagged candidates
  demo      crm-demo      synthetic CRM and the whole pipeline on it
  embed     crm-embed     chunks and vectors of given texts, as JSON lines
  bench     crm-bench     benchmark suites

Every command takes --help. Settings: /data/config.json (the StartOS Configure
action writes it), --config FILE, or environment variables.
Anything else is run as given, e.g. `sh`.
EOF
}

if [ "$#" -eq 0 ]; then
    usage >&2
    exit 2
fi

command=$1
shift

case "$command" in
    mcp | sync | backfill | resolve | fuzzy | demo | embed | bench)
        exec "crm-$command" "$@"
        ;;
    help | -h | --help)
        usage
        exit 0
        ;;
    *)
        exec "$command" "$@"
        ;;
esac
