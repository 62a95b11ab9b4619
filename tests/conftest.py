"""Shared pytest setup.

Nothing is imported or mocked at collection time: ``tests.harness.run_program`` sets the Pulumi mocks
(``preview=False``) and the stack config itself before it runs a program, fresh for every run, so tests
of components and whole stacks never share state.
"""
