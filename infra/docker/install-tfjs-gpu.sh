#!/bin/sh
# Installs the native half of @tensorflow/tfjs-node-gpu (libtensorflow 2.9.1 + the tfjs_binding
# addon) without the public internet. The package's own npm install script always downloads
# (`install.js gpu download`), so this runs its installer directly, choosing the source:
#
#   1. <vendor>/libtensorflow/lib/libtensorflow.so.2.9.1 present (an extracted
#      libtensorflow-gpu-linux-x86_64-2.9.1.tar.gz): copied to the package's deps/, no download;
#   2. else TFJS_NODE_BASE_URI set, or <vendor>/custom-binary.json given: downloaded from there.
#
# The addon comes from npm_config_tfjs_binding_binary_host_mirror when set, else node-pre-gyp
# compiles it from source (needs python3, make, g++ and npm_config_nodedir pointing at Node's
# headers). Either way the result is checked before the build goes on.
#
# usage: install-tfjs-gpu.sh <package dir> <vendor dir>
set -eu

pkg=${1:?usage: install-tfjs-gpu.sh <package dir> <vendor dir>}
vendor=${2:?usage: install-tfjs-gpu.sh <package dir> <vendor dir>}
lib=libtensorflow.so.2.9.1

if [ ! -f "$pkg/scripts/install.js" ]; then
  echo "install-tfjs-gpu: $pkg holds no scripts/install.js; is @tensorflow/tfjs-node-gpu installed?" >&2
  exit 1
fi
pkg=$(cd "$pkg" && pwd)

if [ -f "$vendor/custom-binary.json" ]; then
  cp "$vendor/custom-binary.json" "$pkg/scripts/custom-binary.json"
fi

if [ -f "$vendor/libtensorflow/lib/$lib" ]; then
  echo "install-tfjs-gpu: using the pre-placed libtensorflow from $vendor/libtensorflow"
  rm -rf "$pkg/deps"
  mkdir -p "$pkg/deps"
  cp -a "$vendor/libtensorflow/." "$pkg/deps/"
  mode=
elif [ -n "${TFJS_NODE_BASE_URI:-}" ] || [ -f "$pkg/scripts/custom-binary.json" ]; then
  echo "install-tfjs-gpu: downloading libtensorflow from ${TFJS_NODE_BASE_URI:-custom-binary.json}"
  mode=download
else
  echo "install-tfjs-gpu: no libtensorflow source. Pass --build-arg TFJS_NODE_BASE_URI=<mirror>," >&2
  echo "  or extract libtensorflow-gpu-linux-x86_64-2.9.1.tar.gz into infra/docker/vendor/libtensorflow/" >&2
  exit 2
fi

# install.js starts `node-pre-gyp` through the shell: put npm's bin folders on PATH.
PATH="$pkg/node_modules/.bin:$pkg/../../.bin:$PATH"
export PATH
cd "$pkg"
# shellcheck disable=SC2086 # $mode is empty or one word, on purpose unquoted
node scripts/install.js gpu $mode

if [ ! -f "$pkg/deps/lib/$lib" ]; then
  echo "install-tfjs-gpu: $pkg/deps/lib/$lib is missing after the install" >&2
  exit 1
fi
found=
for binding in "$pkg"/lib/napi-v*/tfjs_binding.node; do
  [ -f "$binding" ] && found=$binding
done
if [ -z "$found" ]; then
  echo "install-tfjs-gpu: no lib/napi-v*/tfjs_binding.node after the install" >&2
  exit 1
fi
echo "install-tfjs-gpu: ok ($found)"
