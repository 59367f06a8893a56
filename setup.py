from setuptools import setup

setup(
    name="sc_remoted",
    version="0.1.0",
    description="Controller for remote scamper instances, on Twisted",
    long_description=open("README.rst").read(),
    long_description_content_type="text/x-rst",
    license="GPL-2.0-only",
    # The oldest version the whole suite has passed on: for 3.9, pip finds
    # nothing newer than Twisted 26.4, which lacks the fix below.
    python_requires=">=3.10",
    # Listed by hand: find_packages() cannot see twisted.plugins, which
    # must have no __init__.py.
    packages=["sc_remoted", "sc_remoted.mux", "twisted.plugins"],
    # Every distribution the package imports at run time
    # (tests/test_packaging.py checks), plus service-identity, without
    # which Twisted cannot check a TLS peer's name.
    install_requires=[
        # Before 26.10, twistd exits 0 after a usage error (Twisted issue
        # 12656), and the suite has not passed on an older one.
        "Twisted>=26.10",
        "pyOpenSSL",
        "cryptography",
        "service-identity",
        "zope.interface",
        "prometheus_client",
    ],
    # Installed under the prefix (share/...: in a venv, inside it).
    data_files=[
        ("share/man/man1", ["docs/sc_remoted.1"]),
        (
            "share/doc/sc_remoted",
            ["docs/sc_remoted.service", "docs/grafana-dashboard.json", "docs/prometheus-alerts.yml"],
        ),
    ],
    extras_require={
        # What the test suite needs beyond the daemon's own dependencies
        # (wheel: the offline "pip install --no-build-isolation" of
        # tests/test_packaging.py builds with it).
        # atheris: the coverage-guided fuzz harnesses (tools/fuzz.py),
        # which the suite runs briefly; its wheels are for x86-64.
        "test": ["hypothesis", "wheel", 'atheris; platform_machine == "x86_64"'],
        # The static checks, pinned so that their verdict does not change
        # with a new release (mypy.ini, ruff.toml; CI, tox -e typecheck,lint).
        "check": ["mypy==2.4.1", "mypy-zope==1.0.17", "ruff==0.17.6"],
    },
    entry_points={"console_scripts": ["sc_remoted = sc_remoted.cli:main"]},
    # The versions the whole test suite was run on (README.rst, Install).
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
    ],
)
