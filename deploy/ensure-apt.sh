#!/usr/bin/env bash
# Install Debian packages only when what they provide is missing (idempotent and quick).
#
#   deploy/ensure-apt.sh CHECK=PACKAGE[|FALLBACK] ... PACKAGE ...
#
# CHECK is a command name (looked up in PATH and /usr/sbin) or an absolute file path.
# PACKAGE|FALLBACK tries PACKAGE first (e.g. nginx-light|nginx across Debian releases).
# A bare PACKAGE (no CHECK) is installed unless dpkg reports it installed.
# Package maintainer scripts must not start system services (a system redis on 6379 or nginx
# on 80 would collide with `make run`): a temporary policy-rc.d forbids it during the install.
set -euo pipefail

missing=()
for spec in "$@"; do
    check=${spec%%=*}
    pkg=${spec#*=}
    if [[ $spec != *=* ]]; then
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' && continue
    elif [[ $check == /* ]]; then
        [[ -e $check ]] && continue
    else
        command -v "$check" >/dev/null 2>&1 && continue
        [[ -x /usr/sbin/$check ]] && continue
    fi
    missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        echo "ensure-apt: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]//|/ or }" >&2
        exit 1
    fi
fi

echo "ensure-apt: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
created_policy=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# ocr-origin ensure-apt.sh: no service starts during this install\nexit 101\n' \
        | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
cleanup() { [[ $created_policy -eq 1 ]] && "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; true; }
trap cleanup EXIT

"${SUDO[@]}" apt-get update -qq
for pkg in "${missing[@]}"; do
    IFS='|' read -r -a choices <<<"$pkg"
    ok=0
    for choice in "${choices[@]}"; do
        if "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$choice" </dev/null; then
            ok=1
            break
        fi
    done
    [[ $ok -eq 1 ]] || { echo "ensure-apt: could not install $pkg" >&2; exit 1; }
done
