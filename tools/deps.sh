#!/bin/bash
# deps.sh - installs, with apt-get, every Debian package Cairn needs to
# build, test and demo, skipping what is already there. Sourced by
# tools/demo.sh and tools/test.sh so the package list lives in one place.
# It sets no shell options: they would become its caller's (a `set -e`
# here made tools/test.sh exit with meson's failure before printing the
# `N passed, N failed` line CI reads). cairn_install_deps returns non-zero
# when apt-get fails.

CAIRN_PACKAGES=(
    build-essential meson ninja-build pkg-config python3
    libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
    libxml2-dev libjansson-dev libsystemd-dev libcriterion-dev
    jq iproute2 procps psmisc util-linux
)

cairn_install_deps() {
    local missing=() p
    for p in "${CAIRN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq || return 1
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
