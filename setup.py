"""Packaging for xtuner.

The repository keeps the config catalog in ``configs/`` and the CLI tool scripts in
``tools/`` at its root (the OpenMMLab layout); both are shipped *inside* the package as
``xtuner/configs`` and ``xtuner/tools`` so that ``xtuner list-cfg`` and ``xtuner train NAME``
work from any directory after a plain ``pip install .``. An editable install does not run
this copy step (pip's ``editable_wheel`` path), so ``xtuner.utils.paths`` falls back to the
repository folders.
"""
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED_DIRS = ("configs", "tools")


class BuildPyWithCatalog(build_py):
    """Copy ``configs/`` and ``tools/`` into the built package."""

    def run(self):
        super().run()
        if self.editable_mode:
            return
        for name in SHIPPED_DIRS:
            target = os.path.join(self.build_lib, "xtuner", name)
            if os.path.exists(target):
                shutil.rmtree(target)
            shutil.copytree(
                os.path.join(HERE, name),
                target,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )


def read_requirements(name):
    path = os.path.join(HERE, "requirements", name)
    with open(path, encoding="utf-8") as f:
        lines = (line.split("#", 1)[0].strip() for line in f)
        return [line for line in lines if line]


def read_version():
    scope = {}
    with open(os.path.join(HERE, "xtuner", "version.py"), encoding="utf-8") as f:
        exec(f.read(), scope)
    return scope["__version__"]


extras = {
    "deepspeed": read_requirements("deepspeed.txt"),
    "quantization": read_requirements("quantization.txt"),
    "kernels": read_requirements("kernels.txt"),
    "tensorboard": read_requirements("tensorboard.txt"),
    "wandb": read_requirements("wandb.txt"),
    "eval": read_requirements("eval.txt"),
    "tests": read_requirements("tests.txt"),
}
extras["all"] = sorted(
    set(extras["deepspeed"] + extras["quantization"] + extras["kernels"] + extras["eval"])
)

setup(
    name="xtuner",
    version=read_version(),
    description="Config-driven command-line toolkit for fine-tuning large language models",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["xtuner", "xtuner.*"]),
    include_package_data=False,
    package_data={"xtuner": ["demo/data/*.jsonl", "demo/tiny_llm/*", "demo/tiny_clip/*",
                             "demo/shapes/*.jsonl", "demo/shapes/images/*.png",
                             "demo/ts_signals/*.jsonl", "demo/ts_signals/signals/*"]},
    install_requires=read_requirements("runtime.txt"),
    extras_require=extras,
    entry_points={"console_scripts": ["xtuner = xtuner.entry_point:cli"]},
    cmdclass={"build_py": BuildPyWithCatalog},
    zip_safe=False,
)
