#!/usr/bin/env bash
# Install the system tools the documentation tests need (Debian/Ubuntu, as root):
# Graphviz's dot draws the architecture pictures at build time; headless Chromium and
# chromedriver open the built pages. Idempotent: installs only what is missing.
set -euo pipefail

missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fc-list 2>/dev/null | grep -qi dejavu || missing+=(fonts-dejavu-core)

if (( ${#missing[@]} )); then
  echo "docs-tools: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
dot -V
chromium --version
chromedriver --version
