from setuptools import setup

setup(
    name="sc_remoted",
    version="0.1.0",
    description="Controller for remote scamper instances, on Twisted",
    long_description=open("README.rst").read(),
    long_description_content_type="text/x-rst",
    license="GPL-2.0-only",
    python_requires=">=3.9",
    # Listed by hand: find_packages() cannot see twisted.plugins, which
    # must have no __init__.py.
    packages=["sc_remoted", "sc_remoted.mux", "twisted.plugins"],
    install_requires=[
        "Twisted>=22.10",
        "pyOpenSSL",
        "service-identity",
        "zope.interface",
        "prometheus_client",
    ],
    extras_require={
        # What the test suite needs beyond the daemon's own dependencies.
        "test": ["hypothesis", "cryptography"],
        # The static checks, pinned so that their verdict does not change
        # with a new release (mypy.ini, ruff.toml; CI, tox -e typecheck,lint).
        "check": ["mypy==2.4.1", "mypy-zope==1.0.17", "ruff==0.17.6"],
    },
    entry_points={"console_scripts": ["sc_remoted = sc_remoted.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
    ],
)
