"""Developer tools, used from the checkout and never installed: ``python -m riptdev``.

The demo (:mod:`riptdev.demo`), the protocol self-check
(:mod:`riptdev.selfcheck`), the screen gallery (:mod:`riptdev.gallery`), the
generator of ``docs/phone-states.md`` (:mod:`riptdev.phone_states`) and the
building blocks that start the provider and the phone as processes for the
demo and the tests (:mod:`riptdev.processes`).  They may import anything;
the runtime packages (``ript``, ``riptphone``, ``riptprovider``) never import
them (``tests/unit/test_layers.py``), and ``pyproject.toml`` leaves this
package out of the distribution.  Run with ``PYTHONPATH=firmware`` (pytest
and ``./run demo`` set it).
"""
