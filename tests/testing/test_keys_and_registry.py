"""Tests of the mscomm_keys and mscomm_registry fixtures, run as a user's tests."""

from __future__ import annotations

import pytest

from .conftest import RunUserTests


def test_keys_are_exported_for_the_names_asked(run_user_tests: RunUserTests) -> None:
    """``mscomm_keys`` exports a fresh, usable key per name and returns a Keyring of them."""
    result = run_user_tests(
        """
        import os

        from mscomm_sync.envelope import Envelope
        from mscomm_sync.keyring import Keyring


        def test_keys(mscomm_keys):
            ring = mscomm_keys("orders", "other-service")
            assert os.environ["ORDERS_ENCRYPTION_KEY"] == mscomm_keys.key("orders")
            assert os.environ["OTHER_SERVICE_ENCRYPTION_KEY"] != os.environ["ORDERS_ENCRYPTION_KEY"]
            sealed = Envelope("orders", keyring=ring).seal_request(
                recipient="other-service", method="POST", target="/x", body=b"hi"
            )
            opened = Envelope("other-service", keyring=Keyring()).open_request(
                method="POST", target="/x", headers=sealed.headers, body=sealed.body
            )
            assert opened.body == b"hi" and opened.sender == "orders"
        """
    )
    result.assert_outcomes(passed=1)


def test_keys_are_stable_within_a_test(run_user_tests: RunUserTests) -> None:
    """Asking ``mscomm_keys`` again for a name keeps that name's key."""
    result = run_user_tests(
        """
        import os


        def test_again(mscomm_keys):
            mscomm_keys("orders")
            first = os.environ["ORDERS_ENCRYPTION_KEY"]
            mscomm_keys("orders", "billing")
            assert os.environ["ORDERS_ENCRYPTION_KEY"] == first
            assert mscomm_keys.names == ["billing", "orders"]
        """
    )
    result.assert_outcomes(passed=1)


def test_keys_are_removed_after_the_test(
    run_user_tests: RunUserTests, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment is restored after a test that used ``mscomm_keys``."""
    monkeypatch.setenv("BILLING_ENCRYPTION_KEY", "the user's own")
    result = run_user_tests(
        """
        import os


        def test_1_sets(mscomm_keys):
            mscomm_keys("orders", "billing")
            assert os.environ["BILLING_ENCRYPTION_KEY"] != "the user's own"


        def test_2_restored():
            assert "ORDERS_ENCRYPTION_KEY" not in os.environ
            assert os.environ["BILLING_ENCRYPTION_KEY"] == "the user's own"
        """
    )
    result.assert_outcomes(passed=2)


def test_registry_is_a_temporary_default(run_user_tests: RunUserTests) -> None:
    """``mscomm_registry`` is a file registry in a temporary directory, made the default."""
    result = run_user_tests(
        """
        import os
        from pathlib import Path

        from mscomm_sync.registry import FileRegistry, get_registry


        def test_registry(mscomm_registry, tmp_path_factory):
            assert isinstance(mscomm_registry, FileRegistry)
            assert get_registry() is mscomm_registry
            path = Path(os.environ["MSCOMM_REGISTRY"])
            assert path.is_relative_to(tmp_path_factory.getbasetemp())
            mscomm_registry.register("billing", "http://127.0.0.1:9")
            assert [i.url for i in FileRegistry(path).get_instances("billing")] == [
                "http://127.0.0.1:9"
            ]
        """
    )
    result.assert_outcomes(passed=1)


def test_registry_is_reset_after_the_test(run_user_tests: RunUserTests) -> None:
    """After a test that used ``mscomm_registry`` there is no default registry."""
    result = run_user_tests(
        """
        import pytest

        from mscomm_sync.errors import ConfigurationError
        from mscomm_sync.registry import get_registry


        def test_1_uses(mscomm_registry):
            mscomm_registry.register("billing", "http://127.0.0.1:9")


        def test_2_gone():
            with pytest.raises(ConfigurationError):
                get_registry()
        """
    )
    result.assert_outcomes(passed=2)
