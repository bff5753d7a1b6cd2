#!/usr/bin/env bash
# check-report.sh REPORT.html [OUT.png]: renders a ppea HTML report in a real headless browser
# (Debian's chromium), saves a screenshot, and checks that the page loaded without script errors.
#
# The report's first inline script records any script error as a `data-report-error` attribute
# on <html>; its last one sets `data-report-ok="1"` only if it ran and no error was recorded.
# This script reads the final DOM (chromium --dump-dom) and requires the second without the first.
# It also requires the page to be self-contained (no http(s) resource but the SVG namespace).
#
# The screenshot is 1200x2400 pixels (REPORT_WINDOW=1200,4800 for a taller one).
# Installs chromium with apt-get when /usr/bin/chromium is missing (needs root, or sudo without
# a password). Exit status: 0 ok, 1 check failed, 2 usage or setup problem.
set -euo pipefail

usage() { echo "usage: $0 REPORT.html [OUT.png]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
report=$1
[ -f "$report" ] || { echo "check-report: $report: no such file" >&2; exit 2; }
report=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
png=${2:-${report%.html}.png}
case "$png" in /*) ;; *) png="$(pwd)/$png" ;; esac

browser=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$browser" ]; then
  echo "check-report: $browser missing; installing Debian's chromium package with apt-get" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo > /dev/null && sudo -n true 2> /dev/null; then sudo="sudo -n"; else
      echo "check-report: chromium is not installed and this user cannot install it (not root, no passwordless sudo): run 'apt-get install -y chromium' as root" >&2
      exit 2
    fi
  fi
  log=$(mktemp)
  if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
         $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; } > "$log" 2>&1; then
    echo "check-report: installing chromium with apt-get failed (is a Debian package registry reachable?); last lines:" >&2
    tail -n 15 "$log" >&2
    rm -f "$log"
    exit 2
  fi
  rm -f "$log"
  [ -x "$browser" ] || { echo "check-report: apt-get succeeded but $browser is still missing" >&2; exit 2; }
fi

# Self-contained: no external resource (the only URL allowed is the SVG namespace).
external=$(grep -oE '(src|href)="(https?:)?//[^"]*"|url\((https?:)?//[^)]*\)|@import' "$report" | head -n 3 || true)
if [ -n "$external" ]; then
  echo "check-report: FAIL: $report loads external resources: $external" >&2
  exit 1
fi

profile=$(mktemp -d)
dom=$(mktemp)
errlog=$(mktemp)
trap 'rm -rf "$profile" "$dom" "$errlog"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$profile" --window-size="${REPORT_WINDOW:-1200,2400}")
url="file://$report"

if ! timeout 120 "$browser" "${flags[@]}" --virtual-time-budget=5000 --dump-dom "$url" > "$dom" 2> "$errlog"; then
  echo "check-report: FAIL: chromium could not load $url; its messages:" >&2
  tail -n 15 "$errlog" >&2
  exit 1
fi
root=$(grep -oE '<html[^>]*>' "$dom" | head -n 1 || true)
if [ -z "$root" ]; then
  echo "check-report: FAIL: chromium returned no document for $url" >&2
  exit 1
fi
if [[ "$root" == *data-report-error=* ]]; then
  why=$(sed -E 's/.*data-report-error="([^"]*)".*/\1/' <<< "$root")
  echo "check-report: FAIL: script error in $report: $why" >&2
  exit 1
fi
if [[ "$root" != *'data-report-ok="1"'* ]]; then
  echo "check-report: FAIL: the report's final script did not run (no data-report-ok marker on <html>)" >&2
  exit 1
fi
charts=$(grep -o '<svg class="chart' "$dom" | wc -l)

if ! timeout 120 "$browser" "${flags[@]}" --screenshot="$png" "$url" > /dev/null 2> "$errlog" || [ ! -s "$png" ]; then
  echo "check-report: FAIL: chromium wrote no screenshot to $png; its messages:" >&2
  tail -n 15 "$errlog" >&2
  exit 1
fi
unit=charts; [ "$charts" = 1 ] && unit=chart
echo "check-report: ok: $report rendered without script errors ($charts $unit); screenshot $png"
