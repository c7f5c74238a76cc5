"""Every connector process in a sandbox of its own (Linux, DESIGN §14): policy.py decides what
it shows and as whom, view.py what it sees, launch.py makes it."""

from activities.sandbox.policy import Launch, Sandbox, unavailable

__all__ = ["Launch", "Sandbox", "unavailable"]
