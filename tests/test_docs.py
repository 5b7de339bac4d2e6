"""The README documents what exists: every client option and every client class."""

from pathlib import Path

from locust_plugin.options import OPTIONS
from locust_plugin.users import MitigatedClient
from locustfiles import clients

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_client_option_is_in_the_readme():
    missing = [option.flag for option in OPTIONS if f"`{option.flag}`" not in README]
    assert not missing


def test_every_client_class_is_in_the_readme():
    classes = [
        name for name, value in vars(clients).items()
        if isinstance(value, type) and issubclass(value, MitigatedClient) and value is not MitigatedClient
    ]
    assert len(classes) >= 10
    assert not [name for name in classes if f"`{name}`" not in README]


def test_python_m_locust_plugin_lists_every_option():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "locust_plugin"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert all(option.flag in out for option in OPTIONS)
