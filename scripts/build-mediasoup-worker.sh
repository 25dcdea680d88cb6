#!/usr/bin/env bash
# Builds mediasoup-worker for the pinned mediasoup from its npm tarball, using Debian (bookworm) packages
# for every library, and caches the stripped binary in .cache/mediasoup-worker/<version>/.
#
#   scripts/build-mediasoup-worker.sh            # build if not cached; stdout: the cached binary's path
#   scripts/build-mediasoup-worker.sh --install  # same, then copy it into node_modules/mediasoup
#
# Why this exists: `npm install mediasoup` downloads a prebuilt worker from GitHub and, failing that,
# builds one whose meson subprojects (openssl, libuv, libsrtp, usrsctp, abseil, flatbuffers, ...) are
# downloaded from GitHub/wrapdb. Machines that reach only the npm registry and a Debian mirror get
# neither, so we build against the distribution's libraries instead. Typical use on such a machine:
#
#   MEDIASOUP_WORKER_BIN=$(scripts/build-mediasoup-worker.sh) npm ci   # postinstall then skips its build
#   scripts/build-mediasoup-worker.sh --install                          # mediasoup finds it without env
#
# Progress goes to stderr so that stdout carries only the path (its last and only line).
# Environment: JOBS (parallel compile jobs, default nproc), TMPDIR (where the throw-away build tree goes).
set -euo pipefail

# The source patches below are written against this exact release (package.json pins the same version).
MS_VERSION=3.27.1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_bin="$root/.cache/mediasoup-worker/$MS_VERSION/mediasoup-worker"
# The path mediasoup's Worker.js looks at when MEDIASOUP_WORKER_BIN is not set.
module_dir="$root/node_modules/mediasoup"
install_bin="$module_dir/worker/out/Release/mediasoup-worker"

install=0
for arg in "$@"; do
  case "$arg" in
    --install) install=1 ;;
    -h | --help)
      sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build-mediasoup-worker: unknown argument '$arg' (only --install)" >&2
      exit 2
      ;;
  esac
done

log() { echo "build-mediasoup-worker: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Copying into node_modules is separate from building because npm ci wipes node_modules: the build
# must come first (its path goes into MEDIASOUP_WORKER_BIN for npm ci), the copy after npm ci.
check_install_target() {
  [ -f "$module_dir/package.json" ] || die "$module_dir is missing; run npm ci first, then --install"
  local installed
  installed=$(node -p "require('$module_dir/package.json').version")
  # Node side and worker talk a FlatBuffers protocol that changes between releases: refuse a mismatch
  # here rather than let workers fail at run time.
  [ "$installed" = "$MS_VERSION" ] ||
    die "node_modules has mediasoup $installed but this script builds $MS_VERSION; fix package.json or the script"
}
install_worker() {
  install -D -m 755 "$cache_bin" "$install_bin"
  log "installed $install_bin"
  echo "$install_bin"
}
# Checked before a possible build, so that a wrong --install does not fail only after minutes of compiling.
[ "$install" = 0 ] || check_install_target

if [ -x "$cache_bin" ]; then
  log "cached: $cache_bin (delete it to rebuild)"
  if [ "$install" = 1 ]; then install_worker; else echo "$cache_bin"; fi
  exit 0
fi

# --- build dependencies ------------------------------------------------------------------------------
# Check everything up front and name the Debian package for each gap: a missing library otherwise shows
# up minutes later as a meson or compiler error that does not say what to install.
missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2 (no '$1' command)"); }
need_cmd g++ build-essential
need_cmd make build-essential
need_cmd strip build-essential
need_cmd pkg-config pkg-config
need_cmd meson meson
need_cmd ninja ninja-build
need_cmd python3 python3
need_cmd flatc flatbuffers-compiler
command -v npm >/dev/null 2>&1 || die "npm (Node.js) is required to fetch the mediasoup tarball"
if command -v pkg-config >/dev/null 2>&1; then
  need_pc() { # <Debian package> <pkg-config module...>
    local pkg=$1
    shift
    pkg-config --exists "$@" || missing+=("$pkg (pkg-config: not found among $*)")
  }
  need_pc libuv1-dev libuv
  need_pc libssl-dev openssl
  need_pc libsrtp2-dev libsrtp2
  need_pc libabsl-dev absl_flat_hash_map absl_flat_hash_set absl_btree absl_inlined_vector absl_memory \
    absl_strings absl_optional
  need_pc libflatbuffers-dev flatbuffers
fi
if [ "${#missing[@]}" -gt 0 ]; then
  for m in "${missing[@]}"; do log "missing build dependency: $m"; done
  pkgs=$(printf '%s\n' "${missing[@]}" | cut -d' ' -f1 | sort -u | tr '\n' ' ')
  die "install them first, e.g.: apt-get install --no-install-recommends ${pkgs% }"
fi

# --- sources -------------------------------------------------------------------------------------------
# A throw-away tree outside the repo: the tarball carries JavaScript that eslint/prettier would
# otherwise pick up, and only the binary is worth keeping. Kept on failure for inspection.
work=$(mktemp -d "${TMPDIR:-/tmp}/mediasoup-worker-build.XXXXXX")
cleanup() {
  if [ "$1" -eq 0 ]; then rm -rf "$work"; else log "build tree kept in $work"; fi
}
trap 'cleanup $?' EXIT
started=$(date +%s)

log "fetching mediasoup@$MS_VERSION from the npm registry"
# Run from the repo so that its npm configuration (registry, cache) applies.
(cd "$root" && npm pack --silent --pack-destination "$work" "mediasoup@$MS_VERSION" >/dev/null)
tar -xzf "$work/mediasoup-$MS_VERSION.tgz" -C "$work"
W="$work/package/worker"

# --- meson subprojects -> system libraries -------------------------------------------------------------
# mediasoup's meson.build calls subproject() for each library and reads fixed variables from it. With
# --wrap-mode=nodownload meson uses whatever sits in the directory the .wrap file names, so a small
# project there that wraps the Debian library with dependency() satisfies it without any download.
# The *_lib variables only feed link_whole of libmediasoup-worker (not built here), so empty static
# libraries do for them. meson_options.txt must declare every option mediasoup passes in default_options.
wrap_dir() { sed -n 's/^directory *= *//p' "$W/subprojects/$1.wrap"; }
local_subproject() { # <wrap name> <meson.build body> [meson_options.txt body]
  local dir
  dir="$W/subprojects/$(wrap_dir "$1")"
  [ "$dir" != "$W/subprojects/" ] || die "$1.wrap has no directory= line; the tarball layout changed"
  mkdir -p "$dir"
  printf "project('%s', ['c', 'cpp'])\nempty_c = files('empty.c')\n%s\n" "$1" "$2" >"$dir/meson.build"
  echo "int stagehub_empty_$(echo "$1" | tr -c 'a-z0-9\n' _)(void) { return 0; }" >"$dir/empty.c"
  printf '%s\n' "${3:-}" >"$dir/meson_options.txt"
}
local_subproject openssl "openssl_dep = dependency('openssl')
libcrypto_lib = static_library('crypto_empty', empty_c)
libssl_lib = static_library('ssl_empty', empty_c)"
local_subproject libuv "libuv_dep = dependency('libuv')
libuv = static_library('uv_empty', empty_c)" "option('build_tests', type: 'boolean', value: false)
option('build_benchmarks', type: 'boolean', value: false)"
# mediasoup vendors a libsrtp 3 beta; Debian has libsrtp2, whose headers live in include/srtp2 while the
# sources include <srtp.h>. The API differences are patched in the sources below.
local_subproject libsrtp3 "_srtp = dependency('libsrtp2')
libsrtp3_dep = declare_dependency(dependencies: _srtp,
  compile_args: ['-I' + _srtp.get_variable(pkgconfig: 'includedir') + '/srtp2'])
libsrtp3 = static_library('srtp_empty', empty_c)" "option('crypto-library', type: 'string', value: '')
option('crypto-library-kdf', type: 'string', value: '')
option('tests', type: 'string', value: '')"
local_subproject abseil-cpp "absl_container_dep = declare_dependency(dependencies: [
  dependency('absl_flat_hash_map'), dependency('absl_flat_hash_set'),
  dependency('absl_btree'), dependency('absl_inlined_vector'), dependency('absl_memory')])
absl_strings_dep = dependency('absl_strings')
absl_types_dep = dependency('absl_optional')
absl_container_lib = static_library('absl_empty', empty_c)"
# Catch2 is only for the worker's unit tests, which we do not build; meson still reads the variable.
local_subproject catch2 "catch2_dep = dependency('catch2-with-main', required: false)"
local_subproject flatbuffers "flatbuffers_dep = dependency('flatbuffers')
flatbuffers_lib = static_library('flatbuffers_empty', empty_c)"
# ankerl::unordered_dense (a header-only hash map) is in no Debian release. Its interface, as mediasoup
# uses it (map, set, hash), is that of the standard unordered containers, so a stand-in header maps it
# onto them: the same behaviour, somewhat slower lookups in maps that hold a router's few producers,
# consumers and transports.
local_subproject unordered-dense "ankerl_unordered_dense_dep = declare_dependency(include_directories: include_directories('include'))"
ud_dir="$W/subprojects/$(wrap_dir unordered-dense)"
mkdir -p "$ud_dir/include/ankerl"
cat >"$ud_dir/include/ankerl/unordered_dense.h" <<'HEADER'
// stagehub's stand-in for ankerl/unordered_dense.h (scripts/build-mediasoup-worker.sh): std containers.
#pragma once
#include <functional>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <utility>
namespace ankerl::unordered_dense {
template <class T> struct hash : std::hash<T> {};
template <class Key, class T, class Hash = hash<Key>, class KeyEqual = std::equal_to<Key>,
          class Allocator = std::allocator<std::pair<const Key, T>>>
using map = std::unordered_map<Key, T, Hash, KeyEqual, Allocator>;
template <class Key, class Hash = hash<Key>, class KeyEqual = std::equal_to<Key>, class Allocator = std::allocator<Key>>
using set = std::unordered_set<Key, Hash, KeyEqual, Allocator>;
} // namespace ankerl::unordered_dense
HEADER

# --- source patches ------------------------------------------------------------------------------------
# Each patch asserts that it matched, so a changed tarball fails here instead of building something else.
log "patching sources"
python3 - "$W" <<'EOF'
import pathlib, re, sys

w = pathlib.Path(sys.argv[1])

def patch(rel, fn):
    f = w / rel
    f.write_text(fn(f.read_text()))

def sub(pattern, repl, s, count, what):
    s, n = re.subn(pattern, repl, s, flags=re.S)
    assert n == count, f'{what}: expected {count} match(es), found {n}'
    return s

# libsrtp 3 protects out of place with size_t lengths and an MKI index; libsrtp2 protects in place
# with an int length. EncryptRtp/EncryptRtcp already check that the packet plus SRTP_MAX_TRAILER_LEN
# fits the encrypt buffer, so copying the packet there first and protecting it in place is safe.
def srtp_session(s):
    s = sub(r'const srtp_err_status_t err = (srtp_protect(?:_rtcp)?)\(\s*/\*srtp_t ctx\*/ this->session,'
            r'\s*/\*const uint8_t\* \w+\*/ \*data,\s*/\*size_t \w+\*/ \*len,\s*/\*uint8_t\* \w+\*/ encryptBuffer,'
            r'\s*/\*size_t\* \w+\*/ std::addressof\(encryptLen\),\s*/\*size_t mki_index\*/ 0\);',
            lambda m: 'std::memcpy(encryptBuffer, *data, *len);\n'
                      '\t\tint srtp2Len = static_cast<int>(*len);\n'
                      f'\t\tconst srtp_err_status_t err = {m.group(1)}(this->session, encryptBuffer, &srtp2Len);\n'
                      '\t\tencryptLen = static_cast<size_t>(srtp2Len);',
            s, 2, 'SrtpSession.cpp srtp_protect[_rtcp]')
    s = sub(r'const srtp_err_status_t err = (srtp_unprotect(?:_rtcp)?)\(\s*/\*srtp_t ctx\*/ this->session,'
            r'\s*/\*const uint8_t\* \w+\*/ data,\s*/\*size_t \w+\*/ \*len,\s*/\*uint8_t\* \w+\*/ data,'
            r'\s*/\*size_t\* \w+\*/ std::addressof\(decryptLen\)\);',
            lambda m: 'int srtp2Len = static_cast<int>(*len);\n'
                      f'\t\tconst srtp_err_status_t err = {m.group(1)}(this->session, data, &srtp2Len);\n'
                      '\t\tdecryptLen = static_cast<size_t>(srtp2Len);',
            s, 2, 'SrtpSession.cpp srtp_unprotect[_rtcp]')
    s = sub(r'#include "MediaSoupErrors\.hpp"\n', '#include "MediaSoupErrors.hpp"\n#include <cstring>\n', s, 1,
            'SrtpSession.cpp includes')
    # libsrtp 3 builds a session from an opaque policy object (srtp_policy_create/_set_profile/_add_key);
    # libsrtp2 takes a policy struct filled by srtp_crypto_policy_set_*: the same session, older API.
    return sub(r'(SrtpSession::SrtpSession\(Type type, CryptoSuite cryptoSuite, uint8_t\* key, size_t keyLen\)\n\t\{\n)'
               r'.*?(\n\t\}\n\n\tSrtpSession::~SrtpSession\(\))',
               lambda m: m.group(1) + SRTP2_CONSTRUCTOR + m.group(2), s, 1, 'SrtpSession.cpp constructor')

SRTP2_CONSTRUCTOR = '''\t\tMS_TRACE();

\t\tsrtp_policy_t policy; // NOLINT(cppcoreguidelines-pro-type-member-init)
\t\tstd::memset(&policy, 0, sizeof(srtp_policy_t));

\t\tswitch (cryptoSuite)
\t\t{
\t\t\tcase CryptoSuite::AEAD_AES_256_GCM:
\t\t\t\tsrtp_crypto_policy_set_aes_gcm_256_16_auth(&policy.rtp);
\t\t\t\tsrtp_crypto_policy_set_aes_gcm_256_16_auth(&policy.rtcp);
\t\t\t\tbreak;
\t\t\tcase CryptoSuite::AEAD_AES_128_GCM:
\t\t\t\tsrtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp);
\t\t\t\tsrtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtcp);
\t\t\t\tbreak;
\t\t\tcase CryptoSuite::AES_CM_128_HMAC_SHA1_80:
\t\t\t\tsrtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtp);
\t\t\t\tsrtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtcp);
\t\t\t\tbreak;
\t\t\tcase CryptoSuite::AES_CM_128_HMAC_SHA1_32:
\t\t\t\tsrtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&policy.rtp);
\t\t\t\t// RTCP always uses the 80-bit tag.
\t\t\t\tsrtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtcp);
\t\t\t\tbreak;
\t\t\tdefault:
\t\t\t\tMS_ABORT("unknown SRTP crypto suite");
\t\t}

\t\tMS_ASSERT(
\t\t  keyLen == static_cast<size_t>(policy.rtp.cipher_key_len),
\t\t  "given keyLen does not match policy.rtp.cipher_key_len");

\t\tpolicy.ssrc.type  = type == Type::INBOUND ? ssrc_any_inbound : ssrc_any_outbound;
\t\tpolicy.ssrc.value = 0;
\t\tpolicy.key        = key;
\t\t// Required for sending RTP retransmission without RTX.
\t\tpolicy.allow_repeat_tx = 1;
\t\tpolicy.window_size     = 1024;
\t\tpolicy.next            = nullptr;

\t\tconst srtp_err_status_t err = srtp_create(&this->session, &policy);

\t\tif (DepLibSRTP::IsError(err))
\t\t{
\t\t\tMS_THROW_ERROR("srtp_create() failed: %s", DepLibSRTP::GetErrorString(err).c_str());
\t\t}'''

patch('src/RTC/SrtpSession.cpp', srtp_session)
patch('include/RTC/SrtpSession.hpp',
      lambda s: sub(r'srtp_stream_remove\(', 'srtp_remove_stream(', s, 1, 'SrtpSession.hpp srtp_stream_remove'))
# Error codes that only libsrtp 3 defines.
patch('src/DepLibSRTP.cpp',
      lambda s: sub(r'\n\s*\{ srtp_err_status_(?:buffer_small|cryptex_err),[^\n]*', '', s, 2,
                    'DepLibSRTP.cpp libsrtp3 error codes'))

# The DTLS bug: OpenSSL calls the BIO callback with operationType = BIO_CB_RETURN | BIO_CB_CTRL (etc.),
# never plain BIO_CB_RETURN, so `==` made the callback answer 1 to every control query. Debian's
# OpenSSL is built with kernel TLS; BIO_get_ktls_send() then returns 1, OpenSSL never allocates its
# DTLS write buffer and the worker SIGSEGVs on the first ClientHello. Only a real DTLS peer shows it.
patch('src/RTC/DtlsTransport.cpp',
      lambda s: sub(r'\(operationType == BIO_CB_RETURN\) \? static_cast<long>\(ret\) : 1;',
                    '(operationType & BIO_CB_RETURN) ? static_cast<long>(ret) : 1;', s, 1,
                    'DtlsTransport.cpp onSslBioOut'))

# bookworm ships meson 1.0.1; the build uses nothing from 1.1.
patch('meson.build', lambda s: sub(r"meson_version: '>= 1\.1\.0'", "meson_version: '>= 1.0.0'", s, 1,
                                   'meson.build meson_version'))
EOF

# --- build -------------------------------------------------------------------------------------------
run_logged() { # <log file> <command...>: quiet on success, the log's tail on failure
  local out=$1
  shift
  if ! "$@" >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    die "'$*' failed (full log: $out)"
  fi
}
log "meson setup"
run_logged "$work/meson-setup.log" meson setup --buildtype=release -Db_ndebug=true --wrap-mode=nodownload \
  "$W/build" "$W"
log "compiling with ${JOBS:-$(nproc)} jobs (several minutes)"
run_logged "$work/ninja.log" ninja -C "$W/build" -j"${JOBS:-$(nproc)}" mediasoup-worker

# Strip (symbols are of no use to the hub) and move into place last, so an interrupted run never leaves a
# partial binary that the cache check above would accept.
mkdir -p "$(dirname "$cache_bin")"
strip -o "$cache_bin.tmp" "$W/build/mediasoup-worker"
chmod 755 "$cache_bin.tmp"
mv -f "$cache_bin.tmp" "$cache_bin"
log "built $cache_bin in $(($(date +%s) - started)) s"

if [ "$install" = 1 ]; then install_worker; else echo "$cache_bin"; fi
