"""The phone as one sans-IO state machine: inputs, actions, the call log, the transition table.

:class:`riptphone.app.machine.PhoneMachine` decides what the phone does and
shows; the daemon (:mod:`riptphone.driver`) does the I/O.
"""
