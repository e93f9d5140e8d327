#!/usr/bin/env bash
# Installs a working CRIU 4.x on Debian bookworm without touching the host's libc or any installed package.
#
# bookworm's criu 3.17 fails `criu check` on recent kernels ("vdso: Unexpected rt vDSO area bounds"). trixie's
# criu 4.x works, but needs trixie's glibc. So: criu and its shared libraries (libc6 included) are downloaded from
# trixie and unpacked with `dpkg -x` into a private prefix (default /opt/vzrun/criu), and /usr/local/sbin/criu is
# a wrapper that starts trixie's criu through trixie's own dynamic loader with --library-path. Nothing is
# installed with dpkg, so no installed package changes; the loader option is not inherited, so programs criu
# runs (iptables, ip, ...) use the host's libraries as usual.
#
# apt is driven with a private, throw-away configuration (trixie source pinned at priority 100, its own lists and
# cache in a temp dir, always freshly `apt-get update`d): /etc/apt and /var/lib/apt/lists are never modified, so
# the host's apt stays bookworm-only even if this script is interrupted.
#
# Idempotent: does nothing when `/usr/local/sbin/criu check` already says "Looks good". Exits non-zero unless
# the final `criu check` passes. Needs root and network access to the Debian mirror.
#
# The mirror is the host's own: the URI its apt sources (sources.list and sources.list.d/*.list one-line
# entries, sources.list.d/*.sources deb822 stanzas, where `apt-config` says they are) use for the Debian main
# archive, i.e. the `deb` source of the host's codename (not -security, -updates or -backports) with component
# main. `hack/install-criu.sh --print-mirror` prints that URI and exits (no root needed).
#
# trixie's criu 4.1.1 cannot dump any inet socket on kernels from 6.16 (they refuse SO_PASSCRED/SO_PASSSEC
# on non-unix sockets, and 4.1.1 fails the dump on that); CRIU 4.2 copes. CRIU_SUITE=sid installs 4.2.x the
# same way (measured: 4.2.1, criu check passes, TCP connections survive checkpoint/restore).
# Environment: CRIU_PREFIX (default /opt/vzrun/criu), CRIU_WRAPPER (default /usr/local/sbin/criu),
#              CRIU_SUITE (default trixie), DEBIAN_MIRROR (default: the host's Debian mirror, see above),
#              CRIU_FORCE=1 reinstalls even when the current one works.
set -euo pipefail

prefix=${CRIU_PREFIX:-/opt/vzrun/criu}
wrapper=${CRIU_WRAPPER:-/usr/local/sbin/criu}
suite=${CRIU_SUITE:-trixie}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

say() { printf '\033[1m[install-criu]\033[0m %s\n' "$*"; }
die() { printf '[install-criu] error: %s\n' "$*" >&2; exit 1; }

# The host's apt source files: the one-line sources.list, then sources.list.d/*.list and *.sources, where
# apt-config says they are (it honours APT_CONFIG, as apt does).
apt_source_files() {
  local list=/etc/apt/sources.list parts=/etc/apt/sources.list.d f
  if command -v apt-config >/dev/null 2>&1; then
    eval "$(apt-config shell list Dir::Etc::SourceList/f parts Dir::Etc::SourceParts/d)"
  fi
  [ -f "$list" ] && printf '%s\n' "$list"
  for f in "${parts%/}"/*.list "${parts%/}"/*.sources; do
    [ -f "$f" ] && printf '%s\n' "$f"
  done
  return 0
}

# Prints the URI of the host's Debian main archive: the first enabled `deb` source whose suites hold the host's
# codename (from /etc/os-release; without one, any suite without a -security/-updates/-backports suffix)
# and whose components hold main. Prints nothing when there is none.
host_debian_mirror() {
  local codename="" f
  if [ -r /etc/os-release ]; then
    codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
  fi
  local found=""
  while read -r f; do
    case "$f" in
      *.sources) found=$(awk -v want="$codename" -f <(deb822_awk) "$f") ;;
      *) found=$(awk -v want="$codename" -f <(oneline_awk) "$f") ;;
    esac
    found=${found%%$'\n'*}
    if [ -n "$found" ]; then
      printf '%s\n' "${found%/}"
      return 0
    fi
  done < <(apt_source_files)
  return 0
}

# awk helpers of host_debian_mirror: suite_ok(suite) and has(list, word) are shared.
common_awk() {
  cat <<'AWK'
function suite_ok(s) {
  if (want != "") return s == want
  return s !~ /-(security|updates|backports|proposed-updates)$/ && s !~ /\//
}
function has(list, word,   n, a, i) {
  n = split(list, a, /[ \t]+/)
  for (i = 1; i <= n; i++) if (a[i] == word) return 1
  return 0
}
AWK
}

# One-line format: deb [options] URI SUITE COMPONENT...
oneline_awk() {
  common_awk
  cat <<'AWK'
{
  sub(/#.*/, "")
  if ($1 != "deb") next
  line = $0
  sub(/^[ \t]*deb[ \t]+/, "", line)
  if (line ~ /^\[/) sub(/^\[[^]]*\][ \t]*/, "", line)
  n = split(line, f, /[ \t]+/)
  if (n < 3 || !suite_ok(f[2])) next
  for (i = 3; i <= n; i++) if (f[i] == "main") { print f[1]; next }
}
AWK
}

# deb822 format: stanzas of Types/URIs/Suites/Components/Enabled fields, separated by blank lines.
deb822_awk() {
  common_awk
  cat <<'AWK'
function flush(   n, u, i, ok) {
  if (has(v["types"], "deb") && has(v["components"], "main") && tolower(v["enabled"]) != "no") {
    n = split(v["suites"], s, /[ \t]+/)
    ok = 0
    for (i = 1; i <= n; i++) if (s[i] != "" && suite_ok(s[i])) ok = 1
    if (ok) {
      n = split(v["uris"], u, /[ \t]+/)
      for (i = 1; i <= n; i++) if (u[i] != "") { print u[i]; break }
    }
  }
  delete v
  key = ""
}
/^#/ { next }
/^[ \t]*$/ { flush(); next }
/^[ \t]/ { if (key != "") v[key] = v[key] " " $0; next }
{
  i = index($0, ":")
  if (i == 0) next
  key = tolower(substr($0, 1, i - 1))
  v[key] = substr($0, i + 1)
  gsub(/^[ \t]+|[ \t]+$/, "", v[key])
}
END { flush() }
AWK
}

if [ "${1:-}" = --print-mirror ]; then
  m=${DEBIAN_MIRROR:-$(host_debian_mirror)}
  [ -n "$m" ] || die "no Debian main archive in the host's apt sources (set DEBIAN_MIRROR)"
  printf '%s\n' "$m"
  exit 0
fi

# criu and the libraries it needs (measured on trixie, criu 4.1.1). The transitive Depends computed from the
# trixie index are added to this list, so a renamed library does not break the install.
packages=(
  criu libcompel1 libc6 libgnutls30t64 libnftables1 libnl-3-200 libprotobuf-c1 libbsd0 libnet1 libuuid1
  libnettle8t64 libhogweed6t64 libtasn1-6 libp11-kit0 libidn2-0 libunistring5 libgmp10 libffi8 libnftnl11
  libmnl0 libjansson4 libxtables12 libedit2 libmd0 libtinfo6
)

criu_ok() { # $1: criu executable; true when `criu check` passes
  [ -x "$1" ] || return 1
  local out
  out=$("$1" check 2>&1) || return 1
  grep -q 'Looks good' <<<"$out"
}

trap 'printf "[install-criu] error: command failed (status %s) at line %s\n" "$?" "$LINENO" >&2' ERR
[ "$(id -u)" = 0 ] || die "must run as root"

if [ "${CRIU_FORCE:-0}" != 1 ] && criu_ok "$wrapper"; then
  say "already working: $("$wrapper" --version 2>&1 | head -n1) ($wrapper)"
  exit 0
fi

for tool in apt-get apt-cache dpkg dpkg-deb readelf; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
[ -r "$keyring" ] || die "$keyring missing (apt-get install debian-archive-keyring)"
mirror=${DEBIAN_MIRROR:-$(host_debian_mirror)}
[ -n "$mirror" ] || die "no Debian main archive found in the host's apt sources ($(apt_source_files | tr '\n' ' ')): \
set DEBIAN_MIRROR to the Debian mirror URI to use"
arch=$(dpkg --print-architecture)

work=$(mktemp -d /tmp/install-criu.XXXXXX)
staging=""
cleanup() {
  rm -rf "$work"
  [ -z "$staging" ] || rm -rf "$staging"
}
trap cleanup EXIT

# --- private apt configuration: only the trixie source, pinned low, own lists and cache ---------------------
mkdir -p "$work"/apt/{parts,prefs,lists/partial,cache/archives/partial} "$work/debs"
cat >"$work/apt/sources.list" <<EOF
deb [arch=$arch signed-by=$keyring] $mirror $suite main
EOF
cat >"$work/apt/prefs/$suite.pref" <<EOF
Package: *
Pin: release n=$suite
Pin-Priority: 100
EOF
apt_opts=(
  -o "Dir::Etc::SourceList=$work/apt/sources.list"
  -o "Dir::Etc::SourceParts=$work/apt/parts"
  -o "Dir::Etc::Preferences=$work/apt/prefs/none"
  -o "Dir::Etc::PreferencesParts=$work/apt/prefs"
  -o "Dir::State::Lists=$work/apt/lists"
  -o "Dir::Cache=$work/apt/cache"
  -o "APT::Sandbox::User=root"
  -o "Acquire::Languages=none"
  -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
)

say "fetching the $suite package index from $mirror"
apt-get "${apt_opts[@]}" -qq update || die "apt-get update for $suite failed (no network to $mirror?)"

# Library names move between suites (sid has libnet9, not libnet1): keep only what this suite has; the
# transitive Depends below bring in the renamed ones.
have=()
for p in "${packages[@]}"; do
  if apt-cache "${apt_opts[@]}" show "$p" >/dev/null 2>&1; then have+=("$p"); fi
done
packages=("${have[@]}")

# Add the transitive Depends/Pre-Depends of criu as the trixie index states them (virtual packages and
# alternatives show up as <name> lines or with a leading '|' in the indented part, which is skipped).
if deps=$(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
  --no-breaks --no-replaces --no-enhances criu 2>/dev/null); then
  while read -r p; do
    case "$p" in '' | '<'*) continue ;; esac
    p=${p%:"$arch"}
    case " ${packages[*]} " in *" $p "*) ;; *) packages+=("$p") ;; esac
  done < <(grep -v '^[[:space:]]' <<<"$deps")
fi

say "downloading from $suite: ${packages[*]}"
(cd "$work/debs" && apt-get "${apt_opts[@]}" -qq download -t "$suite" "${packages[@]}") \
  || die "apt-get download from $suite failed"

# --- unpack into a staging prefix, check it, then swap it in -------------------------------------------------
mkdir -p "$(dirname "$prefix")"
staging=$(mktemp -d "$prefix.new.XXXXXX")
for deb in "$work"/debs/*.deb; do
  dpkg-deb -x "$deb" "$staging"
done
chmod 0755 "$staging"

criu_rel=""
for c in usr/sbin/criu sbin/criu usr/bin/criu; do
  [ -f "$staging/$c" ] && { criu_rel=$c; break; }
done
[ -n "$criu_rel" ] || die "criu binary not found in the unpacked criu package"

# The loader is named by criu's PT_INTERP (/lib64/ld-linux-x86-64.so.2 on amd64); with merged /usr it lives in
# the multiarch library directory next to libc.so.6.
interp=$(readelf -l "$staging/$criu_rel" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
[ -n "$interp" ] || die "cannot read criu's program interpreter"
libc=$(find "$staging/usr/lib" -maxdepth 2 -name libc.so.6 -print -quit)
[ -n "$libc" ] || die "libc.so.6 not found in the unpacked libc6"
libdir_rel=${libc#"$staging"/}
libdir_rel=${libdir_rel%/libc.so.6}
ldso_rel="$libdir_rel/$(basename "$interp")"
[ -e "$staging/$ldso_rel" ] || die "dynamic loader $ldso_rel not found in the unpacked libc6"

# Every library criu needs must come from the prefix, never from the host (whose older glibc would not do).
deps=$("$staging/$ldso_rel" --library-path "$staging/$libdir_rel" --list "$staging/$criu_rel") \
  || die "the $suite loader cannot load criu: $deps"
if grep -q 'not found' <<<"$deps"; then
  die "libraries missing from the prefix: $(grep 'not found' <<<"$deps" | tr -s ' \t\n' ' ')"
fi
if outside=$(grep '=>' <<<"$deps" | grep -v "=> $staging/"); then
  die "libraries resolved outside the prefix: $(tr -s ' \t\n' ' ' <<<"$outside")"
fi

if [ -e "$prefix" ]; then
  rm -rf "$prefix.old"
  mv "$prefix" "$prefix.old"
fi
mv "$staging" "$prefix"
staging=""
rm -rf "$prefix.old"

# --- the wrapper --------------------------------------------------------------------------------------------
# --argv0 keeps criu's argv[0] pointing at the wrapper. CRIU_LIBS_DIR (criu's plugin directory, default
# /usr/lib/criu) is pointed at the prefix only when plugins were unpacked there.
mkdir -p "$(dirname "$wrapper")"
tmpw=$(mktemp "$wrapper.XXXXXX")
cat >"$tmpw" <<EOF
#!/bin/sh
# Generated by vzrun's hack/install-criu.sh: runs $suite's criu with its own loader and libraries from $prefix.
P=$prefix
if [ -z "\${CRIU_LIBS_DIR:-}" ] && [ -d "\$P/usr/lib/criu" ]; then
  CRIU_LIBS_DIR=\$P/usr/lib/criu
  export CRIU_LIBS_DIR
fi
exec "\$P/$ldso_rel" --argv0 "\$0" --library-path "\$P/$libdir_rel" "\$P/$criu_rel" "\$@"
EOF
chmod 0755 "$tmpw"
mv -f "$tmpw" "$wrapper"

version=$("$wrapper" --version 2>&1) || die "'$wrapper --version' failed: $version"
case "$version" in
  *"Version: "[4-9].*) ;;
  *) die "unexpected criu version: $version" ;;
esac
if ! out=$("$wrapper" check 2>&1) || ! grep -q 'Looks good' <<<"$out"; then
  printf '%s\n' "$out" >&2
  die "'$wrapper check' does not pass"
fi
say "installed criu $(sed -n 's/^Version: //p' <<<"$version") at $prefix, wrapper $wrapper: criu check: Looks good."
if [ -d "$prefix/usr/libexec/criu" ]; then
  say "criu's helper scripts: $prefix/usr/libexec/criu"
fi
case ":$PATH:" in *":$(dirname "$wrapper"):"*) ;; *) say "note: $(dirname "$wrapper") is not in PATH" ;; esac
