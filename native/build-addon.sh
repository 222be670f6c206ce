# Shared by native/*/build.sh (sourced after `cd` into the addon's directory): the toolchain checks and the
# offline node-gyp build. The caller defines fallback(reason), which prints its one line and exits 0.

# A C compiler and python3 (node-gyp runs on it); exits through fallback without them.
require_toolchain() {
  command -v cc >/dev/null || fallback "no C compiler (cc)"
  command -v python3 >/dev/null || fallback "node-gyp needs python3"
}

# Builds build/Release/*.node against the headers of the Node that runs us (node-gyp would otherwise download
# them); `npm exec -c` puts npm's bundled node-gyp on PATH without fetching anything from the registry.
build_addon() {
  local nodedir
  nodedir="$(node -p 'require("path").resolve(process.execPath, "..", "..")')"
  [[ -f "$nodedir/include/node/node_api.h" ]] || fallback "no Node headers under $nodedir/include/node"
  npm exec --offline -c "node-gyp rebuild --loglevel=warn --nodedir='$nodedir'" 2> >(grep -v 'Unknown user config' >&2)
}
