# Shared by .ci/setup and .ci/test (sourced, not run).
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
PYTHON=${PYTHON:-python3}

apt_install() {
  echo "setup: installing Debian packages: $*"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# new_venv DIR: a virtualenv at DIR with a current pip (python3 and python3-venv from Debian if missing).
new_venv() {
  if ! command -v "$PYTHON" >/dev/null 2>&1; then apt_install python3 python3-venv; fi
  if ! "$PYTHON" -m venv "$1" 2>/dev/null; then
    rm -rf "$1"
    apt_install python3-venv
    "$PYTHON" -m venv "$1"
  fi
  "$1/bin/python" -m pip install -q --upgrade pip
}
