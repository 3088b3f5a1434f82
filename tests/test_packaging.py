"""An installed (non-editable) wheel carries its templates and generates ResNet-50."""
import os
import subprocess
import sys

from conftest import KAIMING, ROOT


def test_installed_wheel_generates_resnet50(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                            str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("prototxt_gen-*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                              "--target", str(target), str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    shipped = sorted(p.name for p in (target / "prototxt_gen" / "templates").glob("*.toml"))
    assert shipped == sorted(p.name for p in (ROOT / "templates").glob("*.toml"))
    assert {"resnet50.toml", "resnext50_32x4d.toml", "wide_resnet101_2.toml"} <= set(shipped)
    # every module of every subpackage (setup.cfg lists the packages one by one)
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "prototxt_gen").rglob("*.py")}
    installed = {p.relative_to(target).as_posix() for p in (target / "prototxt_gen").rglob("*.py")}
    assert modules - installed == set()

    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import prototxt_gen, prototxt_gen.build.catalog as c; "
                               "print(prototxt_gen.__file__); print(c.template_dir())"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    module, templates = where.stdout.split()
    assert module.startswith(str(target)) and templates.startswith(str(target))

    script = target / "bin" / "prototxt-gen"  # the console script from the wheel's entry point
    result = subprocess.run([str(script), "resnet50"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (KAIMING / "ResNet-50-deploy.prototxt").read_text()
