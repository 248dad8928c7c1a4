"""``imgkit info``: what a model bundle is; JSON on stdout, a table on stderr."""

from __future__ import annotations

import json

import click

from imgkit.commands._common import stderr_console


@click.command(name="info")
@click.argument("run")
def command(run):
    """Describe the model bundle RUN without loading its model.

    Task, model, classes, input size and channels, pixel scaling, training arguments,
    metrics, temperature, threshold, exports (imgkit export) with their parity
    figures, and size on disk. JSON on stdout (for jq and scripts), a table on
    stderr. TensorFlow is not imported.

    \b
    Example:
        imgkit info runs/fashion
        imgkit info runs/fashion 2>/dev/null | jq .exports.onnx.parity
    """
    from imgkit.export.info import bundle_info

    facts = bundle_info(run)
    _show(facts)
    click.echo(json.dumps(facts, indent=2, ensure_ascii=False))


def _short(value, limit: int = 90) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(facts: dict) -> None:
    from rich import box
    from rich.table import Table

    from imgkit.export.info import human_bytes

    table = Table("", "", box=box.SIMPLE, show_header=False, title=facts["path"])
    h, w = facts["input_size"]
    classes = facts["classes"]
    rows = {
        "task": facts["task"],
        "model": facts["model"],
        "classes": f"{len(classes)}: {_short(', '.join(classes), 70)}",
        "input": f"{h}x{w}x{facts['channels']} ({facts.get('resize', 'stretch')})",
        "pixels": _short(facts["pixels"]),
        "output": facts.get("output"),
        "temperature": f"{facts['temperature']:.4g}",
        "threshold": facts["threshold"],
        "training": _short(facts.get("train_args") or {}),
        "metrics": _short(_rounded(facts.get("metrics") or {})),
    }
    for fmt, r in facts["exports"].items():
        p = r.get("parity") or {}
        where = r.get("file", "?") + ("" if r.get("present") else " (missing)")
        precision = r.get("precision") or r.get("quantize")
        quant = f", {precision}" if precision else ""
        rows[f"export {fmt}"] = (
            f"{where}{quant}: max diff {p.get('max_abs_diff', float('nan')):.2g}, "
            f"labels agree: {'yes' if p.get('labels_agree') else 'no'}"
        )
    size = facts["size"]
    parts = ", ".join(f"{k} {human_bytes(v)}" for k, v in size["files"].items())
    rows["size"] = f"{human_bytes(size['total'])} ({parts})" if parts else human_bytes(0)
    for key, value in rows.items():
        if value is not None:
            table.add_row(key, str(value))
    console = stderr_console()
    if not console.is_terminal:
        console.width = 160
    console.print(table)


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value
