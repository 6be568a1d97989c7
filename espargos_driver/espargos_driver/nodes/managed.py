"""The managed (lifecycle) shell of the hardware drivers, board_node and swarm_node.

States as ROS 2 defines them (design article "Node lifecycle"), driven through the standard
``lifecycle_msgs`` services (``ros2 lifecycle set <node> configure``):

- unconfigured -> configure: read and check the parameters, prepare publishers, look at the
  hardware (a board that does not answer yet is reported, not fatal: activation keeps trying);
- inactive -> activate: open the input (connect and stream / bind the UDP port), publish;
- active -> deactivate: stop the input and publishing; the board is left as found (a calibration
  burst in progress restores the RF switch and MAC filter);
- inactive -> cleanup: release the publishers configure made; shutdown (from any state): stop and release all.

With ``autostart`` (the default, as launch files and espargos_run set it) the node configures and
activates itself at start-up: the unmanaged behaviour (start and publish). A parameter that cannot
work fails the start-up configure, which the entry point reports with exit status 2.
"""
from __future__ import annotations

from collections import Counter

from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn


class ManagedDriverNode(LifecycleNode):
    """A LifecycleNode whose subclasses implement ``configure`` / ``activate`` / ``deactivate``
    and raise ValueError (a parameter or resource that cannot work) to fail a transition; the
    reason is logged and kept in ``failure``. The lifecycle publishers a subclass creates are
    destroyed here on cleanup, shutdown, error or a failed configure."""

    def __init__(self, name: str, **node_options) -> None:
        """node_options: rclpy Node keyword arguments (namespace, parameter_overrides, ...)."""
        super().__init__(name, **node_options)
        self.counters: Counter = Counter()
        """The node's /diagnostics counters (the subclass's inputs count here too)."""
        self._refuse_invalid_transitions()
        self.declare_parameter("autostart", True, ParameterDescriptor(
            description="configure and activate at start-up (false: wait in unconfigured for lifecycle transitions)",
            read_only=True))
        self.failure = ""
        """Why the last transition failed ("" if it did not)."""
        self.configured = False
        self.active = False
        self._publishers_made: list = []
        """Lifecycle publishers created since the last release."""

    def _refuse_invalid_transitions(self) -> None:
        """A ChangeState request for a transition the current state does not have (e.g. activate
        while unconfigured) makes rclpy (Jazzy 7.1) raise RCLError out of the service callback,
        which ends the executor and the node. Answer it with success = false instead, counted
        (``invalid_transitions``) and logged."""
        for service in self.services:
            if service.srv_type is ChangeState and service.srv_name.endswith("/change_state"):
                unguarded = service.callback

                def guarded(request, response, unguarded=unguarded):
                    try:
                        return unguarded(request, response)
                    except _rclpy.RCLError as err:
                        self.counters["invalid_transitions"] += 1
                        self.get_logger().warning(f"lifecycle transition {request.transition.id} "
                                                  f"'{request.transition.label}' refused in state "
                                                  f"{self.lifecycle_state}: {err}")
                        response.success = False
                        return response

                service.callback = guarded

    def autostart(self) -> None:
        """Configure and activate if the ``autostart`` parameter says so (call at the end of the
        subclass constructor); ValueError with the reason if either transition fails."""
        if not self.get_parameter("autostart").value:
            self.get_logger().info("autostart is false: waiting in unconfigured for lifecycle transitions")
            return
        for transition, trigger in (("configure", self.trigger_configure), ("activate", self.trigger_activate)):
            if trigger() != TransitionCallbackReturn.SUCCESS:
                raise ValueError(f"{transition} failed: {self.failure}")

    def _transition(self, name: str, step) -> TransitionCallbackReturn:
        try:
            step()
        except ValueError as err:
            self.failure = str(err)
            self.get_logger().error(f"{name} failed: {err}")
            return TransitionCallbackReturn.FAILURE
        self.failure = ""
        return TransitionCallbackReturn.SUCCESS

    # --- rclpy's transition callbacks --------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("configure", self.configure)
        if result == TransitionCallbackReturn.SUCCESS:
            self.configured = True
        else:
            self._release_publishers()
        return result

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        super().on_activate(state)                        # enable the lifecycle publishers before data flows
        result = self._transition("activate", self.activate)
        if result == TransitionCallbackReturn.SUCCESS:
            self.active = True
        else:
            super().on_deactivate(state)
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_all()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_all()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """An exception escaped a transition: stop everything; back to unconfigured."""
        self._release_all()
        return TransitionCallbackReturn.SUCCESS

    def _release_all(self) -> None:
        if self.active:
            self.active = False
            self.deactivate()
        self.configured = False
        self._release_publishers()

    def create_lifecycle_publisher(self, *args, **kwargs):
        """rclpy's, remembered for release."""
        publisher = super().create_lifecycle_publisher(*args, **kwargs)
        self._publishers_made.append(publisher)
        return publisher

    def _release_publishers(self) -> None:
        publishers, self._publishers_made = self._publishers_made, []
        for publisher in publishers:
            self.destroy_lifecycle_publisher(publisher)

    @property
    def lifecycle_state(self) -> str:
        """unconfigured, inactive or active (as far as this node's transitions have gone)."""
        return "active" if self.active else "inactive" if self.configured else "unconfigured"

    # --- what a driver implements ------------------------------------------------------
    def configure(self) -> None:
        """Read and check parameters, create publishers; ValueError if they cannot work."""
        raise NotImplementedError

    def activate(self) -> None:
        """Open the input and start publishing; ValueError if it cannot be opened."""
        raise NotImplementedError

    def deactivate(self) -> None:
        """Stop the input (idempotent); leave the hardware as found."""
        raise NotImplementedError

    def destroy_node(self) -> None:
        """Leave the hardware as found even when the process ends without a shutdown transition."""
        self._release_all()
        super().destroy_node()
