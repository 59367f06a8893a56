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
    packages=["sc_remoted", "twisted.plugins"],
    install_requires=[
        "Twisted>=22.10",
        "pyOpenSSL",
        "service-identity",
        "zope.interface",
    ],
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
    ],
)
