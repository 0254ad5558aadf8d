#!/bin/sh
# The release's virtual environment, .venv, made from the artifact's wheelhouse (wheels/) without network.
#
# Usage, in the release's directory: sh bin/venv.sh STORE [RELEASES]
#
# The environments live in STORE, one per requirements.txt and Python version: a host that installed this
# lock before links that environment instead of installing it again (a release that changes only the app
# installs nothing). With RELEASES (the deploy root's releases/), an environment that no release links to
# any more is removed. The venv is made where it stays (its scripts name their interpreter by path).
set -eu
store=$1
releases=${2:-}
key=$({ cat requirements.txt; python3 -VV; } | sha256sum | cut -c1-16)
venv=$store/$key
if [ ! -f "$venv/.complete" ]; then
    rm -rf "$venv"
    mkdir -p "$store"
    python3 -m venv --without-pip "$venv"
    # This machine's pip installs into the venv when it can (pip >= 22.3): quicker than a copy of pip in each.
    if python3 -m pip --python "$venv/bin/python" --version >/dev/null 2>&1; then
        pip="python3 -m pip --python $venv/bin/python"
    else
        "$venv/bin/python" -m ensurepip --default-pip >/dev/null
        pip="$venv/bin/python -m pip"
    fi
    # pip compiles the packages' bytecode as it installs them: no host compiles on the first request.
    $pip install --quiet --disable-pip-version-check --no-index --find-links wheels -r requirements.txt
    touch "$venv/.complete"
fi
ln -sfn "$venv" .venv
if [ -n "$releases" ]; then
    for old in "$store"/*; do
        [ "$old" = "$venv" ] && continue
        in_use=no
        for link in "$releases"/*/.venv; do
            if [ "$(readlink "$link" 2>/dev/null)" = "$old" ]; then in_use=yes; break; fi
        done
        [ "$in_use" = yes ] || rm -rf "$old"
    done
fi
