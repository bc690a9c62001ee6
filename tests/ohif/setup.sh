#!/usr/bin/env bash
# Prepares the OHIF viewer end-to-end test (idempotent; safe to re-run).
#
#   1. Debian chromium (/usr/bin/chromium) from apt, unless already installed.
#   2. The published OHIF viewer build, `npm pack @ohif/app@$OHIF_VERSION`, cached in
#      <repo>/.cache/ohif/, its dist/ extracted to <repo>/.cache/ohif/dist, rebased from
#      "/" to /viewer/ and given tests/ohif/app-config.js (DICOMweb at same-origin /dicom-web).
#   3. playwright-core from npm into tests/ohif/node_modules (npm ci against the lock).
#
# No tool downloads a browser of its own: playwright-core has no install step, and the
# test drives Debian's chromium through executablePath.
#
# The last line printed is OHIF_DIST=/abs/path: pass that directory to `pacs --viewer-dir`.
#
# Environment: OHIF_CACHE_DIR (default <repo>/.cache/ohif), OHIF_BASE (default /viewer/).
set -euo pipefail

OHIF_VERSION=3.13.2
OHIF_INTEGRITY='sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=='
OHIF_BASE=${OHIF_BASE:-/viewer/}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${OHIF_CACHE_DIR:-$ROOT/.cache/ohif}
DIST=$CACHE/dist
TGZ=$CACHE/ohif-app-$OHIF_VERSION.tgz

log() { printf '[ohif-setup] %s\n' "$*" >&2; }
die() { printf '[ohif-setup] ERROR: %s\n' "$*" >&2; exit 1; }

case "$OHIF_BASE" in /*/) ;; *) die "OHIF_BASE must start and end with '/': $OHIF_BASE" ;; esac

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "not root and no sudo: cannot apt-get install"
  SUDO=sudo
fi

APT_LISTS_UPDATED=
apt_install() {
  # DPkg::Lock::Timeout: wait for another apt/dpkg instead of failing.
  if [ -z "$APT_LISTS_UPDATED" ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q >&2
    APT_LISTS_UPDATED=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends "$@" >&2
}

# --- 1. chromium ---------------------------------------------------------------------
if [ -x /usr/bin/chromium ]; then
  log "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
else
  log "installing Debian chromium"
  apt_install chromium fonts-liberation
  [ -x /usr/bin/chromium ] || die "apt installed chromium but /usr/bin/chromium is missing"
fi

# --- node / npm ----------------------------------------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "installing nodejs + npm from Debian"
  apt_install nodejs npm
fi
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
[ "$NODE_MAJOR" -ge 20 ] || die "node >= 20 needed by playwright-core (have $(node --version))"

# --- 2. OHIF build ---------------------------------------------------------------------
mkdir -p "$CACHE"

tgz_ok() {
  [ -s "$TGZ" ] || return 1
  local got
  got="sha512-$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write(c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$TGZ")"
  [ "$got" = "$OHIF_INTEGRITY" ]
}

if tgz_ok; then
  log "cached $TGZ"
else
  log "fetching @ohif/app@$OHIF_VERSION (npm pack, ~50 MB)"
  tmp=$(mktemp -d "$CACHE/pack.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "@ohif/app@$OHIF_VERSION" --silent >/dev/null)
  mv -f "$tmp/ohif-app-$OHIF_VERSION.tgz" "$TGZ"
  rm -rf "$tmp"
  tgz_ok || die "$TGZ does not match the pinned integrity $OHIF_INTEGRITY"
fi

# Stamp: everything the dist depends on. Unchanged stamp => the dist is already right.
STAMP="ohif=$OHIF_VERSION base=$OHIF_BASE $(cat "$HERE/app-config.js" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
if [ -f "$DIST/.pacs-stamp" ] && [ "$(cat "$DIST/.pacs-stamp")" = "$STAMP" ]; then
  log "dist up to date: $DIST"
else
  log "extracting dist/ and rebasing it to $OHIF_BASE"
  work=$(mktemp -d "$CACHE/extract.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  tar -xzf "$TGZ" -C "$work" package/dist
  [ -f "$work/package/dist/index.html" ] || die "no package/dist/index.html in $TGZ"
  [ -f "$work/package/dist/app-config.js" ] || die "no package/dist/app-config.js in $TGZ"

  # The build is made with PUBLIC_URL=/ : index.html loads /app-config.js, /app.bundle.*.js
  # etc., webpack's runtime (__webpack_require__.p) loads chunks, workers and .wasm from
  # "/", and app.bundle.css loads its font from url(/...). Rewrite those to OHIF_BASE.
  # Each rewrite must hit at least once, so a new OHIF build that changes shape fails here.
  node - "$work/package/dist" "$OHIF_BASE" <<'NODE'
const fs = require('fs');
const path = require('path');
const [dist, base] = process.argv.slice(2);

function walk(dir, out = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}
const counts = {};
function rewrite(file, label, re, repl) {
  const s = fs.readFileSync(file, 'utf8');
  let n = 0;
  const t = s.replace(re, (...m) => { n++; return typeof repl === 'function' ? repl(...m) : repl; });
  if (n) fs.writeFileSync(file, t);
  counts[label] = (counts[label] || 0) + n;
  return n;
}

const index = path.join(dist, 'index.html');
rewrite(index, 'index.html PUBLIC_URL', /window\.PUBLIC_URL\s*=\s*(["'])\/\1/g, `window.PUBLIC_URL="${base}"`);
// href="/x" / src="/x" (not protocol-relative "//host")
rewrite(index, 'index.html href/src', /\b(href|src)="\/(?!\/)/g, (_m, attr) => `${attr}="${base}`);

for (const f of walk(dist)) {
  if (f.endsWith('.js')) {
    rewrite(f, 'webpack publicPath', /(__webpack_require__\.p\s*=\s*)(["'])\/\2/g, (_m, lhs) => `${lhs}"${base}"`);
  } else if (f.endsWith('.css')) {
    rewrite(f, 'css url(/)', /url\((["']?)\/(?!\/)/g, (_m, q) => `url(${q}${base}`);
  }
}
const manifest = path.join(dist, 'manifest.json');
if (fs.existsSync(manifest)) rewrite(manifest, 'manifest.json', /"\/assets\//g, `"${base}assets/`);

const required = ['index.html PUBLIC_URL', 'index.html href/src', 'webpack publicPath'];
for (const k of required) {
  if (!counts[k]) {
    console.error(`[ohif-setup] ERROR: rebase step "${k}" matched nothing: the OHIF build changed shape`);
    process.exit(1);
  }
}
console.error('[ohif-setup] rebased: ' + Object.entries(counts).map(([k, v]) => `${k} x${v}`).join(', '));

// Anything still pointing at the root is a bug in the rebase: report it.
const html = fs.readFileSync(index, 'utf8');
const left = (html.match(/\b(?:href|src)="\/(?!\/)[^"]*"/g) || []).filter(a => !a.includes(`="${base}`));
if (left.length) {
  console.error('[ohif-setup] ERROR: root-relative references left in index.html: ' + left.join(' '));
  process.exit(1);
}
NODE

  cp "$HERE/app-config.js" "$work/package/dist/app-config.js"
  printf '%s\n' "$STAMP" > "$work/package/dist/.pacs-stamp"
  rm -rf "$DIST"
  mv "$work/package/dist" "$DIST"
  rm -rf "$work"
fi

# --- 3. playwright-core ------------------------------------------------------------------
# No browser download: playwright-core has no install script, and --ignore-scripts plus
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD make sure nothing else tries.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
want_pw=$(node -p 'require(process.argv[1]).dependencies["playwright-core"]' "$HERE/package.json")
have_pw=$(node -p 'try{require(process.argv[1]).version}catch(e){""}' "$HERE/node_modules/playwright-core/package.json" 2>/dev/null || true)
if [ "$have_pw" = "$want_pw" ] && [ "$HERE/node_modules/.package-lock.json" -nt "$HERE/package-lock.json" ]; then
  log "playwright-core $have_pw already installed"
else
  log "installing playwright-core $want_pw into $HERE/node_modules"
  if [ -f "$HERE/package-lock.json" ]; then
    (cd "$HERE" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  else
    (cd "$HERE" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  fi
fi

log "chromium: /usr/bin/chromium; playwright-core: $want_pw; OHIF: @ohif/app@$OHIF_VERSION"
echo "OHIF_DIST=$DIST"
