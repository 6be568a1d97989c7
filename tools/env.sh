# Source this to use the workspace built by tools/setup (venv + colcon install space).
_espargos_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$_espargos_root/.venv/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV"
set +u
# shellcheck disable=SC1091
source "$_espargos_root/install/setup.bash"
# The packages' executables on PATH (what `ros2 run <package> <executable>` would start).
for _espargos_bin in "$_espargos_root"/install/espargos_*/lib/espargos_*; do
  case ":$PATH:" in *":$_espargos_bin:"*) ;; *) PATH="$_espargos_bin:$PATH" ;; esac
done
export PATH
unset _espargos_bin
unset _espargos_root
