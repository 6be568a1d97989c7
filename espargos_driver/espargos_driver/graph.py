"""The node graphs of the launch files, as pure functions of their YAML and arguments.

``launch/*.launch.py`` turn a :class:`Graph` into launch_ros actions; the single-process
runner (``espargos_run``) starts the same graph in one executor. Nothing here imports ROS.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .layout import load_layout_file
from .readme_sections import regenerate, replace_section

DRIVER_NODE = "board_node"
AOA_NODE = "aoa_node"
VITALS_NODE = "vital_signs_node"
SIM_HTTP_PORT = 8400
SIM_STREAM_PORT = 53330


SHARE_PLACEHOLDER = "<share>"
"""Stands for the installed share/espargos_driver directory in argument defaults."""
AUTOSTART_ARGUMENT = ("true", "board_node / swarm_node configure and activate themselves (false: they wait in "
                              "unconfigured for lifecycle transitions)")
ARRAY_ARGUMENTS = {
    "namespace": ("espargos", "namespace of the array's nodes and topics"),
    "config": ("<share>/config/board.yaml", "parameters file of board_node and aoa_node (given to them as a file)"),
    "frame_id": ("espargos_array", "TF frame of the array (x boresight, y left, z up)"),
    "publish_tf": ("true", "publish the static transform parent_frame -> frame_id at x y z roll pitch yaw (tf2_ros)"),
    "parent_frame": ("base_link", "frame the array is mounted on"),
    "x": ("0.0", "array position in parent_frame, m"), "y": ("0.0", "m"), "z": ("0.0", "m"),
    "roll": ("0.0", "array orientation in parent_frame, rad"), "pitch": ("0.0", "rad"), "yaw": ("0.0", "rad"),
    "rviz": ("false", "start rviz2 with the shipped view of bearings and spectrum (needs rviz2)"),
    "vitals": ("false", "also start vital_signs_node: breathing and presence per beam from the array's CSI "
                        "(its section of the parameters file)"),
    "simulate": ("false", "start the built-in simulator and use it instead of a board"),
    "sim_http_port": (str(SIM_HTTP_PORT), "simulator HTTP port (one board)"),
    "sim_stream_port": (str(SIM_STREAM_PORT), "simulator UDP stream port (one board)"),
    "scenario": ("", "simulator scenario YAML (empty: <share>/config/sim_scenario.yaml)"),
    "autostart": AUTOSTART_ARGUMENT,
}
LAUNCH_ARGUMENTS: dict[str, dict[str, tuple[str, str]]] = {
    "board.launch.py": {"host": ("", "board address (empty: the host in the parameters file)"), **ARRAY_ARGUMENTS},
    "combined_array.launch.py": {"array_config": ("<share>/config/combined_array.yaml",
                                                  "combined-array YAML: boards, layout, cables"), **ARRAY_ARGUMENTS},
    "robot.launch.py": {
        "robot_config": ("<share>/config/robot.yaml", "robot YAML (a path, or a name in <share>/config such as "
                                                      "drone.yaml): namespace, base frame, arrays with hosts and poses"),
        "publish_tf": ("true", "publish each array's static transform from the base frame (tf2_ros)"),
        "autostart": AUTOSTART_ARGUMENT,
    },
    "localize.launch.py": {
        "rig_config": ("<share>/config/room.yaml", "rig YAML: arrays with hosts and poses in the fixed frame, locator "
                                                   "parameters, and (simulated) the scene the boards see"),
        "publish_tf": ("true", "publish each array's static transform from the fixed frame (tf2_ros)"),
        "autostart": AUTOSTART_ARGUMENT,
    },
    "swarm.launch.py": {
        "namespace": ("swarm", "namespace of swarm_node, velocity_node and vital_signs_node"),
        "config": ("<share>/config/swarm.yaml",
                   "parameters file of swarm_node, velocity_node and vital_signs_node (given as a file)"),
        "simulate": ("false", "start the built-in swarm simulator (UDP on loopback)"),
        "scenario": ("", "swarm simulator scenario YAML (empty: <share>/config/swarm_scenario.yaml)"),
        "autostart": AUTOSTART_ARGUMENT,
    },
}
"""Every launch file's arguments: name -> (default, description). The launch files declare these
(with ``<share>`` resolved), espargos_run offers the same defaults, the README table is generated
from them (``python -m espargos_driver.graph README.md``)."""


def launch_arguments(launch_file: str, share_dir: Path) -> dict[str, tuple[str, str]]:
    """The arguments of ``launch_file`` with ``<share>`` resolved to ``share_dir``."""
    return {name: (default.replace(SHARE_PLACEHOLDER, str(share_dir)), text)
            for name, (default, text) in LAUNCH_ARGUMENTS[launch_file].items()}


def launch_arguments_table() -> str:
    """The README's Markdown table of every launch file's arguments."""
    rows = ["| launch file | argument | default | meaning |", "|---|---|---|---|"]
    for launch_file, arguments in LAUNCH_ARGUMENTS.items():
        for name, (default, text) in arguments.items():
            rows.append(f"| `{launch_file}` | `{name}` | {f'`{default}`' if default else '(empty)'} | {text} |")
    return "\n".join(rows)


def update_readme(text: str) -> str:
    """``text`` with the ``<!-- launch-arguments -->`` section replaced by the generated table."""
    return replace_section(text, "launch-arguments", launch_arguments_table())


class GraphError(ValueError):
    """A launch configuration that cannot work; the message says what to fix."""


@dataclass
class NodeSpec:
    """One process of the graph: a ROS node, or (``ros=False``) a plain program such as the simulator."""

    package: str
    executable: str
    name: str
    namespace: str = ""
    parameters: dict = field(default_factory=dict)
    """Values set by the graph (flattened names), applied after ``params_files`` (they win)."""
    arguments: list[str] = field(default_factory=list)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    ros: bool = True
    params_files: list[str] = field(default_factory=list)
    """ROS parameters files given to the node as files (``--params-file``), in order."""

    def effective_parameters(self) -> dict:
        """What the node gets: its sections of ``params_files`` (rcl's matching), then ``parameters``."""
        out: dict = {}
        for path in self.params_files:
            out.update(node_parameters(read_yaml(path, "parameters file"), self.name, self.namespace))
        return {**out, **self.parameters}


@dataclass
class StaticTransform:
    """parent -> child pose: translation in metres, roll/pitch/yaw in radians (REP 103)."""

    parent: str
    child: str
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def arguments(self) -> list[str]:
        """Arguments of tf2_ros' static_transform_publisher."""
        names = ("--x", "--y", "--z", "--roll", "--pitch", "--yaw")
        args = [a for n, v in zip(names, (*self.xyz, *self.rpy)) for a in (n, repr(float(v)))]
        return args + ["--frame-id", self.parent, "--child-frame-id", self.child]


@dataclass
class Graph:
    nodes: list[NodeSpec] = field(default_factory=list)
    transforms: list[StaticTransform] = field(default_factory=list)
    rviz_configs: list[str] = field(default_factory=list)
    """rviz2 configuration texts to open (one rviz2 each)."""

    def extend(self, other: "Graph") -> None:
        self.nodes += other.nodes
        self.transforms += other.transforms
        self.rviz_configs += other.rviz_configs


def flatten(params: dict, prefix: str = "") -> dict:
    """Nested parameter dicts -> dotted names (``calibration: {policy: x}`` -> ``calibration.policy``)."""
    out = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _key_pattern(key: str) -> re.Pattern:
    """A parameters-file key as rcl matches it against a node's fully qualified name: a key without
    a leading ``/`` is absolute, ``/**`` stands for any number of namespace tokens, ``*`` for one."""
    key = key if key.startswith("/") else "/" + key
    pattern = re.escape(key.rstrip("/") or "/").replace(r"/\*\*", "(?:/[^/]+)*").replace(r"\*", "[^/]+")
    return re.compile(pattern)


def node_parameters(params_file: dict, node_name: str, namespace: str = "") -> dict:
    """Parameters a ROS params file gives the node ``namespace/node_name``, flattened: the sections
    whose key matches its fully qualified name the way rcl matches them (``/**``, ``/**/name``,
    ``/ns/name``, ``/*/name``, ``name`` = ``/name``); later sections override earlier ones."""
    out: dict = {}
    if not isinstance(params_file, dict):
        raise GraphError("a parameters file must map node names to {ros__parameters: {...}}")
    fqn = "/" + "/".join(t for t in (*namespace.split("/"), node_name) if t)
    for key, section in params_file.items():
        if _key_pattern(str(key)).fullmatch(fqn):
            values = (section or {}).get("ros__parameters") if isinstance(section, dict) else None
            if not isinstance(values, dict):
                raise GraphError(f"parameters file: section {key!r} has no ros__parameters mapping")
            out.update(flatten(values))
    return out


def read_yaml(path: str | Path, what: str) -> dict:
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text())
    except (OSError, yaml.YAMLError) as err:
        raise GraphError(f"cannot read {what} {path}: {err}") from err
    if not isinstance(data, dict):
        raise GraphError(f"{what} {path} must be a YAML mapping")
    return data


def rviz_config(template: str, namespace: str, frame_id: str) -> str:
    """The shipped rviz configuration (made for /espargos and espargos_array) for another array."""
    ns = "/" + namespace.strip("/")
    return template.replace("/espargos/", f"{ns}/").replace("espargos_array", frame_id)


def _pose(pose: dict | None, where: str) -> tuple[tuple, tuple]:
    pose = pose or {}
    xyz, rpy = pose.get("xyz", [0.0, 0.0, 0.0]), pose.get("rpy", [0.0, 0.0, 0.0])
    try:
        xyz, rpy = tuple(float(v) for v in xyz), tuple(float(v) for v in rpy)
    except (TypeError, ValueError) as err:
        raise GraphError(f"{where}: pose xyz and rpy must be numbers: {err}") from err
    if len(xyz) != 3 or len(rpy) != 3:
        raise GraphError(f"{where}: pose needs xyz: [x, y, z] (m) and rpy: [roll, pitch, yaw] (rad)")
    return xyz, rpy


def array_graph(*, namespace: str, params_file: str | Path, frame_id: str, parent_frame: str, pose: dict | None,
                host: str = "", array_config: str = "", share_dir: Path, scenario: str = "", simulate: bool = False,
                sim_ports: tuple[int, int] = (SIM_HTTP_PORT, SIM_STREAM_PORT), rviz: bool = False,
                remappings: dict | None = None, board_id: str = "", publish_tf: bool = True,
                autostart: bool = True, scene: str = "", vitals: bool = False) -> Graph:
    """Driver + aoa_node (+ vital_signs_node with ``vitals``) for one array under ``namespace``,
    and the array's static transform.

    One board, or a combined array from ``array_config`` (its hosts). The board is at ``host``
    if given, else at the ``host`` of the parameters file: a simulator is started only when
    ``simulate`` asks for one (on ``sim_ports``, or on the combined array's ports), never
    because an argument is empty.
    ``params_file``: a ROS parameters file with sections for board_node and aoa_node, given to
    both nodes as a file; the values the graph sets (frame_id, host, ...) override it.
    ``remappings``: topic remappings applied to both nodes (e.g. ``{bearings: /all/bearings}``);
    ``board_id``: the array id (source_id, calibration file name), else the parameters file's;
    ``publish_tf``: publish the static transform ``parent_frame`` -> ``frame_id`` at ``pose``;
    ``autostart``: the (managed) driver configures and activates itself;
    ``scene``: a world scene YAML the simulated board sees from ``pose`` (instead of ``scenario``).
    """
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    remap = [(str(k), str(v)) for k, v in (remappings or {}).items()]
    files = [str(params_file)]
    driver = {"frame_id": frame_id, "autostart": autostart}
    if board_id:
        driver["board_id"] = board_id
    nodes = [NodeSpec("espargos_driver", "board_node", DRIVER_NODE, ns, driver, remappings=remap, params_files=files),
             NodeSpec("espargos_aoa", "aoa_node", AOA_NODE, ns, remappings=remap, params_files=files)]
    if vitals:
        nodes.append(NodeSpec("espargos_aoa", "vital_signs_node", VITALS_NODE, ns, remappings=remap, params_files=files))
    file_driver = nodes[0].effective_parameters()          # refuses an unreadable or malformed file here
    for spec in nodes[1:]:
        spec.effective_parameters()
    graph = Graph()
    scenario = scenario or str(share_dir / "config" / "sim_scenario.yaml")
    if simulate and host:
        raise GraphError(f"host {host!r} and simulate exclude each other: simulate starts the built-in "
                         "simulator and connects to it")
    if scene and array_config:
        raise GraphError("a scene places single boards by their pose; a combined array cannot use one")
    if array_config:
        load_layout_file(array_config)                    # refuse a bad layout here, with its reason
        driver["array_config"] = str(array_config)
        if simulate:
            graph.nodes.append(NodeSpec("espargos_driver", "board_simulator", "board_simulator", ns,
                                        arguments=["--combined", str(array_config), "--scenario", scenario], ros=False))
        elif host:
            raise GraphError("with array_config the boards' hosts come from that file; host must be empty")
    elif host:
        driver["host"] = host
    elif not simulate:
        if not file_driver.get("host"):
            raise GraphError("no board address: give host, put host: in the parameters file, or simulate")
    else:
        http_port, stream_port = sim_ports
        driver.update(host="127.0.0.1", http_port=http_port, stream_port=stream_port)
        world = ["--scene", scene, "--pose", *(repr(v) for v in sum(_pose(pose, f"array {namespace}"), ()))] if scene \
            else ["--scenario", scenario]
        graph.nodes.append(NodeSpec("espargos_driver", "board_simulator", "board_simulator", ns, ros=False, arguments=[
            "--http-port", str(http_port), "--stream-port", str(stream_port), *world]))
    graph.nodes += nodes
    if publish_tf:
        if not parent_frame:
            raise GraphError("parent_frame is empty: name the frame the array is mounted on, or turn the "
                             "static transform off (publish_tf:=false, espargos_run --no-tf)")
        xyz, rpy = _pose(pose, f"array {namespace}")
        graph.transforms.append(StaticTransform(parent_frame, frame_id, xyz, rpy))
    if rviz:
        template = (share_dir / "config" / "espargos.rviz").read_text()
        graph.rviz_configs.append(rviz_config(template, ns or "/", frame_id))
    return graph


def _scene_has_platform(scene: str) -> bool:
    """Whether the scene YAML moves its boards on a platform (whose pose scene_pose then publishes)."""
    try:
        data = yaml.safe_load(Path(scene).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise GraphError(f"scene {scene}: {err}") from err
    return isinstance(data, dict) and bool((data.get("scene") or {}).get("platform"))


def robot_graph(robot: dict, share_dir: Path, publish_tf: bool = True, autostart: bool = True) -> Graph:
    """A rig of arrays (and optionally its swarm nodes) under one namespace with their static
    transforms (unless not ``publish_tf``), from ``config/robot.yaml``."""
    spec = robot.get("robot", robot) if isinstance(robot, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("arrays"), list) or not spec["arrays"]:
        raise GraphError("robot YAML: needs robot: {namespace: ..., base_frame: ..., arrays: [...]}")
    namespace = str(spec.get("namespace", "")).strip("/")
    base = str(spec.get("base_frame", "base_link"))
    scene = str(in_config(spec["scene"], share_dir)) if spec.get("scene") else ""
    graph = Graph()
    names, frames, ports = set(), set(), set()
    bearing_topics, array_poses = [], []
    for i, arr in enumerate(spec["arrays"]):
        if not isinstance(arr, dict) or not arr.get("name"):
            raise GraphError(f"robot YAML: arrays[{i}] needs a name")
        name = str(arr["name"])
        frame_id = str(arr.get("frame_id", f"espargos_{name}"))
        for value, seen, what in ((name, names, "array name"), (frame_id, frames, "frame_id")):
            if value in seen:
                raise GraphError(f"robot YAML: {what} {value!r} is used twice")
            seen.add(value)
        params_file = in_config(arr.get("config", "board.yaml"), share_dir)
        sim_ports = (int(arr.get("sim_http_port", SIM_HTTP_PORT + i)), int(arr.get("sim_stream_port", SIM_STREAM_PORT + i)))
        host = str(arr.get("host", ""))
        simulate = bool(arr.get("simulate", False))
        array_config = str(in_config(arr["array_config"], share_dir)) if arr.get("array_config") else ""
        if simulate and not array_config:
            if set(sim_ports) & ports:
                raise GraphError(f"robot YAML: array {name!r}: simulator ports {sim_ports} already in use by another array")
            ports.update(sim_ports)
        graph.extend(array_graph(namespace=f"{namespace}/{name}" if namespace else name, params_file=params_file,
                                 frame_id=frame_id, parent_frame=base, pose=arr.get("pose"), host=host,
                                 array_config=array_config, share_dir=share_dir,
                                 scenario=str(in_config(arr["scenario"], share_dir)) if arr.get("scenario") else "",
                                 simulate=simulate, sim_ports=sim_ports, remappings=arr.get("remappings"),
                                 board_id=str(arr.get("board_id", name)), publish_tf=publish_tf,
                                 autostart=autostart, scene=scene if simulate else ""))
        bearing_topics.append(f"/{namespace}/{name}/bearings" if namespace else f"/{name}/bearings")
        xyz, rpy = _pose(arr.get("pose"), f"array {name}")
        array_poses.append(f"{frame_id}: " + " ".join(repr(v) for v in (*xyz, *rpy)))
    locator = spec.get("locator")
    if locator is not None and not isinstance(locator, dict):
        raise GraphError("robot YAML: locator must be a mapping of locator_node parameters")
    if scene and any(arr.get("simulate") for arr in spec["arrays"]) and _scene_has_platform(scene):
        odom = str((locator or {}).get("platform_pose_topic") or (f"/{namespace}/odom" if namespace else "/odom"))
        graph.nodes.append(NodeSpec("espargos_driver", "scene_pose", "scene_pose", f"/{namespace}" if namespace else "", {
            "scene": scene, "frame_id": str((locator or {}).get("fixed_frame", "odom")), "child_frame_id": base},
            remappings=[("odom", odom)]))
    if locator is not None:
        graph.nodes.append(NodeSpec("espargos_aoa", "locator_node", "locator_node", f"/{namespace}" if namespace else "", {
            "fixed_frame": base, **flatten(locator), "bearing_topics": bearing_topics, "array_poses": array_poses}))
    swarm = spec.get("swarm")
    if swarm:
        if not isinstance(swarm, dict):
            raise GraphError("robot YAML: swarm must be a mapping of swarm_node parameters")
        swarm = dict(swarm)
        velocity = {"nodes": [str(n) for n in swarm.pop("nodes")]} if swarm.get("nodes") else {}
        graph.extend(swarm_graph(namespace=f"{namespace}/swarm", velocity_params=velocity, vitals_params=velocity,
                                 share_dir=share_dir,
                                 simulate=bool(swarm.pop("simulate", False)), scenario=str(swarm.pop("scenario", "")),
                                 swarm_params=swarm, autostart=autostart))
    return graph


def swarm_graph(*, namespace: str, share_dir: Path, params_file: str | Path = "", swarm_params: dict | None = None,
                velocity_params: dict | None = None, vitals_params: dict | None = None, simulate: bool = False,
                scenario: str = "", autostart: bool = True) -> Graph:
    """swarm_node + velocity_node + vital_signs_node under ``namespace`` (+ the swarm simulator
    sending to the swarm_node's UDP port on loopback when ``simulate``).

    ``params_file``: a ROS parameters file with sections for the three nodes, given to each as a
    file; ``swarm_params`` / ``velocity_params`` / ``vitals_params`` override it (flattened names).
    """
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    files = [str(params_file)] if params_file else []
    swarm = NodeSpec("espargos_driver", "swarm_node", "swarm_node", ns,
                     {**flatten(swarm_params or {}), "autostart": autostart}, params_files=files)
    velocity = NodeSpec("espargos_aoa", "velocity_node", "velocity_node", ns, flatten(velocity_params or {}),
                        params_files=files)
    vitals = NodeSpec("espargos_aoa", "vital_signs_node", "vital_signs_node", ns, flatten(vitals_params or {}),
                      params_files=files)
    effective = {"transport": "udp", "udp_port": 5005, **swarm.effective_parameters()}
    velocity.effective_parameters()                       # refuse an unreadable or malformed file here
    vitals.effective_parameters()
    graph = Graph()
    if simulate:
        if effective["transport"] != "udp":
            raise GraphError(f"the swarm simulator sends UDP; transport is {effective['transport']!r}")
        swarm.parameters["udp_host"] = "127.0.0.1"
        graph.nodes.append(NodeSpec("espargos_driver", "swarm_simulator", "swarm_simulator", ns, ros=False, arguments=[
            "--scenario", str(in_config(scenario or "swarm_scenario.yaml", share_dir)),
            "--target", f"127.0.0.1:{effective['udp_port']}"]))
    graph.nodes += [swarm, velocity, vitals]
    return graph


def unflatten(params: dict) -> dict:
    """Dotted parameter names -> the nested mapping of a parameters file (inverse of :func:`flatten`)."""
    out: dict = {}
    for name, value in params.items():
        *parents, leaf = name.split(".")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return out


def process_arguments(spec: NodeSpec, workdir: Path, index: int) -> list[str]:
    """Arguments of ``spec``'s executable for a process of its own, as ``ros2 launch`` starts it:
    its parameters files, then the graph's values (written to a file in ``workdir``). Plain
    programs get their own arguments."""
    if not spec.ros:
        return list(spec.arguments)
    overrides = Path(workdir) / f"{spec.name}-{index}.yaml"
    overrides.write_text(yaml.safe_dump({"/**": {"ros__parameters": unflatten(spec.parameters)}}))
    files = [a for f in (*spec.params_files, overrides) for a in ("--params-file", str(f))]
    return ["--ros-args", "-r", f"__ns:={spec.namespace or '/'}", "-r", f"__node:={spec.name}", *files]


REQUIRED_BY_GRAPH = {"tf2_ros": "static transforms (publish_tf:=false turns them off)",
                     "rviz2": "rviz:=true (ros-base has no rviz2: install ros-<distro>-rviz2 or leave rviz off)"}
"""Optional packages a graph may need, and what needs them."""


def missing_packages(graph: Graph, installed: Callable[[str], bool]) -> list[str]:
    """Why the graph cannot start: one line per package it needs that ``installed`` does not find
    (the nodes' packages, tf2_ros for static transforms, rviz2 for rviz views)."""
    needed = {spec.package: f"{spec.executable}" for spec in graph.nodes}
    if graph.transforms:
        needed["tf2_ros"] = REQUIRED_BY_GRAPH["tf2_ros"]
    if graph.rviz_configs:
        needed["rviz2"] = REQUIRED_BY_GRAPH["rviz2"]
    return [f"package {name} is not installed (needed for {why})" for name, why in needed.items() if not installed(name)]


def in_config(path: str, share_dir: Path) -> Path:
    """A path as given, or relative to the installed config/ directory."""
    p = Path(str(path)).expanduser()
    return p if p.is_absolute() or p.exists() else share_dir / "config" / p


if __name__ == "__main__":
    regenerate(update_readme)
