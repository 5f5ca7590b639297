"""report.html: one self-contained page (images inlined as base64) from a Jinja2 template
shipped in covidct.resources (autoescape on)."""

from __future__ import annotations

import base64
from importlib import resources
from pathlib import Path
from typing import Any

TEMPLATE = "report.html.j2"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def render_report(doc: dict[str, Any], out_dir: Path) -> str:
    """The report HTML of a result.json document whose images lie in out_dir."""
    import jinja2

    source = resources.files("covidct").joinpath("resources", TEMPLATE).read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    outputs = doc.get("outputs", {})
    images = {key: out_dir / outputs[key] for key in ("render_3d", "slice_profile")
              if outputs.get(key) and (out_dir / outputs[key]).is_file()}
    overlays = [{"name": name, "data": _b64(out_dir / name)}
                for name in outputs.get("overlays", []) if (out_dir / name).is_file()]
    return env.from_string(source).render(
        **doc,
        overlays=overlays,
        render_3d=_b64(images["render_3d"]) if "render_3d" in images else None,
        profile=_b64(images["slice_profile"]) if "slice_profile" in images else None,
    )


def write_report(doc: dict[str, Any], out_dir: Path, name: str = "report.html") -> Path:
    path = out_dir / name
    path.write_text(render_report(doc, out_dir), encoding="utf-8")
    return path
