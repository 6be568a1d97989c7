# Source this to use the workspace built by tools/setup (venv + colcon install space).
_espargos_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$_espargos_root/.venv/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV"
set +u
# shellcheck disable=SC1091
source "$_espargos_root/install/setup.bash"
unset _espargos_root
