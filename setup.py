"""The one thing pyproject.toml cannot say without setuptools' experimental ``ext-modules``: the
relay's per-packet path in C (media_relay/forwarding/_datapath.c and _track.c, issue 3). Building it needs
a C compiler and Python's headers, which scripts/install-system-deps checks for."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "media_relay.forwarding._datapath",
            sources=["media_relay/forwarding/_datapath.c", "media_relay/forwarding/_track.c"],
            depends=["media_relay/forwarding/_datapath.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
