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
    # What the test suite needs beyond the daemon's own dependencies.
    extras_require={"test": ["hypothesis", "cryptography"]},
    entry_points={"console_scripts": ["sc_remoted = sc_remoted.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
    ],
)
